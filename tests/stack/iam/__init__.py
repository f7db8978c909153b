"""In-memory emulator of Google Cloud IAM for tests (see docs/development.md for the stack).

Why this exists: gcpfargate creates and rotates service-account keys. Testing that against real
Google Cloud is slow, needs credentials and leaves real key material around, so the test stack
runs this emulator instead. It is as strict as the real service where gcpfargate depends on it,
answers with Google's own error texts (each with its source), and has knobs for the real-world
behaviours that are hard to meet on demand (key propagation, expiry, quotas, policies).

Layout (one concern per module, so the keyless surfaces — workload identity pools, STS,
generateAccessToken — can be added as new modules next to these):
  emulator.py        IamEmulator: lifecycle of both servers and every knob (public API)
  state.py           service accounts, keys, counters, the test-only record of minted keys
  issuing.py         RSA keys, certificates, Google key files and P12 archives
  grpc_service.py    google.iam.admin.v1.IAM over gRPC (what IAMClient talks to)
  token_endpoint.py  OAuth2 JWT-bearer grant, access tokens, x509 metadata
  admin_http.py      the HTTP server: /token, /v1/whoami, x509 metadata, /admin/* test control
  faults.py          knobs and injected faults
  errors.py          Google's error texts and details, with their sources
  keyless.py         mounts the workload identity federation surfaces and holds their knobs:
    pools.py           workload identity pools/providers REST (operations, soft delete, undelete)
    policies.py        Get/SetIamPolicy on service accounts (gRPC, etag read-modify-write)
    sts.py             STS /v1/token: aws4_request subject tokens replayed to moto's STS;
                       a mapped google.subject over 127 bytes is refused with Google's text
    iamcredentials.py  generateAccessToken, allowed by roles/iam.workloadIdentityUser
    service_usage.py   Service Usage services.get/enable/disable; a disabled STS or IAM
                       Credentials API answers SERVICE_DISABLED
    rest.py            REST error bodies, counting and faults shared by those surfaces
Run standalone with `python -m tests.stack.iam`: it prints one JSON line
`{"grpc": "127.0.0.1:PORT", "http": "http://127.0.0.1:PORT"}` and serves until SIGTERM/SIGINT.
"""

from tests.stack.iam.emulator import IamEmulator
from tests.stack.iam.errors import MSG_KEY_CREATION_DENIED, MSG_KEY_LIMIT, RpcFailure
from tests.stack.iam.grpc_service import SERVICE_NAME, is_mutating
from tests.stack.iam.state import MintedKey
from tests.stack.iam.token_endpoint import GOOGLE_TOKEN_AUDIENCE, JWT_BEARER_GRANT

__all__ = [
    "GOOGLE_TOKEN_AUDIENCE",
    "JWT_BEARER_GRANT",
    "MSG_KEY_CREATION_DENIED",
    "MSG_KEY_LIMIT",
    "SERVICE_NAME",
    "IamEmulator",
    "MintedKey",
    "RpcFailure",
    "is_mutating",
]
