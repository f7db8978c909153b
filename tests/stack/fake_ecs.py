"""A fake ECS container endpoint: task-role credentials and task metadata v4, on 127.0.0.1.

It answers like the ECS agent (and Fargate) do: GET `<relative uri>` returns
`{"AccessKeyId", "SecretAccessKey", "Token", "Expiration", "RoleArn"}` (ECS developer guide,
"Task IAM role"); with `required_token` set, a request without that exact `Authorization` header
gets 401 as the FULL_URI endpoints (EKS Pod Identity, Greengrass) answer. `<metadata path>/task`
returns the task metadata v4 document's `AvailabilityZone`. Tests change what it serves
(`rotate`, `fail_with`, `redirect`) and read what it saw (`requests`).
"""

from __future__ import annotations

import json
import secrets
import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

CREDENTIALS_PATH = "/v2/credentials/3a4f7c1e-task"
METADATA_PATH = "/v4/0123456789abcdef-container"


@dataclass(frozen=True)
class RoleCredentials:
    access_key_id: str
    secret_access_key: str
    token: str
    expiration: datetime

    @classmethod
    def new(cls, lifetime: timedelta = timedelta(hours=6)) -> RoleCredentials:
        # Random per test, so a leak scan can look for exactly these strings.
        return cls(
            "ASIA" + secrets.token_hex(8).upper(),
            secrets.token_urlsafe(30),
            secrets.token_urlsafe(60),
            datetime.now(UTC).replace(microsecond=0) + lifetime,
        )


class FakeEcsEndpoint:
    def __init__(
        self,
        role_arn: str = "arn:aws:iam::123456789012:role/gcpfargate-demo-task",
        required_token: str | None = None,
        zone: str = "ap-northeast-1a",
    ) -> None:
        self.role_arn = role_arn
        self.required_token = required_token
        self.zone = zone
        self.credentials = RoleCredentials.new()
        self.failure: int | None = None  # an HTTP status to answer instead of credentials
        self.redirect: str | None = None  # a Location to answer 302 with instead of credentials
        self.requests: list[tuple[str, str | None]] = []  # (path, Authorization header)
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    @property
    def credential_requests(self) -> int:
        return sum(1 for path, _ in self.requests if path == CREDENTIALS_PATH)

    def rotate(self, lifetime: timedelta = timedelta(hours=6)) -> RoleCredentials:
        self.credentials = RoleCredentials.new(lifetime)
        return self.credentials

    def fail_with(self, status: int | None) -> None:
        self.failure = status

    def __enter__(self) -> FakeEcsEndpoint:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:
                pass

            def _json(self, status: int, document: dict) -> None:
                body = json.dumps(document).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                fake.requests.append((self.path, self.headers.get("Authorization")))
                if self.path == METADATA_PATH + "/task":
                    return self._json(
                        200,
                        {
                            "Cluster": "default",
                            "AvailabilityZone": fake.zone,
                            "LaunchType": "FARGATE",
                        },
                    )
                if self.path != CREDENTIALS_PATH:
                    return self._json(
                        404, {"code": "NotFound", "message": "no such credentials id"}
                    )
                if (
                    fake.required_token is not None
                    and self.headers.get("Authorization") != fake.required_token
                ):
                    return self._json(
                        401, {"code": "AccessDenied", "message": "bad authorization token"}
                    )
                if fake.redirect is not None:
                    self.send_response(302)
                    self.send_header("Location", fake.redirect)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return None
                if fake.failure is not None:
                    return self._json(
                        fake.failure, {"code": "InternalError", "message": "agent unavailable"}
                    )
                creds = fake.credentials
                self._json(
                    200,
                    {
                        "RoleArn": fake.role_arn,
                        "AccessKeyId": creds.access_key_id,
                        "SecretAccessKey": creds.secret_access_key,
                        "Token": creds.token,
                        "Expiration": creds.expiration.strftime("%Y-%m-%dT%H:%M:%SZ"),
                    },
                )

        return Handler
