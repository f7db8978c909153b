"""A nightly batch job as a user writes it: it only knows GOOGLE_APPLICATION_CREDENTIALS.

It uses Application Default Credentials on the file gcpfargate's wrapper wrote (a key file in key
mode, an external_account configuration in keyless mode: the job does not care which), obtains an
access token, and calls a Google API with it (here the local emulator's /v1/whoami).
"""

import os
import stat
import sys

import google.auth
import google.auth.transport.requests
import requests

path = os.environ["GOOGLE_APPLICATION_CREDENTIALS"]
mode = stat.S_IMODE(os.stat(path).st_mode)
leaked = [name for name, value in os.environ.items() if "PRIVATE KEY" in value]
print(
    f"job: args={sys.argv[1:]} credentials file {path} mode {mode:o}; key text in environment: "
    f"{bool(leaked)}"
)

credentials, _ = google.auth.default(scopes=["https://www.googleapis.com/auth/cloud-platform"])
credentials.refresh(google.auth.transport.requests.Request())
response = requests.get(
    os.environ["DEMO_API_URL"] + "/v1/whoami",
    headers={"Authorization": "Bearer " + credentials.token},
    timeout=10,
)
response.raise_for_status()
who = response.json()
via = f"key {who['key_id'][:12]}..." if who["key_id"] else "no key: workload identity federation"
print(f"job: called the GCP API as {who['email']} ({via}): HTTP {response.status_code}")
sys.exit(0 if not leaked and mode == 0o600 else 1)
