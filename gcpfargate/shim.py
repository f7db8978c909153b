"""credential-shim: the EC2 metadata credential API on loopback, backed by the ECS task-role endpoint.

Google's auth libraries read AWS credentials from the environment or from an EC2-metadata-style
`credential_source.url`, never from the ECS container credentials endpoint that Fargate gives a
task role (see /work/shared/KEYLESS.md). This program bridges the two inside the task: it runs as
a non-essential sidecar, listens on 127.0.0.1 (awsvpc containers share one network namespace) and
serves exactly what google-auth's `aws.py` asks for:

    PUT /latest/api/token                             IMDSv2 session token (TTL header required)
    GET /latest/meta-data/iam/security-credentials    the role name
    GET /latest/meta-data/iam/security-credentials/R  {"AccessKeyId", "SecretAccessKey", "Token", ...}
    GET /latest/meta-data/placement/availability-zone from the ECS task metadata (region fallback)
    GET /healthz                                      200 once task-role credentials are available

Every metadata GET needs a session token (IMDSv2 only). Credentials are cached and refetched
shortly before their `Expiration` and at least every `--max-age` seconds, so the application's
Google credentials keep refreshing for as long as it runs.

This file is deliberately standard-library only and imports nothing from gcpfargate: the shim image
is a Python base plus this one file (`python3 /shim.py`), and `python -m gcpfargate.shim` runs the
same code from an installed gcpfargate. `python3 /shim.py --check` is the ECS health-check command.
Credentials are never logged or put in an error message; logs name the role and the expiry only.
"""

from __future__ import annotations

import argparse
import ipaddress
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
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

DEFAULT_PORT = 9254
TOKEN_PATH = "/latest/api/token"
CREDENTIALS_PATH = "/latest/meta-data/iam/security-credentials"
ZONE_PATH = "/latest/meta-data/placement/availability-zone"
HEALTH_PATH = "/healthz"
TTL_HEADER = "X-aws-ec2-metadata-token-ttl-seconds"
TOKEN_HEADER = "X-aws-ec2-metadata-token"
ECS_ENDPOINT = "http://169.254.170.2"
# FULL_URI hosts every AWS SDK accepts besides loopback and https (botocore ContainerMetadataFetcher).
_FULL_URI_HOSTS = ("169.254.170.2", "169.254.170.23", "fd00:ec2::23", "localhost")
_UPSTREAM_TIMEOUT = 2.0
_UPSTREAM_ATTEMPTS = 3  # as botocore: the agent endpoint can be briefly unavailable at task start

log = logging.getLogger("credential-shim")


class ShimError(Exception):
    """One safe line (names, URLs without query, status codes; never credentials) and an HTTP status."""

    def __init__(self, message: str, status: int = 502) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class TaskRoleCredentials:
    access_key_id: str = field(repr=False)
    secret_access_key: str = field(repr=False)
    token: str = field(repr=False)
    expiration: datetime
    role_name: str
    fetched_at: datetime

    def imds_document(self) -> dict[str, str]:
        # The shape EC2's instance metadata returns for security-credentials/<role>.
        return {"Code": "Success", "LastUpdated": _iso(self.fetched_at), "Type": "AWS-HMAC",
                "AccessKeyId": self.access_key_id, "SecretAccessKey": self.secret_access_key,
                "Token": self.token, "Expiration": _iso(self.expiration)}


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _safe_url(url: str) -> str:
    """The URL without its query: an ECS credentials id is in the path, but tokens may be in a query."""
    parts = urllib.parse.urlsplit(url)
    return urllib.parse.urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))


def _get_json(url: str, headers: Mapping[str, str], what: str) -> dict:
    last = ""
    for attempt in range(_UPSTREAM_ATTEMPTS):
        if attempt:
            time.sleep(0.5)
        request = urllib.request.Request(url, headers={"Accept": "application/json", **headers})
        try:
            with urllib.request.urlopen(request, timeout=_UPSTREAM_TIMEOUT) as response:
                body = response.read()
        except urllib.error.HTTPError as exc:
            # The body may echo the request; only the status goes into the message.
            last = f"HTTP {exc.code} {exc.reason}"
            if exc.code < 500:
                break
            continue
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            last = f"unreachable ({reason})"
            continue
        try:
            document = json.loads(body)
        except ValueError:
            raise ShimError(f"failed to read {what} from {_safe_url(url)}: the answer is not JSON") from None
        if not isinstance(document, dict):
            raise ShimError(f"failed to read {what} from {_safe_url(url)}: the answer is not a JSON object")
        return document
    raise ShimError(f"failed to fetch {what} from {_safe_url(url)}: {last}")


