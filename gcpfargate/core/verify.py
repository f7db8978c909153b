"""Prove a key works: exchange it for an access token at its own `token_uri`, in memory."""

from __future__ import annotations

import time

from gcpfargate.errors import GcpError
from gcpfargate.keyfile import KeyMaterial

SCOPES = ["https://www.googleapis.com/auth/cloud-platform"]


def key_authenticates(key: KeyMaterial, attempts: int = 5, delay: float = 1.0) -> None:
    """Raise GcpError unless the key obtains a token. A new key can take a few seconds to be
    accepted everywhere in Google's systems, so a refusal is retried a few times."""
    import google.auth.exceptions
    import google.auth.transport.requests
    from google.oauth2 import service_account

    last = ""
    for attempt in range(attempts):
        try:
            credentials = service_account.Credentials.from_service_account_info(key.info(), scopes=SCOPES)
            credentials.refresh(google.auth.transport.requests.Request())
            return
        except google.auth.exceptions.RefreshError as exc:
            # args[0] is the server's one-line reason (e.g. "invalid_grant: Invalid JWT Signature.").
            last = str(exc.args[0]) if exc.args else type(exc).__name__
        except (google.auth.exceptions.TransportError, ValueError) as exc:
            last = type(exc).__name__
        if attempt + 1 < attempts:
            time.sleep(delay * (attempt + 1))
    raise GcpError(f"key {key.key_id} of {key.client_email} was refused at {key.token_uri}: {last}",
                   "Check that the key and its account are enabled")
