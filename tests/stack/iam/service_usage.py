"""Service Usage v1: whether an API is enabled in a project, as `services.get` answers it.

  GET  /v1/projects/P/services/S              {"name", "parent", "config": {"name"}, "state"}
  POST /v1/projects/P/services/S:enable       a done operation (the same for :disable)
Reference: https://cloud.google.com/service-usage/docs/reference/rest/v1/services. The resource
name carries the project NUMBER, as Google answers. Every API starts ENABLED here (a test switches
one off with `IamEmulator.set_service_enabled`); in a real new project sts.googleapis.com and
iamcredentials.googleapis.com start disabled.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from tests.stack.iam import rest
from tests.stack.iam.admin_http import HttpRequest

if TYPE_CHECKING:
    from tests.stack.iam.emulator import IamEmulator

# The answer every Google API gives when it is disabled in the consumer project (the shape of
# google.rpc.ErrorInfo reason SERVICE_DISABLED; the text as quoted in e.g.
# googleapis/google-cloud-python and terraform-provider-google issues for other APIs).
MSG_SERVICE_DISABLED = (
    "{title} has not been used in project {number} before or it is disabled. Enable it by "
    "visiting https://console.developers.google.com/apis/api/{service}/overview?project={number} "
    "then retry. If you enabled this API recently, wait a few minutes for the action to "
    "propagate to our systems and retry."
)
TITLES = {
    "sts.googleapis.com": "Security Token Service API",
    "iamcredentials.googleapis.com": "IAM Service Account Credentials API",
}


def service_disabled(number: str, service: str) -> tuple[int, dict[str, Any]]:
    message = MSG_SERVICE_DISABLED.format(
        title=TITLES.get(service, service), number=number, service=service
    )
    info = {
        "@type": "type.googleapis.com/google.rpc.ErrorInfo",
        "reason": "SERVICE_DISABLED",
        "domain": "googleapis.com",
        "metadata": {"service": service, "consumer": f"projects/{number}"},
    }
    return 403, {
        "error": {"code": 403, "message": message, "status": "PERMISSION_DENIED", "details": [info]}
    }


_PATH = re.compile(r"^/v1/projects/([^/]+)/services/([a-z0-9.-]+)(:enable|:disable)?$")


class ServiceUsage:
    def __init__(self, emulator: IamEmulator) -> None:
        self.emu = emulator
        self.disabled: set[tuple[str, str]] = (
            set()
        )  # (project number, service); guarded by the lock

    def enabled(self, number: str, service: str) -> bool:
        """Call with state.lock held."""
        return (number, service) not in self.disabled

    def route(self, request: HttpRequest) -> tuple[int, Any] | None:
        match = _PATH.match(request.path)
        if match is None:
            return None
        project, service, verb = match.groups()
        if (request.method == "GET") == bool(verb):
            return None
        with self.emu.state.lock:
            number = self.emu.keyless.pools.number(project)

        def get() -> dict[str, Any]:
            with self.emu.state.lock:
                if verb:
                    (self.disabled.discard if verb == ":enable" else self.disabled.add)(
                        (number, service)
                    )
                state = "ENABLED" if self.enabled(number, service) else "DISABLED"
            body = {
                "name": f"projects/{number}/services/{service}",
                "parent": f"projects/{number}",
                "config": {"name": service},
                "state": state,
            }
            if verb:
                return {"name": "operations/noop.DONE_OPERATION", "done": True, "response": body}
            return body

        method = {None: "GetService", ":enable": "EnableService", ":disable": "DisableService"}
        return rest.call(self.emu.state, self.emu.knobs, method[verb], project, get)