@dataclass(frozen=True)
class TaskRoleEndpoint:
    """Where and how to ask for the task role's credentials, resolved like every AWS SDK does."""

    url: str
    token: str | None = field(default=None, repr=False)
    token_file: str | None = None

    @classmethod
    def from_environ(cls, environ: Mapping[str, str], ecs_endpoint: str = ECS_ENDPOINT) -> TaskRoleEndpoint:
        relative = environ.get("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "")
        full = environ.get("AWS_CONTAINER_CREDENTIALS_FULL_URI", "")
        if relative:  # the relative URI wins, and never carries the authorization token
            return cls(ecs_endpoint.rstrip("/") + relative)
        if not full:
            raise ShimError("no task role: neither AWS_CONTAINER_CREDENTIALS_RELATIVE_URI nor "
                            "AWS_CONTAINER_CREDENTIALS_FULL_URI is set; set taskRoleArn in the task definition", 2)
        _check_full_uri_host(full)
        return cls(full, environ.get("AWS_CONTAINER_AUTHORIZATION_TOKEN") or None,
                   environ.get("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE") or None)

    def headers(self) -> dict[str, str]:
        token = self.token
        if self.token_file:  # the file wins and is reread on every fetch: its owner rotates it
            try:
                with open(self.token_file, encoding="utf-8") as handle:
                    token = handle.read()
            except OSError as exc:
                raise ShimError(f"failed to read AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE {self.token_file}: "
                                f"{exc.strerror}") from None
        if token is None:
            return {}
        if "\r" in token or "\n" in token:  # botocore refuses these too: not a legal header value
            raise ShimError("the container authorization token contains a line break; write the file "
                            "without a trailing newline")
        return {"Authorization": token}

    def fetch(self, now: Callable[[], datetime]) -> TaskRoleCredentials:
        document = _get_json(self.url, self.headers(), "task-role credentials")
        missing = [k for k in ("AccessKeyId", "SecretAccessKey", "Token", "Expiration")
                   if not isinstance(document.get(k), str) or not document[k]]
        if missing:
            raise ShimError(f"failed to read task-role credentials from {_safe_url(self.url)}: "
                            f"the answer lacks {', '.join(missing)}")
        try:
            expiration = datetime.fromisoformat(document["Expiration"])
        except ValueError:
            raise ShimError(f"failed to read task-role credentials from {_safe_url(self.url)}: "
                            "Expiration is not an ISO 8601 time") from None
        if expiration.tzinfo is None:
            expiration = expiration.replace(tzinfo=UTC)
        # IMDS serves a role *name*; ECS gives the ARN (EKS Pod Identity does not: keep a stable name).
        role_name = str(document.get("RoleArn") or "").rsplit("/", 1)[-1] or "task-role"
        return TaskRoleCredentials(document["AccessKeyId"], document["SecretAccessKey"], document["Token"],
                                   expiration, role_name, now())


def _check_full_uri_host(url: str) -> None:
    parts = urllib.parse.urlsplit(url)
    if parts.scheme == "https":
        return
    host = parts.hostname or ""
    try:
        if parts.scheme == "http" and ipaddress.ip_address(host).is_loopback:
            return
    except ValueError:
        pass
    if parts.scheme == "http" and host in _FULL_URI_HOSTS:
        return
    raise ShimError(f"AWS_CONTAINER_CREDENTIALS_FULL_URI host {host!r} is not allowed: use https, a loopback "
                    f"address or one of {', '.join(_FULL_URI_HOSTS)} (the rule every AWS SDK applies)", 2)


class CredentialCache:
    """Serves one set of credentials until `refresh_margin` before it expires or `max_age` after it
    was fetched, whichever is first; one fetch at a time, however many requests wait."""

    def __init__(self, fetch: Callable[[], TaskRoleCredentials], now: Callable[[], datetime],
                 refresh_margin: float, max_age: float) -> None:
        self._fetch = fetch
        self._now = now
        self._refresh_margin = refresh_margin
        self._max_age = max_age
        self._current: TaskRoleCredentials | None = None
        self._lock = threading.Lock()

    def _due(self, creds: TaskRoleCredentials) -> bool:
        now = self._now()
        return ((creds.expiration - now).total_seconds() <= self._refresh_margin
                or (now - creds.fetched_at).total_seconds() >= self._max_age)

    def get(self) -> TaskRoleCredentials:
        with self._lock:
            current = self._current
            if current is not None and not self._due(current):
                return current
            try:
                fresh = self._fetch()
            except ShimError as exc:
                if current is not None and current.expiration > self._now():
                    # Still valid: keep serving it rather than fail the application, and say so once.
                    log.warning("%s; serving the cached credentials until %s", exc, _iso(current.expiration))
                    return current
                raise
            if current is not None and fresh.access_key_id != current.access_key_id:
                log.info("task-role credentials for role %s rotated; new ones expire at %s",
                         fresh.role_name, _iso(fresh.expiration))
            elif current is None:
                log.info("task-role credentials for role %s fetched; they expire at %s",
                         fresh.role_name, _iso(fresh.expiration))
            self._current = fresh
            return fresh


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


def availability_zone(environ: Mapping[str, str]) -> str:
    """The task's zone from ECS task metadata v4; google-auth derives the region by dropping its last letter."""
    base = environ.get("ECS_CONTAINER_METADATA_URI_V4", "")
    if not base:
        raise ShimError("the availability zone is unknown: ECS_CONTAINER_METADATA_URI_V4 is not set; "
                        "set AWS_REGION in the application container", 404)
    zone = _get_json(base.rstrip("/") + "/task", {}, "task metadata").get("AvailabilityZone")
    if not isinstance(zone, str) or not zone:
        raise ShimError("the ECS task metadata has no AvailabilityZone; set AWS_REGION in the application container")
    return zone


class ShimServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], cache: CredentialCache, tokens: SessionTokens,
                 zone: Callable[[], str]) -> None:
        super().__init__(address, _Handler)
        self.cache = cache
        self.tokens = tokens
        self._zone_source = zone
        self._zone: str | None = None

    def zone(self) -> str:
        if self._zone is None:  # a task never moves: one successful lookup is enough
            self._zone = self._zone_source()
        return self._zone


