"""IAM Service Account Credentials: `POST /v1/projects/-/serviceAccounts/EMAIL:generateAccessToken`.

The second half of keyless mode: google-auth's external account credentials present the federated
token from sts.py and ask for an access token of the service account
(https://cloud.google.com/iam/docs/reference/credentials/rest/v1/projects.serviceAccounts/generateAccessToken).
Google allows it when the account's IAM policy grants `roles/iam.workloadIdentityUser` to the
federated principal (its subject, a principalSet of one of its attributes, or the whole pool). The
minted token is accepted by the emulated API (`/v1/whoami`) like a key-signed one, but no key
exists behind it, so `keys_minted` stays unchanged.
"""

from __future__ import annotations

import datetime as dt
import re
import secrets
import time
import urllib.parse
from typing import TYPE_CHECKING, Any

from tests.stack.iam.admin_http import HttpRequest
from tests.stack.iam.errors import MSG_PERMISSION_DENIED, UNAUTHENTICATED_MESSAGE
from tests.stack.iam.service_usage import service_disabled
from tests.stack.iam.token_endpoint import IMPERSONATED, AccessToken

if TYPE_CHECKING:
    from tests.stack.iam.keyless import Keyless

PREFIX = "/v1/projects/-/serviceAccounts/"
WORKLOAD_IDENTITY_USER = "roles/iam.workloadIdentityUser"
GET_ACCESS_TOKEN = "iam.serviceAccounts.getAccessToken"
# Documented: lifetime up to 3600 s unless the org policy
# iam.allowServiceAccountCredentialLifetimeExtension allows 12 h; scope is required.
MAX_LIFETIME_S = 3600
# google-github-actions/auth#87 and similar reports: 404 "Not found; Gaia id not found for email X".
MSG_NO_ACCOUNT = "Not found; Gaia id not found for email {email}"
_PATH = re.compile(r"^/v1/projects/-/serviceAccounts/([^/:]+):generateAccessToken$")


def _error(
    status: int, grpc_status: str, message: str, details: list[dict[str, Any]] | None = None
) -> tuple[int, dict[str, Any]]:
    error: dict[str, Any] = {"code": status, "message": message, "status": grpc_status}
    if details:
        error["details"] = details
    return status, {"error": error}


class IamCredentials:
    def __init__(self, keyless: Keyless) -> None:
        self.keyless = keyless

    def route(self, request: HttpRequest) -> tuple[int, Any] | None:
        match = _PATH.match(request.path)
        if match is None:
            return None
        email = urllib.parse.unquote(match.group(1))
        keyless = self.keyless
        state = keyless.state
        with state.lock:
            state.counters.calls["GenerateAccessToken"] += 1
            federated = keyless.sts.principal(request.headers.get("Authorization"))
            if federated is None:
                keyless.denials.append("unauthenticated")
                return _error(401, "UNAUTHENTICATED", UNAUTHENTICATED_MESSAGE)
            number = federated.pool_name.split("/")[1]
            if not keyless.service_usage.enabled(number, "iamcredentials.googleapis.com"):
                keyless.denials.append("SERVICE_DISABLED iamcredentials.googleapis.com")
                return service_disabled(number, "iamcredentials.googleapis.com")
            account = state.accounts.get(email)
            if account is None:
                return _error(404, "NOT_FOUND", MSG_NO_ACCOUNT.format(email=email))
            if not keyless.policies.grants(
                email,
                WORKLOAD_IDENTITY_USER,
                federated.pool_name,
                federated.subject,
                federated.attributes,
            ):
                keyless.denials.append(f"{federated.subject} -> {email}")
                info = {
                    "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                    "reason": "IAM_PERMISSION_DENIED",
                    "domain": "iam.googleapis.com",
                    "metadata": {"permission": GET_ACCESS_TOKEN},
                }
                return _error(
                    403,
                    "PERMISSION_DENIED",
                    MSG_PERMISSION_DENIED.format(permission=GET_ACCESS_TOKEN),
                    [info],
                )
        try:
            body = request.json()
            lifetime = float(str(body.get("lifetime", "3600s")).removesuffix("s"))
            scopes = list(body.get("scope") or [])
        except (ValueError, AttributeError):
            return _error(400, "INVALID_ARGUMENT", "Request contains an invalid argument.")
        if not scopes or not 0 < lifetime <= MAX_LIFETIME_S:
            return _error(400, "INVALID_ARGUMENT", "Request contains an invalid argument.")
        lifetime = min(lifetime, keyless.token_lifetime_s)
        token = "ya29.c.emulated-impersonated-" + secrets.token_urlsafe(32)
        expires_at = time.time() + lifetime
        with state.lock:
            keyless.emu.tokens.tokens[token] = AccessToken(email, IMPERSONATED, expires_at)
            keyless.impersonated_tokens_issued += 1
        expire_time = dt.datetime.fromtimestamp(expires_at, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        return 200, {"accessToken": token, "expireTime": expire_time}
