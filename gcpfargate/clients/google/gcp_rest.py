"""The GCP adapters for workload identity pools and providers (IAM REST v1; no gRPC client exists)
and for Service Usage (is an API enabled in a project).

`GCPFARGATE_IAM_REST_ENDPOINT=http://host:port` switches to that base URL with an anonymous session,
as `IAM_EMULATOR_HOST` does for the gRPC IAM API; otherwise requests go to
https://iam.googleapis.com through google-auth's AuthorizedSession with Application Default
Credentials. Mutations answer long-running operations, which `wait` polls. Resource reference:
https://cloud.google.com/iam/docs/reference/rest/v1/projects.locations.workloadIdentityPools
"""

from __future__ import annotations

import os
import time
import urllib.parse
from collections.abc import Mapping
from typing import Any, ClassVar

from gcpfargate.errors import ConfigError, GcpError

REST_ENDPOINT_ENV = "GCPFARGATE_IAM_REST_ENDPOINT"
DEFAULT_ENDPOINT = "https://iam.googleapis.com"
# Service Usage (https://cloud.google.com/service-usage/docs/reference/rest/v1/services/get);
# the override works as GCPFARGATE_IAM_REST_ENDPOINT does.
SERVICE_USAGE_ENDPOINT_ENV = "GCPFARGATE_SERVICEUSAGE_ENDPOINT"
SERVICE_USAGE_DEFAULT_ENDPOINT = "https://serviceusage.googleapis.com"
_SCOPE = "https://www.googleapis.com/auth/cloud-platform"
_HINTS = {
    403: "The GCP identity needs roles/iam.workloadIdentityPoolAdmin on the project",
    401: "Refresh the Google Cloud credentials (gcloud auth application-default login)",
}


class _GoogleRest:
    """One Google REST API: its base URL (or an override from `env`), the session, errors."""

    env = REST_ENDPOINT_ENV
    default_endpoint = DEFAULT_ENDPOINT
    service = "iam"  # the API's host is <service>.<universe domain>
    api = "IAM API"
    hints: ClassVar[Mapping[int, str]] = _HINTS

    def __init__(self, endpoint: str | None = None, universe: str = "") -> None:
        from gcpfargate.clients.google.universe import DEFAULT_UNIVERSE, google_api, universe_domain

        raw = endpoint if endpoint is not None else os.environ.get(self.env, "")
        parts = urllib.parse.urlsplit(raw)
        if raw and (
            parts.scheme not in ("http", "https") or not parts.netloc or parts.path.strip("/")
        ):
            raise ConfigError(
                f"environment variable {self.env} must be a base URL such as "
                f"http://127.0.0.1:8080, not {raw!r}"
            )
        self._override = bool(raw)
        domain = universe_domain(universe)
        default = (
            self.default_endpoint
            if domain == DEFAULT_UNIVERSE
            else google_api(self.service, domain)
        )
        self.base = f"{parts.scheme}://{parts.netloc}" if raw else default
        self._session: Any = None
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
                        f"no Google Cloud credentials found for the {self.api}",
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
                f"Check the network or {self.env} and retry",
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
            from gcpfargate.clients.google.gcp import perimeter_refusal

            raise perimeter_refusal(action, message)
        raise GcpError(
            f"failed to {action}: {code}: {message}", self.hints.get(status, "")
        ).with_code(code)


class WorkloadIdentityPools(_GoogleRest):
    def __init__(
        self,
        endpoint: str | None = None,
        poll_interval: float = 0.1,
        timeout: float = 120.0,
        universe: str = "",
    ) -> None:
        super().__init__(endpoint, universe)
        self._poll_interval, self._timeout = poll_interval, timeout

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


class ServiceUsage(_GoogleRest):
    env = SERVICE_USAGE_ENDPOINT_ENV
    default_endpoint = SERVICE_USAGE_DEFAULT_ENDPOINT
    service = "serviceusage"
    api = "Service Usage API"
    hints: ClassVar[Mapping[int, str]] = {
        403: "The GCP identity needs serviceusage.services.get on the project "
        "(roles/serviceusage.serviceUsageViewer)",
        401: _HINTS[401],
    }

    def state(self, project: str, service: str) -> str:
        """ENABLED or DISABLED (Service Usage's `State`), for `service` in `project`."""
        action = f"read whether {service} is enabled in project {project}"
        status, payload = self._request("GET", f"projects/{project}/services/{service}", action)
        return str(self._ok(status, payload, action).get("state") or "STATE_UNSPECIFIED")
