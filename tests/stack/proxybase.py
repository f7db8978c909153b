"""What the proxies in front of moto share: a thread-safe rule list, start/stop as a context, and
(for the HTTP ones) one forwarding server that sees each AWS call as a `Call` and may answer it
itself with an AWS-shaped `Answer`.
"""

from __future__ import annotations

import http.client
import json
import re
import threading
import urllib.parse
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Generic, Self, TypeVar

R = TypeVar("R")


class RuleProxy(Generic[R]):
    def __init__(self) -> None:
        self.rules: list[R] = []
        self._lock = threading.Lock()

    def start(self) -> Self:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def add(self, rule: R) -> R:
        with self._lock:
            self.rules.append(rule)
        return rule

    def clear(self) -> None:
        with self._lock:
            self.rules.clear()


_SCOPE = re.compile(r"Credential=[^/]*/[^/]*/[^/]*/([^/]*)/")


@dataclass
class Call:
    """One AWS request as it reached the proxy."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def header(self, name: str) -> str:
        """A request header, whatever its case (HTTP header names are case-insensitive)."""
        wanted = name.lower()
        return next((value for key, value in self.headers.items() if key.lower() == wanted), "")

    @property
    def service(self) -> str:
        """The signing name (`ecs`, `iam`, `scheduler`...), taken from the SigV4 credential
        scope."""
        match = _SCOPE.search(self.header("Authorization"))
        if match:
            return match.group(1)
        target = self.header("X-Amz-Target")
        return target.rpartition(".")[0].split("_")[0].lower()

    @property
    def operation(self) -> str:
        """`RegisterTaskDefinition`, `CreateRole`...; REST operations are named by method and
        path."""
        target = self.header("X-Amz-Target")
        if target:
            return target.rpartition(".")[2]
        if self.body and "x-www-form-urlencoded" in self.header("Content-Type"):
            action = self.form().get("Action")
            if action:
                return action
        return rest_operation(self.method, self.path)

    @property
    def label(self) -> str:
        """The name the fault proxy has always matched: `secretsmanager.PutSecretValue`,
        `CreateRole`."""
        target = self.header("X-Amz-Target")
        if target:
            prefix, _, op = target.rpartition(".")
            return f"{prefix.split('_')[0].lower()}.{op}" if prefix else op
        if self.body:
            form = urllib.parse.parse_qs(self.body.decode("utf-8", "replace"))
            if "Action" in form:
                return form["Action"][0]
        return f"{self.path.split('?')[0]}"

    @property
    def is_json(self) -> bool:
        return bool(self.header("X-Amz-Target")) or "json" in self.header("Content-Type")

    def json(self) -> dict[str, Any]:
        return json.loads(self.body or b"{}")

    def form(self) -> dict[str, str]:
        return {
            k: v[0] for k, v in urllib.parse.parse_qs(self.body.decode("utf-8", "replace")).items()
        }


def rest_operation(method: str, path: str) -> str:
    """The REST operations the strict layer looks at (EventBridge Scheduler is rest-json)."""
    bare = path.split("?")[0]
    if bare.startswith("/schedules/"):
        return {
            "POST": "CreateSchedule",
            "PUT": "UpdateSchedule",
            "GET": "GetSchedule",
            "DELETE": "DeleteSchedule",
        }.get(method, method)
    if bare.startswith("/schedule-groups/"):
        return {
            "POST": "CreateScheduleGroup",
            "GET": "GetScheduleGroup",
            "DELETE": "DeleteScheduleGroup",
        }.get(method, method)
    return f"{method} {bare}"


@dataclass
class Answer:
    status: int
    body: bytes
    headers: list[tuple[str, str]] = field(default_factory=list)
    reset: bool = False  # drop the connection instead of answering

    def json(self) -> dict[str, Any]:
        return json.loads(self.body or b"{}")

    def with_json(self, payload: dict[str, Any]) -> Answer:
        return Answer(self.status, json.dumps(payload).encode(), self.headers)


def aws_error(call: Call, status: int, code: str, message: str) -> Answer:
    """An error the way the call's protocol carries it, so botocore raises `code` with `message`."""
    if (
        call.service == "scheduler"
    ):  # rest-json: the code travels in a header, the text as `Message`
        payload = json.dumps({"Message": message}).encode()
        ctype = "application/json"
    elif call.is_json:  # awsJson1_1 (ECS, ECR, Secrets Manager, CloudWatch Logs)
        payload = json.dumps({"__type": code, "message": message}).encode()
        ctype = "application/x-amz-json-1.1"
    else:  # query protocol (IAM): the shape of a real IAM error document
        payload = (
            "<ErrorResponse "
            'xmlns="https://iam.amazonaws.com/doc/2010-05-08/"><Error><Type>Sender</Type>'
            f"<Code>{code}</Code><Message>{_xml_escape(message)}</Message></Error>"
            "<RequestId>4f1c7e34-strict-layer</RequestId></ErrorResponse>"
        ).encode()
        ctype = "text/xml"
    return Answer(status, payload, [("Content-Type", ctype), ("x-amzn-ErrorType", code)])


def _xml_escape(text: str) -> str:
    return (
        text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("'", "&apos;")
    )


class HttpProxy(RuleProxy[R]):
    """A threaded HTTP server that forwards every call to `upstream` unless `handle` answers it."""

    def __init__(self, upstream: str) -> None:
        parsed = urllib.parse.urlsplit(upstream)
        self.upstream_host = parsed.hostname or "127.0.0.1"
        self.upstream_port = parsed.port or 80
        super().__init__()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                call = Call(self.command, self.path, dict(self.headers.items()), body)
                answer = proxy.handle(call)
                if answer.reset:
                    self.close_connection = True
                    self.connection.shutdown(2)
                    return
                self.send_response(answer.status)
                for key, value in answer.headers:
                    if key.lower() not in ("transfer-encoding", "connection", "content-length"):
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(answer.body)))
                self.end_headers()
                self.wfile.write(answer.body)

            do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = do_PATCH = _handle

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def start(self) -> Self:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def handle(self, call: Call) -> Answer:
        return self.forward(call)

    def forward(self, call: Call) -> Answer:
        conn = http.client.HTTPConnection(self.upstream_host, self.upstream_port, timeout=120)
        try:
            headers = {
                k: v
                for k, v in call.headers.items()
                if k.lower() not in ("connection", "content-length")
            }
            conn.request(call.method, call.path, body=call.body, headers=headers)
            response = conn.getresponse()
            return Answer(response.status, response.read(), response.getheaders())
        finally:
            conn.close()
