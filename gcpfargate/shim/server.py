"""The downstream side: the IMDSv2-style HTTP server, its health check client and the command
line."""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import logging
import os
import secrets
import signal
import socket
import sys
import threading
import time
import urllib.error
import urllib.parse
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from . import (
    CREDENTIALS_PATH,
    DEFAULT_PORT,
    ECS_ENDPOINT,
    HEALTH_PATH,
    TOKEN_HEADER,
    TOKEN_PATH,
    TTL_HEADER,
    ZONE_PATH,
)
from . import __doc__ as package_doc
from .upstream import (
    DIRECT,
    CredentialCache,
    ShimError,
    TaskRoleEndpoint,
    availability_zone,
    safe_url,
)

log = logging.getLogger("credential-shim")


# A client sends its whole request at once (google-auth, the health check); one that has not sent
# its request head within this many seconds is idle and its connection is dropped.
REQUEST_TIMEOUT_S = 5.0
# Connections served at once. Above it a new connection displaces the oldest one that has not yet
# sent its request head (idle or trickling), so idle clients can never keep /healthz out; when
# every slot is busy with a real request the new connection is closed at once. Threads and open
# files stay bounded either way.
MAX_CONNECTIONS = 64
# Live IMDSv2 session tokens kept; beyond it the oldest is forgotten (its client asks again).
MAX_SESSION_TOKENS = 1024


class SessionTokens:
    """IMDSv2 session tokens: random, held in memory only, each valid for the TTL its client asked;
    at most `limit` at a time, so a client asking in a loop cannot grow the table without end."""

    def __init__(
        self, clock: Callable[[], float] = time.monotonic, limit: int = MAX_SESSION_TOKENS
    ) -> None:
        self._clock = clock
        self._limit = limit
        self._expiry: dict[str, float] = {}
        self._lock = threading.Lock()

    def issue(self, ttl_seconds: int) -> str:
        token = secrets.token_urlsafe(32)
        with self._lock:
            now = self._clock()
            if len(self._expiry) >= self._limit:
                self._expiry = {t: e for t, e in self._expiry.items() if e > now}
            while len(self._expiry) >= self._limit:  # oldest first: dicts keep insertion order
                del self._expiry[next(iter(self._expiry))]
            self._expiry[token] = now + ttl_seconds
        return token

    def __len__(self) -> int:
        with self._lock:
            return len(self._expiry)

    def valid(self, token: str | None) -> bool:
        with self._lock:
            return token is not None and self._expiry.get(token, 0.0) > self._clock()


class ShimServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = MAX_CONNECTIONS

    def __init__(
        self,
        address: tuple[str, int],
        cache: CredentialCache,
        tokens: SessionTokens,
        zone: Callable[[], str],
        max_connections: int = MAX_CONNECTIONS,
        request_timeout: float = REQUEST_TIMEOUT_S,
    ) -> None:
        handler = type("_Handler", (_Handler,), {"timeout": request_timeout})
        super().__init__(address, handler)
        self.cache = cache
        self.tokens = tokens
        # A task never moves: one successful lookup is enough (lru_cache does not keep failures).
        self.zone = functools.lru_cache(maxsize=1)(zone)
        self.max_connections = max_connections
        self._slots = threading.Lock()
        self._open: set[socket.socket] = set()
        self._waiting: dict[socket.socket, None] = {}  # no request head yet, oldest first

    def process_request(self, request: socket.socket, client_address: object) -> None:  # type: ignore[override]
        with self._slots:
            if len(self._open) >= self.max_connections:
                if not self._waiting:
                    log.warning("%d connections are busy; closed a new one", self.max_connections)
                    self.shutdown_request(request)
                    return
                oldest = next(iter(self._waiting))
                del self._waiting[oldest]
                self._open.discard(oldest)
                # Its thread sees the end of the stream and finishes; the socket closes there.
                with contextlib.suppress(OSError):
                    oldest.shutdown(socket.SHUT_RDWR)
            self._open.add(request)
            self._waiting[request] = None
        super().process_request(request, client_address)

    def request_head_read(self, request: socket.socket) -> None:
        with self._slots:
            self._waiting.pop(request, None)

    def shutdown_request(self, request: socket.socket) -> None:  # type: ignore[override]
        with self._slots:
            self._open.discard(request)
            self._waiting.pop(request, None)
        super().shutdown_request(request)

    def handle_error(self, request: object, client_address: object) -> None:
        # One line per failed connection (a client that hung up, a reset), never a traceback.
        kind, exc = sys.exc_info()[:2]
        reason = f"{kind.__name__}: {exc}" if kind is not None else "unknown error"
        log.warning("a connection failed: %s", reason)


