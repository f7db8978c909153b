"""The downstream side: the IMDSv2-style HTTP server, its health check client and the command line."""

from __future__ import annotations

import argparse
import functools
import json
import logging
import os
import secrets
import signal
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


class SessionTokens:
    """IMDSv2 session tokens: random, held in memory only, each valid for the TTL its client asked."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._expiry: dict[str, float] = {}
        self._lock = threading.Lock()

    def issue(self, ttl_seconds: int) -> str:
        token = secrets.token_urlsafe(32)
        with self._lock:
            now = self._clock()
            self._expiry = {t: e for t, e in self._expiry.items() if e > now}
            self._expiry[token] = now + ttl_seconds
        return token

    def valid(self, token: str | None) -> bool:
        with self._lock:
            return token is not None and self._expiry.get(token, 0.0) > self._clock()


class ShimServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(
        self,
        address: tuple[str, int],
        cache: CredentialCache,
        tokens: SessionTokens,
        zone: Callable[[], str],
    ) -> None:
        super().__init__(address, _Handler)
        self.cache = cache
        self.tokens = tokens
        # A task never moves: one successful lookup is enough (lru_cache does not keep failures).
        self.zone = functools.lru_cache(maxsize=1)(zone)


class _Handler(BaseHTTPRequestHandler):
    server: ShimServer
    server_version = "credential-shim"
    sys_version = ""

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
            f"credential-shim unhealthy: not answering on port {port} ({getattr(exc, 'reason', exc)})",
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
        "--check", action="store_true", help="health check: exit 0 if the shim on --port is ready"
    )
    return parser


def main(argv: list[str] | None = None, environ: Mapping[str, str] = os.environ) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.refresh_margin < 0 or args.max_age < 0:
        parser.error("--refresh-margin and --max-age must be 0 or more seconds")
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
            (args.host, args.port), cache, SessionTokens(), lambda: availability_zone(environ)
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