class _Handler(BaseHTTPRequestHandler):
    server: ShimServer
    server_version = "credential-shim"
    sys_version = ""

    def log_message(self, format: str, *args: object) -> None:
        pass  # no access log: failures are logged once, where they are understood

    def _reply(self, status: int, body: str, content_type: str = "text/plain", headers: Mapping[str, str] = {}) -> None:
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
                    return self._fail(exc, 503)  # the shim is up, but not ready: what ECS should see
                return self._reply(200, "ok\n")
            if not path.startswith("/latest/"):
                return self._reply(404, "Not Found\n")
            # IMDSv2 only: without a valid session token EC2 answers 401 to every metadata GET.
            if not self.server.tokens.valid(self.headers.get(TOKEN_HEADER)):
                return self._reply(401, "Unauthorized: PUT /latest/api/token first and send the "
                                        f"token in {TOKEN_HEADER}\n")
            if path == CREDENTIALS_PATH:
                return self._reply(200, self.server.cache.get().role_name)
            if path.startswith(CREDENTIALS_PATH + "/"):
                creds = self.server.cache.get()
                if path.removeprefix(CREDENTIALS_PATH + "/") != creds.role_name:
                    return self._reply(404, "Not Found\n")
                return self._reply(200, json.dumps(creds.imds_document(), indent=2), "application/json")
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
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{HEALTH_PATH}", timeout=3) as response:
            return 0 if response.status == 200 else 1
    except urllib.error.HTTPError as exc:
        print(f"credential-shim unhealthy: {exc.read().decode(errors='replace').strip()}", file=sys.stderr)
    except (urllib.error.URLError, OSError) as exc:
        print(f"credential-shim unhealthy: not answering on port {port} ({getattr(exc, 'reason', exc)})",
              file=sys.stderr)
    return 1


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="credential-shim", description=__doc__.split("\n", 1)[0])
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="port on --host (0: any free port)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on; keep it loopback")
    parser.add_argument("--ecs-endpoint", default=ECS_ENDPOINT,
                        help="base URL for AWS_CONTAINER_CREDENTIALS_RELATIVE_URI (tests use 127.0.0.1)")
    parser.add_argument("--refresh-margin", type=float, default=600.0,
                        help="refetch this many seconds before the credentials expire")
    parser.add_argument("--max-age", type=float, default=900.0,
                        help="refetch credentials at least this often, to pick up a rotation early")
    parser.add_argument("--check", action="store_true", help="health check: exit 0 if the shim on --port is ready")
    return parser


def main(argv: list[str] | None = None, environ: Mapping[str, str] = os.environ) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="credential-shim %(levelname)s: %(message)s")
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
        server = ShimServer((args.host, args.port), cache, SessionTokens(), lambda: availability_zone(environ))
    except OSError as exc:
        log.error("cannot listen on %s:%d: %s", args.host, args.port, exc.strerror or exc)
        return 1
    # ECS stops a task with SIGTERM: leave serve_forever and exit 0 instead of dying on the signal.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    host, port = server.server_address[:2]
    log.info("serving task-role credentials from %s on http://%s:%d", _safe_url(endpoint.url), host, port)
    try:
        server.serve_forever()
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