class _Handler(BaseHTTPRequestHandler):
    server: ShimServer
    server_version = "credential-shim"
    sys_version = ""
    timeout = REQUEST_TIMEOUT_S  # StreamRequestHandler: the socket's timeout for every read

    def parse_request(self) -> bool:
        parsed = super().parse_request()  # reads the request line's rest and the headers
        self.server.request_head_read(self.connection)
        return parsed

    def log_message(self, format: str, *args: object) -> None:
        pass  # no access log: failures are logged once, where they are understood

    def _reply(
        self,
        status: int,
        body: str,
        content_type: str = "text/plain",
        headers: Mapping[str, str] = {},
    ) -> None:
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def _fail(self, exc: ShimError, status: int | None = None) -> None:
        log.error("%s", exc)
        self._reply(status or exc.status, f"credential-shim: {exc}\n")

    def do_PUT(self) -> None:
        # IMDSv2 token rules as EC2 applies them ("Use IMDSv2", EC2 User Guide): a TTL of 1-21600
        # seconds is required, and a PUT carrying X-Forwarded-For (a proxied request) is refused.
        if urllib.parse.urlsplit(self.path).path != TOKEN_PATH:
            return self._reply(404, "Not Found\n")
        if self.headers.get("X-Forwarded-For") is not None:
            return self._reply(403, "Forbidden\n")
        ttl = self.headers.get(TTL_HEADER, "")
        if not ttl.isdigit() or not 1 <= int(ttl) <= 21600:
            return self._reply(400, f"Bad Request: {TTL_HEADER} must be 1-21600\n")
        self._reply(200, self.server.tokens.issue(int(ttl)), headers={TTL_HEADER: ttl})

    def do_GET(self) -> None:
        path = urllib.parse.urlsplit(self.path).path.rstrip("/")
        try:
            if path == HEALTH_PATH:
                try:
                    self.server.cache.get()
                except ShimError as exc:
                    return self._fail(
                        exc, 503
                    )  # the shim is up, but not ready: what ECS should see
                return self._reply(200, "ok\n")
            if not path.startswith("/latest/"):
                return self._reply(404, "Not Found\n")
            # IMDSv2 only: without a valid session token EC2 answers 401 to every metadata GET.
            if not self.server.tokens.valid(self.headers.get(TOKEN_HEADER)):
                return self._reply(
                    401,
                    "Unauthorized: PUT /latest/api/token first and send the "
                    f"token in {TOKEN_HEADER}\n",
                )
            if path == CREDENTIALS_PATH:
                return self._reply(200, self.server.cache.get().role_name)
            if path.startswith(CREDENTIALS_PATH + "/"):
                creds = self.server.cache.get()
                if path.removeprefix(CREDENTIALS_PATH + "/") != creds.role_name:
                    return self._reply(404, "Not Found\n")
                return self._reply(
                    200, json.dumps(creds.imds_document(), indent=2), "application/json"
                )
            if path == ZONE_PATH:
                return self._reply(200, self.server.zone())
            return self._reply(404, "Not Found\n")
        except ShimError as exc:
            self._fail(exc)

    def _not_allowed(self) -> None:
        self._reply(405, "Method Not Allowed\n", headers={"Allow": "GET, PUT"})

    do_POST = do_DELETE = do_PATCH = _not_allowed


def _check(port: int) -> int:
    """The container health check: the shim answers and has task-role credentials to serve."""
    try:
        with DIRECT.open(f"http://127.0.0.1:{port}{HEALTH_PATH}", timeout=3) as response:
            return 0 if response.status == 200 else 1
    except urllib.error.HTTPError as exc:
        reason = exc.read().decode(errors="replace").strip().removeprefix("credential-shim: ")
        print(f"credential-shim unhealthy: {reason}", file=sys.stderr)
    except (urllib.error.URLError, OSError) as exc:
        print(
            f"credential-shim unhealthy: not answering on port {port} "
            f"({getattr(exc, 'reason', exc)})",
            file=sys.stderr,
        )
    return 1


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="credential-shim", description=package_doc.split("\n", 1)[0]
    )
    parser.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help="port on --host (0: any free port)"
    )
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to listen on; keep it loopback"
    )
    parser.add_argument(
        "--ecs-endpoint",
        default=ECS_ENDPOINT,
        help="base URL for AWS_CONTAINER_CREDENTIALS_RELATIVE_URI (tests use 127.0.0.1)",
    )
    parser.add_argument(
        "--refresh-margin",
        type=float,
        default=600.0,
        help="refetch this many seconds before the credentials expire",
    )
    parser.add_argument(
        "--max-age",
        type=float,
        default=900.0,
        help="refetch credentials at least this often, to pick up a rotation early",
    )
    parser.add_argument(
        "--request-timeout",
        type=float,
        default=REQUEST_TIMEOUT_S,
        help="drop a connection that sends nothing for this many seconds",
    )
    parser.add_argument(
        "--max-connections",
        type=int,
        default=MAX_CONNECTIONS,
        help="connections served at once (idle ones make room for new ones)",
    )
    parser.add_argument(
        "--check", action="store_true", help="health check: exit 0 if the shim on --port is ready"
    )
    return parser


def main(argv: list[str] | None = None, environ: Mapping[str, str] = os.environ) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.refresh_margin < 0 or args.max_age < 0:
        parser.error("--refresh-margin and --max-age must be 0 or more seconds")
    if args.request_timeout <= 0 or args.max_connections < 1:
        parser.error("--request-timeout must be above 0 seconds and --max-connections at least 1")
    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr, format="credential-shim %(levelname)s: %(message)s"
    )
    if args.check:
        return _check(args.port)
    try:
        endpoint = TaskRoleEndpoint.from_environ(environ, args.ecs_endpoint)
    except ShimError as exc:
        log.error("%s", exc)
        return exc.status

    def now() -> datetime:
        return datetime.now(UTC)

    cache = CredentialCache(lambda: endpoint.fetch(now), now, args.refresh_margin, args.max_age)
    try:
        server = ShimServer(
            (args.host, args.port),
            cache,
            SessionTokens(),
            lambda: availability_zone(environ),
            max_connections=args.max_connections,
            request_timeout=args.request_timeout,
        )
    except OSError as exc:
        log.error("cannot listen on %s:%d: %s", args.host, args.port, exc.strerror or exc)
        return 1
    # ECS stops a task with SIGTERM: leave serve_forever and exit 0 instead of dying on the signal.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    host, port = server.server_address[:2]
    log.info(
        "serving task-role credentials from %s on http://%s:%d", safe_url(endpoint.url), host, port
    )
    try:
        server.serve_forever()
    finally:
        server.server_close()
    return 0
