"""An HTTP proxy on loopback in front of a Docker engine's socket that rewrites push streams.

Point `DOCKER_HOST=tcp://127.0.0.1:PORT` at it. Every Engine API call reaches the real engine;
the answer to `POST /images/{name}/push` is passed on record by record, less the records a
`drop` predicate picks: the aux `{"Digest": …}` record alone models Docker's containerd image
store and Podman 4.3's Docker-compatible socket (moby/moby#48331: only the "<tag>: digest: sha256:…
size: N" status line remains), and that status line too models an engine whose push stream names
no digest at all.
Request bodies are read whole before they are forwarded (build contexts in tests are small);
answers are streamed. Upgraded connections (BuildKit's /session and /grpc, attach) are tunnelled
byte for byte.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import socket
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self

_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "upgrade"}


def aux_digest(record: dict[str, Any]) -> bool:
    """The aux record of a push: what Docker's containerd image store leaves out."""
    return isinstance(record.get("aux"), dict) and "Digest" in record["aux"]


def any_digest(record: dict[str, Any]) -> bool:
    """The aux record and the closing status line: a push stream that names no digest at all."""
    return aux_digest(record) or "digest: sha256:" in str(record.get("status", ""))


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str) -> None:
        super().__init__("localhost", timeout=300)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self._path)
        self.sock = sock


class EngineProxy:
    def __init__(self, docker_host: str, drop: Callable[[dict[str, Any]], bool]) -> None:
        if not docker_host.startswith("unix://"):
            raise ValueError(f"EngineProxy forwards to a unix socket, not {docker_host}")
        self.upstream = docker_host.removeprefix("unix://")
        self.drop = drop
        self.dropped: list[dict[str, Any]] = []  # the records taken out of push streams
        self.pushes = 0
        self._server: ThreadingHTTPServer | None = None

    @property
    def docker_host(self) -> str:
        assert self._server is not None
        return f"tcp://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> Self:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _body(self) -> bytes:
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    parts = []
                    while True:
                        size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                        if size == 0:
                            while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                                pass  # trailers
                            return b"".join(parts)
                        parts.append(self.rfile.read(size))
                        self.rfile.readline()
                return self.rfile.read(int(self.headers.get("Content-Length") or 0))

            def _tunnel(self) -> None:
                """An upgraded connection: the request as it came, then bytes both ways."""
                upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                upstream.connect(proxy.upstream)
                head = self.requestline + "\r\n" + str(self.headers) + "\r\n"
                upstream.sendall(head.encode("latin-1"))

                def pump(read: Callable[[int], bytes], write: Callable[[bytes], Any]) -> None:
                    try:
                        while data := read(65536):
                            write(data)
                    except OSError:
                        pass

                def back() -> None:
                    pump(upstream.recv, self.connection.sendall)
                    with contextlib.suppress(OSError):
                        self.connection.shutdown(socket.SHUT_WR)

                answer = threading.Thread(target=back, daemon=True)
                answer.start()
                pump(self.rfile.read1, upstream.sendall)
                with contextlib.suppress(OSError):
                    upstream.shutdown(socket.SHUT_WR)
                answer.join()
                upstream.close()
                self.close_connection = True

            def _relay(self) -> None:
                if "upgrade" in self.headers.get("Connection", "").lower():
                    self._tunnel()
                    return
                body = self._body()
                upstream = _UnixConnection(proxy.upstream)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
                headers["Content-Length"] = str(len(body))
                upstream.request(self.command, self.path, body=body, headers=headers)
                answer = upstream.getresponse()
                push = self.command == "POST" and self.path.split("?")[0].endswith("/push")
                self.send_response(answer.status, answer.reason)
                for key, value in answer.getheaders():
                    if key.lower() not in _HOP_BY_HOP:
                        self.send_header(key, value)
                bodiless = self.command == "HEAD" or answer.status in (204, 304)
                if bodiless:
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    upstream.close()
                    return
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                if push:
                    proxy.pushes += 1
                    while line := answer.readline():
                        if self._dropped(line):
                            continue
                        self._chunk(line)
                else:
                    while piece := answer.read1(65536):
                        self._chunk(piece)
                self.wfile.write(b"0\r\n\r\n")
                self.wfile.flush()
                upstream.close()

            def _dropped(self, line: bytes) -> bool:
                try:
                    record = json.loads(line)
                except ValueError:
                    return False
                if isinstance(record, dict) and proxy.drop(record):
                    proxy.dropped.append(record)
                    return True
                return False

            def _chunk(self, data: bytes) -> None:
                self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
                self.wfile.flush()

            do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _relay

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
