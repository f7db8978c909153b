"""The ECS credentials endpoint inside the task's network namespace, for run-local.

On Fargate the shim reads the task role from the ECS agent's endpoint, which only the task's own
network namespace reaches. run-local starts the shim container with this module's source as its
program (`python3 -c`, so the shim image stays as it is pushed): it serves the credentials that
gcpfargate writes to the container's stdin (one ECS-shaped JSON document per line, a new one each
time gcpfargate assumes the task role again) on 127.0.0.1 of that namespace, at a random path that
also requires a random authorization token, then runs the shim itself in the same process with
`AWS_CONTAINER_CREDENTIALS_FULL_URI` and `AWS_CONTAINER_AUTHORIZATION_TOKEN` pointing at it. So
nothing listens on the host: gcpfargate's side is the engine's attach stream, and the port, path
and token exist only inside the namespace.

Standard library only, and no import from gcpfargate: it runs in the shim image's Python.
"""

from __future__ import annotations

import importlib
import json
import os
import secrets
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

PROGRAM_NAME = "gcpfargate-task-role-agent"  # argv[0] after `python3 -c`


def main(argv: list[str]) -> int:
    lock = threading.Lock()
    held: dict[str, Any] = {}
    path = f"/v2/credentials/{secrets.token_hex(16)}"
    token = secrets.token_urlsafe(32)

    def read_stdin() -> None:
        for line in sys.stdin:
            try:
                document = json.loads(line)
            except ValueError:
                continue  # never echoed: a line may hold credentials
            if isinstance(document, dict):
                with lock:
                    held.clear()
                    held.update(document)

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
            if self.path != path:
                return self._send(404, {"code": "NotFound", "message": "no such credentials"})
            if not secrets.compare_digest(self.headers.get("Authorization", ""), token):
                return self._send(
                    401, {"code": "AccessDenied", "message": "bad authorization token"}
                )
            with lock:
                document = dict(held)
            if not document:
                return self._send(
                    503, {"code": "Unavailable", "message": "no task-role credentials yet"}
                )
            self._send(200, document)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    threading.Thread(target=read_stdin, daemon=True).start()
    os.environ["AWS_CONTAINER_CREDENTIALS_FULL_URI"] = (
        f"http://127.0.0.1:{server.server_address[1]}{path}"
    )
    os.environ["AWS_CONTAINER_AUTHORIZATION_TOKEN"] = token
    shim = importlib.import_module("shim.server")
    return int(shim.main(argv))


if __name__ == "__main__":
    # `python3 -c SOURCE NAME ARG…`: argv[0] is "-c", argv[1] the name `ps` shows, then the shim's.
    sys.exit(main(sys.argv[2:]))
