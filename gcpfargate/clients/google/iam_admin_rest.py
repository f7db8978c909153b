"""IAM Admin (service accounts, keys) over HTTPS/JSON, for networks that block gRPC (gcp.transport =
rest).

google-cloud-iam ships no REST transport for `iam_admin_v1`, so this is the small part of the v1
REST API gcpfargate uses (https://cloud.google.com/iam/docs/reference/rest), with the gRPC client's
method names and message types: `IamAdmin` calls either the same way. Errors become the same
`google.api_core` exceptions, with the REST answer's `status` (FAILED_PRECONDITION, …) kept as
`rest_status`, since the HTTP code alone (400) would lose it.
"""

from __future__ import annotations

import contextlib
import enum
from typing import Any

GOOGLE_API = "https://iam.googleapis.com"


class RestIam:
    def __init__(self, base_url: str = GOOGLE_API, anonymous: bool = False) -> None:
        import google.auth
        import google.auth.transport.requests
        from google.auth.credentials import AnonymousCredentials

        credentials = (
            AnonymousCredentials()
            if anonymous
            else google.auth.default(scopes=["https://www.googleapis.com/auth/cloud-platform"])[0]
        )
        self._session = google.auth.transport.requests.AuthorizedSession(credentials)
        self._base = base_url.rstrip("/")

    def _do(
        self,
        verb: str,
        path: str,
        response_type: Any,
        body: dict[str, Any] | None = None,
        params: dict[str, Any] | None = None,
        timeout: float | None = None,
        **_: Any,
    ) -> Any:
        from google.api_core import exceptions

        response = self._session.request(
            verb, f"{self._base}/v1/{path}", json=body, params=params, timeout=timeout or 30.0
        )
        if response.status_code >= 400:
            error = exceptions.from_http_response(response)
            with contextlib.suppress(ValueError, KeyError, TypeError):
                error.rest_status = response.json()["error"]["status"]
            raise error
        if response_type is None:
            return None
        return response_type.from_json(response.text or "{}", ignore_unknown_fields=True)

    @staticmethod
    def _types() -> Any:
        from google.cloud.iam_admin_v1 import types

        return types

    def get_service_account(self, request: dict[str, Any], **kw: Any) -> Any:
        return self._do("GET", request["name"], self._types().ServiceAccount, **kw)

    def create_service_account(self, request: dict[str, Any], **kw: Any) -> Any:
        account = request.get("service_account", {})
        body = {
            "accountId": request["account_id"],
            "serviceAccount": {
                "displayName": account.get("display_name", ""),
                "description": account.get("description", ""),
            },
        }
        return self._do(
            "POST", f"{request['name']}/serviceAccounts", self._types().ServiceAccount, body, **kw
        )

    def list_service_account_keys(self, request: dict[str, Any], **kw: Any) -> Any:
        params = {"keyTypes": [_name(t) for t in request.get("key_types", [])]}
        return self._do(
            "GET",
            f"{request['name']}/keys",
            self._types().ListServiceAccountKeysResponse,
            params=params,
            **kw,
        )

    def get_service_account_key(self, request: dict[str, Any], **kw: Any) -> Any:
        return self._do("GET", request["name"], self._types().ServiceAccountKey, **kw)

    def create_service_account_key(self, request: dict[str, Any], **kw: Any) -> Any:
        body = {
            "privateKeyType": _name(request["private_key_type"]),
            "keyAlgorithm": _name(request["key_algorithm"]),
        }
        return self._do(
            "POST", f"{request['name']}/keys", self._types().ServiceAccountKey, body, **kw
        )

    def delete_service_account_key(self, request: dict[str, Any], **kw: Any) -> None:
        self._do("DELETE", request["name"], None, **kw)

    def disable_service_account_key(self, request: dict[str, Any], **kw: Any) -> None:
        self._do("POST", f"{request['name']}:disable", None, {}, **kw)

    def enable_service_account_key(self, request: dict[str, Any], **kw: Any) -> None:
        self._do("POST", f"{request['name']}:enable", None, {}, **kw)


def _name(value: Any) -> str:
    return value.name if isinstance(value, enum.Enum) else str(value)
