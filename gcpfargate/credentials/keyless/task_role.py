"""run-local in keyless mode: the task role, assumed through STS, served like the ECS agent serves it.

On Fargate the credential shim reads the task role from the ECS container credentials endpoint. Here
`run-local` assumes the task definition's `taskRoleArn` (never handing out the developer's own
credentials) and serves the result on 127.0.0.1 in the ECS endpoint's shape (`AccessKeyId`,
`SecretAccessKey`, `Token`, `Expiration`, `RoleArn`) at an unguessable path that also requires an
authorization token, which the shim gets as `AWS_CONTAINER_CREDENTIALS_FULL_URI` and
`AWS_CONTAINER_AUTHORIZATION_TOKEN`, as on EKS or Greengrass. Credentials are re-assumed shortly
before they expire. Nothing here logs or returns the credentials.
"""

from __future__ import annotations

import json
import secrets
import threading
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

from gcpfargate.core.context import Context
from gcpfargate.errors import GcpfargateError

REFRESH_MARGIN = timedelta(minutes=5)


class LocalTaskRoleEndpoint:
    def __init__(self, ctx: Context, role_arn: str) -> None:
        self._ctx, self.role_arn = ctx, role_arn
        self._lock = threading.Lock()
        self._credentials: dict[str, Any] | None = None
        self.path = f"/v2/credentials/{secrets.token_hex(16)}"
        self.token = secrets.token_urlsafe(32)
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="gcpfargate-task-role", daemon=True
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}{self.path}"

    def environment(self) -> dict[str, str]:
        """What the shim container needs to reach this endpoint."""
        return {
            "AWS_CONTAINER_CREDENTIALS_FULL_URI": self.url,
            "AWS_CONTAINER_AUTHORIZATION_TOKEN": self.token,
        }

    def credentials(self) -> dict[str, Any]:
        """Assume the role (again when the held credentials are near their expiry)."""
        with self._lock:
            held = self._credentials
            if held is None or held["Expiration"] - datetime.now(UTC) < REFRESH_MARGIN:
                answer = self._ctx.aws.call(
                    "sts",
                    "assume_role",
                    f"assume the task role {self.role_arn}",
                    RoleArn=self.role_arn,
                    RoleSessionName="gcpfargate-run-local",
                )
                held = self._credentials = dict(answer["Credentials"])
            return held

    def __enter__(self) -> LocalTaskRoleEndpoint:
        self.credentials()  # fail here, in one line, when the role cannot be assumed
        self._thread.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                return  # requests carry the authorization token

            def _send(self, status: int, document: dict[str, Any]) -> None:
                body = json.dumps(document).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                if self.path != endpoint.path:
                    return self._send(404, {"code": "NotFound", "message": "no such credentials"})
                if not secrets.compare_digest(
                    self.headers.get("Authorization", ""), endpoint.token
                ):
                    return self._send(
                        401, {"code": "AccessDenied", "message": "bad authorization token"}
                    )
                try:
                    held = endpoint.credentials()
                except (
                    GcpfargateError
                ) as exc:  # answered like the agent answers: a 500 with the reason
                    return self._send(500, {"code": "InternalError", "message": exc.message})
                self._send(
                    200,
                    {
                        "RoleArn": endpoint.role_arn,
                        "AccessKeyId": held["AccessKeyId"],
                        "SecretAccessKey": held["SecretAccessKey"],
                        "Token": held["SessionToken"],
                        "Expiration": held["Expiration"].strftime("%Y-%m-%dT%H:%M:%SZ"),
                    },
                )

        return Handler
