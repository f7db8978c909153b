"""The GCP adapter for workload identity pools and providers (IAM REST v1; no gRPC client exists).

`GCPFARGATE_IAM_REST_ENDPOINT=http://host:port` switches to that base URL with an anonymous session,
as `IAM_EMULATOR_HOST` does for the gRPC IAM API; otherwise requests go to https://iam.googleapis.com
through google-auth's AuthorizedSession with Application Default Credentials. Mutations answer
long-running operations, which `wait` polls. Resource reference:
https://cloud.google.com/iam/docs/reference/rest/v1/projects.locations.workloadIdentityPools
"""

from __future__ import annotations

import os
import time
import urllib.parse
from typing import Any

from gcpfargate.errors import ConfigError, GcpError

REST_ENDPOINT_ENV = "GCPFARGATE_IAM_REST_ENDPOINT"
DEFAULT_ENDPOINT = "https://iam.googleapis.com"
_SCOPE = "https://www.googleapis.com/auth/cloud-platform"
_HINTS = {
    403: "The GCP identity needs roles/iam.workloadIdentityPoolAdmin on the project",
    401: "Refresh the Google Cloud credentials (gcloud auth application-default login)",
}


class WorkloadIdentityPools:
    def __init__(
        self, endpoint: str | None = None, poll_interval: float = 0.1, timeout: float = 120.0
    ) -> None:
        raw = endpoint if endpoint is not None else os.environ.get(REST_ENDPOINT_ENV, "")
        parts = urllib.parse.urlsplit(raw)
        if raw and (
            parts.scheme not in ("http", "https") or not parts.netloc or parts.path.strip("/")
        ):
            raise ConfigError(
                f"environment variable {REST_ENDPOINT_ENV} must be a base URL such as "
                f"http://127.0.0.1:8080, not {raw!r}"
            )
        self._override = bool(raw)
        self.base = f"{parts.scheme}://{parts.netloc}" if raw else DEFAULT_ENDPOINT
        self._session: Any = None
        self._poll_interval, self._timeout = poll_interval, timeout
        self._call_log = os.environ.get("GCPFARGATE_CALL_LOG")

    @property
    def session(self) -> Any:
        if self._session is None:
            import requests

            if self._override:
                self._session = requests.Session()
                self._session.trust_env = False  # a test or private endpoint: never through a proxy
            else:
                import google.auth
                import google.auth.exceptions
                from google.auth.transport.requests import AuthorizedSession

                try:
                    credentials, _ = google.auth.default(scopes=[_SCOPE])
                except google.auth.exceptions.DefaultCredentialsError:
                    raise GcpError(
                        "no Google Cloud credentials found for the IAM API",
                        "Run `gcloud auth application-default login`",
                    ) from None
                self._session = AuthorizedSession(credentials)
        return self._session

    def _request(
        self,
        method: str,
        path: str,
        action: str,
        params: dict[str, str] | None = None,
        body: dict[str, Any] | None = None,
    ) -> tuple[int, Any]:
        import requests

        if self._call_log:
            with open(self._call_log, "a", encoding="utf-8") as log:
                log.write(f"gcp rest {method} {'read' if method == 'GET' else 'write'}\n")
        try:
            response = self.session.request(
                method, f"{self.base}/v1/{path}", params=params, json=body, timeout=30
            )
        except requests.RequestException as exc:
            raise GcpError(
                f"failed to {action}: {type(exc).__name__}",
                f"Check the network or {REST_ENDPOINT_ENV} and retry",
            ).with_code("UNAVAILABLE") from None
        try:
            payload = response.json()
        except ValueError:
            payload = {}
        return response.status_code, payload

    def _ok(self, status: int, payload: Any, action: str) -> Any:
        if status == 200:
            return payload
        error = payload.get("error", {}) if isinstance(payload, dict) else {}
        code = str(error.get("status") or status)
        message = str(error.get("message") or f"HTTP {status}").rstrip(".")
        reasons = {
            str(detail.get("reason", ""))
            for detail in error.get("details") or []
            if isinstance(detail, dict)
        }
        if "SECURITY_POLICY_VIOLATED" in reasons or "vpcServiceControlsUniqueIdentifier" in message:
            from gcpfargate.clients.gcp import perimeter_refusal

            raise perimeter_refusal(action, message)
        raise GcpError(f"failed to {action}: {code}: {message}", _HINTS.get(status, "")).with_code(
            code
        )

    # -- reads: None when absent; a DELETED resource is returned with state DELETED ----------------
    def get(self, name: str, what: str) -> dict[str, Any] | None:
        status, payload = self._request("GET", name, f"read {what}")
        return None if status == 404 else self._ok(status, payload, f"read {what}")

    # -- writes: each waits for its operation and returns the resulting resource -------------------
    def create(
        self,
        parent: str,
        collection: str,
        id_param: str,
        resource_id: str,
        body: dict[str, Any],
        what: str,
    ) -> dict[str, Any]:
        status, payload = self._request(
            "POST",
            f"{parent}/{collection}",
            f"create {what}",
            params={id_param: resource_id},
            body=body,
        )
        return self.wait(self._ok(status, payload, f"create {what}"), f"create {what}")

    def undelete(self, name: str, what: str) -> dict[str, Any]:
        status, payload = self._request("POST", f"{name}:undelete", f"undelete {what}", body={})
        return self.wait(self._ok(status, payload, f"undelete {what}"), f"undelete {what}")

    def patch(
        self, name: str, body: dict[str, Any], fields: list[str], what: str
    ) -> dict[str, Any]:
        status, payload = self._request(
            "PATCH", name, f"update {what}", params={"updateMask": ",".join(fields)}, body=body
        )
        return self.wait(self._ok(status, payload, f"update {what}"), f"update {what}")

    def wait(self, operation: dict[str, Any], action: str) -> dict[str, Any]:
        deadline = time.monotonic() + self._timeout
        interval = self._poll_interval
        while not operation.get("done"):
            if time.monotonic() > deadline:
                raise GcpError(
                    f"failed to {action}: operation {operation.get('name')} did not finish in "
                    f"{self._timeout:.0f}s",
                    "Check it in the GCP console, then rerun",
                )
            time.sleep(interval)
            interval = min(interval * 2, 2.0)
            status, payload = self._request("GET", str(operation["name"]), f"{action} (poll)")
            operation = self._ok(status, payload, f"{action} (poll)")
        if "error" in operation:
            error = operation["error"]
            raise GcpError(f"failed to {action}: {error.get('message', 'operation failed')}")
        return dict(operation.get("response") or {})
