"""A small HTTP proxy in front of moto that fails chosen AWS calls on the real HTTP path.

Point `AWS_ENDPOINT_URL` (or `AWS_ENDPOINT_URL_<SERVICE>`) at it. Rules match the operation
(the JSON protocol's `X-Amz-Target` such as `secretsmanager.PutSecretValue`, or the query
protocol's `Action=CreateRole`) and answer with an AWS-shaped error, a throttle, or a dropped
connection, for the next N matching calls (or from the Nth on). Everything else is forwarded.
"""

from __future__ import annotations

import http.client
import json
import threading
import urllib.parse
from collections import Counter
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from tests.stack.proxybase import RuleProxy


@dataclass
class Rule:
    operation: str  # "PutSecretValue", or "secretsmanager.PutSecretValue", or "*"
    kind: str = "error"  # "error", "throttle" or "reset"
    status: int = 500
    code: str = "InternalFailure"
    message: str = "injected fault"
    skip: int = 0  # let this many matching calls through first
    times: int = 1  # then fail this many (-1: forever)


class FaultProxy(RuleProxy[Rule]):
    def __init__(self, upstream: str) -> None:
        parsed = urllib.parse.urlsplit(upstream)
        self.upstream_host = parsed.hostname or "127.0.0.1"
        self.upstream_port = parsed.port or 80
        super().__init__()
        self.seen: Counter[str] = Counter()
        self.injected: Counter[str] = Counter()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                operation = _operation(self.headers, body, self.path)
                rule = proxy._match(operation)
                if rule is not None and rule.kind == "reset":
                    self.close_connection = True
                    self.connection.shutdown(2)
                    return
                if rule is not None:
                    self._error(rule, operation)
                    return
                self._forward(body)

            do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _handle

            def _error(self, rule: Rule, operation: str) -> None:
                if rule.kind == "throttle":
                    status, code, message = 400, "ThrottlingException", "Rate exceeded"
                else:
                    status, code, message = rule.status, rule.code, rule.message
                if "X-Amz-Target" in self.headers or "json" in (self.headers.get("Content-Type") or ""):
                    payload = json.dumps({"__type": code, "message": message}).encode()
                    ctype = "application/x-amz-json-1.1"
                else:
                    payload = (f"<ErrorResponse><Error><Type>Sender</Type><Code>{code}</Code><Message>{message}"
                               f"</Message></Error><RequestId>fault</RequestId></ErrorResponse>").encode()
                    ctype = "text/xml"
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(payload)))
                self.send_header("x-amzn-ErrorType", code)
                self.end_headers()
                self.wfile.write(payload)

            def _forward(self, body: bytes) -> None:
                conn = http.client.HTTPConnection(proxy.upstream_host, proxy.upstream_port, timeout=120)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("connection",)}
                conn.request(self.command, self.path, body=body, headers=headers)
                response = conn.getresponse()
                payload = response.read()
                self.send_response(response.status)
                for key, value in response.getheaders():
                    if key.lower() not in ("transfer-encoding", "connection", "content-length"):
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)
                conn.close()

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def start(self) -> FaultProxy:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


    def _match(self, operation: str) -> Rule | None:
        with self._lock:
            self.seen[operation] += 1
            for rule in self.rules:
                short = operation.rsplit(".", 1)[-1]
                if rule.operation not in ("*", operation, short) or rule.times == 0:
                    continue
                if rule.skip > 0:
                    rule.skip -= 1
                    continue
                if rule.times > 0:
                    rule.times -= 1
                self.injected[operation] += 1
                return rule
        return None


def _operation(headers: object, body: bytes, path: str) -> str:
    target = headers.get("X-Amz-Target")  # type: ignore[attr-defined]
    if target:
        service, _, op = target.rpartition(".")
        return f"{service.split('_')[0].lower()}.{op}" if service else op
    if body:
        form = urllib.parse.parse_qs(body.decode("utf-8", "replace"))
        if "Action" in form:
            return form["Action"][0]
    return f"{headers.get('X-Amz-Target') or ''}{path.split('?')[0]}"
