"""A small TCP proxy that resets connections in the middle of chosen HTTP requests.

Put it in front of the registry (GCPFARGATE_ECR_REGISTRY=127.0.0.1:PORT; Docker treats every
127.0.0.0/8 registry as insecure, so plain HTTP works) to model a network that drops a push half
way. A `Reset` rule watches the client-to-server byte stream for a request line matching its
pattern (`PATCH /v2/<repo>/blobs/uploads/...` for a blob upload, `PUT /v2/<repo>/manifests/<tag>`
for the manifest) and, once `after_bytes` more bytes of that request have gone through, closes
both sides with a TCP RST (SO_LINGER 0), the way a middlebox or a crashed peer does. With
`lose_response` the request goes through whole and takes effect, and the connection is reset when
the answer comes back: the caller cannot know that its call succeeded (put it in front of moto and
match a header such as `X-Amz-Target: secretsmanager.PutSecretValue`).

Everything else is copied through unchanged, byte for byte: the proxy does not parse HTTP beyond
finding request lines, so keep-alive, chunked bodies and streaming uploads all work.
"""

from __future__ import annotations

import contextlib
import re
import socket
import struct
import threading
from dataclasses import dataclass, field

from tests.stack.proxybase import RuleProxy

# Request lines Docker sends while pushing.
BLOB_UPLOAD = rb"(?:PATCH|PUT) /v2/[^ ]*/blobs/uploads/[^ ]* HTTP/1\.[01]\r\n"
MANIFEST_PUT = rb"PUT /v2/[^ ]*/manifests/[^ ]* HTTP/1\.[01]\r\n"


@dataclass
class Reset:
    pattern: bytes  # regex over the client-to-server stream, e.g. BLOB_UPLOAD
    after_bytes: int = 0  # bytes of the request (from its request line on) to let through first
    times: int = 1  # resets left (-1: forever)
    lose_response: bool = False  # let the whole request through, then reset instead of answering
    done: int = field(default=0)  # resets performed


class _Connection:
    """State the two directions of one proxied connection share."""

    def __init__(self) -> None:
        self.doomed = threading.Event()  # the request went through; cut the response


class TcpProxy(RuleProxy[Reset]):
    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self.upstream = (upstream_host, upstream_port)
        super().__init__()
        self.connections = 0
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._listener.getsockname()[1])
        self.address = f"127.0.0.1:{self.port}"
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True, name="tcpproxy")

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> TcpProxy:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopped.set()
        with contextlib.suppress(OSError):
            self._listener.close()
        self._thread.join(timeout=5)

    @property
    def resets(self) -> int:
        with self._lock:
            return sum(rule.done for rule in self.rules)

    # -- plumbing ----------------------------------------------------------------------------
    def _accept(self) -> None:
        while not self._stopped.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(self.upstream, timeout=10)
            except OSError:
                _reset(client)
                continue
            server.settimeout(None)
            with self._lock:
                self.connections += 1
            connection = _Connection()
            threading.Thread(
                target=self._pipe, args=(client, server, True, connection), daemon=True
            ).start()
            threading.Thread(
                target=self._pipe, args=(server, client, False, connection), daemon=True
            ).start()

    def _pipe(
        self, source: socket.socket, target: socket.socket, watch: bool, connection: _Connection
    ) -> None:
        tail = (
            b""  # the end of what went before, so a request line split across reads still matches
        )
        armed: Reset | None = None
        counted = 0
        try:
            while True:
                data = source.recv(65536)
                if not data:
                    with contextlib.suppress(OSError):
                        target.shutdown(socket.SHUT_WR)
                    return
                if not watch and connection.doomed.is_set():
                    # The server answered a request whose response is to be lost: the client never
                    # sees it.
                    _reset(source)
                    _reset(target)
                    return
                if watch:
                    if armed is None:
                        armed, offset = self._arm(tail + data)
                        if armed is not None:
                            counted = len(tail + data) - offset
                    else:
                        counted += len(data)
                    if armed is not None and armed.lose_response:
                        connection.doomed.set()
                    elif armed is not None and counted >= armed.after_bytes:
                        # Let exactly `after_bytes` of the request through, then cut.
                        keep = len(data) - (counted - armed.after_bytes)
                        if keep > 0:
                            target.sendall(data[:keep])
                        _reset(source)
                        _reset(target)
                        return
                    tail = (tail + data)[-4096:]
                target.sendall(data)
        except OSError:
            for sock in (source, target):
                with contextlib.suppress(OSError):
                    sock.close()

    def _arm(self, window: bytes) -> tuple[Reset | None, int]:
        with self._lock:
            for rule in self.rules:
                if rule.times == 0:
                    continue
                match = re.search(rule.pattern, window)
                if match is None:
                    continue
                if rule.times > 0:
                    rule.times -= 1
                rule.done += 1
                return rule, match.start()
        return None, 0


def _reset(sock: socket.socket) -> None:
    """Close with RST rather than FIN: the peer sees `connection reset by peer`."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    # Wake a thread blocked in recv() on this socket: while it is, close() alone sends nothing.
    # SHUT_RD sends no FIN; the RST goes out when the last reference is closed.
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RD)
    with contextlib.suppress(OSError):
        sock.close()
