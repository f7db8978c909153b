"""Prove a key works: exchange it for an access token at its own `token_uri`, in memory.

A new key is not usable at once: Google documents that "it can take 60 seconds or more before the
key can be used" (cloud.google.com/iam/docs/keys-create-delete), and until then the token endpoint
answers invalid_grant "Invalid JWT Signature." — the same answer a deleted or disabled key gets. So
that refusal is retried with backoff for at least two minutes, while the key itself still exists and
is enabled; every other refusal is final. Running out of time is *not* a refusal: the caller keeps
the key and says it is not verified yet.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from gcpfargate.errors import GcpError
from gcpfargate.keymaterial.keyfile import KeyMaterial

SCOPES = ["https://www.googleapis.com/auth/cloud-platform"]
# Seconds to wait before each retry: 1+2+4+8+15*8+... = 135 s in all, past Google's "60 s or more".
BACKOFF: tuple[float, ...] = (1, 2, 4, 8, 15, 15, 15, 15, 15, 15, 15, 15)
# The token endpoint's answer while a key is unknown to it (not yet propagated, or gone).
NOT_YET = "Invalid JWT Signature"


@dataclass(frozen=True)
class Verdict:
    verified: bool
    waited_s: float
    last_refusal: str = ""  # when not verified: the last "not yet" answer


def key_authenticates(
    key: KeyMaterial,
    still_live: Callable[[], bool] = lambda: True,
    schedule: Sequence[float] = BACKOFF,
    sleep: Callable[[float], None] = time.sleep,
) -> Verdict:
    """Exchange the key for a token, retrying "not yet" refusals along `schedule`.

    Returns Verdict(verified=False) when the schedule ran out on "not yet" answers. Raises GcpError
    for a final refusal: any other invalid_grant, or "not yet" while `still_live()` says the key
    is deleted or disabled (then it will never work).
    """
    waited = 0.0
    last = ""
    for delay in [*schedule, None]:
        refusal = _exchange(key)
        if refusal is None:
            return Verdict(True, waited)
        last = refusal
        if NOT_YET not in refusal and not refusal.startswith("transport:"):
            raise GcpError(
                f"key {key.key_id} of {key.client_email} was refused at {key.token_uri}: {refusal}",
                "Check that the key and its account are enabled",
            )
        if NOT_YET in refusal and not still_live():
            raise GcpError(
                f"key {key.key_id} of {key.client_email} was refused at {key.token_uri}: {refusal} "
                "(the key is deleted or disabled in GCP)",
                "Rerun `gcpfargate rotate-key`",
            )
        if delay is None:
            break
        sleep(delay)
        waited += delay
    return Verdict(False, waited, last)


def _exchange(key: KeyMaterial) -> str | None:
    """None when a token was issued; else the server's one-line reason (or `transport: …`)."""
    import google.auth.exceptions
    import google.auth.transport.requests
    from google.oauth2 import service_account

    try:
        credentials = service_account.Credentials.from_service_account_info(
            key.info(), scopes=SCOPES
        )
        credentials.refresh(google.auth.transport.requests.Request())
        return None
    except google.auth.exceptions.RefreshError as exc:
        # args[0] is the server's one-line reason (e.g. "invalid_grant: Invalid JWT Signature.").
        return str(exc.args[0]) if exc.args else type(exc).__name__
    except (google.auth.exceptions.TransportError, ValueError) as exc:
        return f"transport: {type(exc).__name__}"
