"""The upstream side: the ECS container credentials endpoint, resolved and read as the AWS SDKs do,
and the cache that decides when to ask it again."""

from __future__ import annotations

import ipaddress
import json
import logging
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

from . import ECS_ENDPOINT

# FULL_URI hosts every AWS SDK accepts besides loopback and https (botocore
# ContainerMetadataFetcher).
_FULL_URI_HOSTS = ("169.254.170.2", "169.254.170.23", "fd00:ec2::23", "localhost")
_UPSTREAM_TIMEOUT = 2.0
_UPSTREAM_ATTEMPTS = 3  # as botocore: the agent endpoint can be briefly unavailable at task start


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A 3xx is an error, as in botocore's container credential fetcher (it never follows one):
    following it would send the authorization token to wherever the answer points."""

    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None


# Link-local and loopback endpoints are never reached through HTTP(S)_PROXY: a proxy would fail to
# reach them at best, and would see the credentials at worst. Redirects are never followed.
DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}), _NoRedirect())

log = logging.getLogger("credential-shim")


class ShimError(Exception):
    """One safe line (names, URLs without query, status codes; never credentials) and an HTTP
    status."""

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
        return {
            "Code": "Success",
            "LastUpdated": _iso(self.fetched_at),
            "Type": "AWS-HMAC",
            "AccessKeyId": self.access_key_id,
            "SecretAccessKey": self.secret_access_key,
            "Token": self.token,
            "Expiration": _iso(self.expiration),
        }


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def safe_url(url: str) -> str:
    """`scheme://host[:port]` only: the path of the ECS credentials endpoint (the relative URI, a
    random id) is the only secret guarding it from other processes in the task, so no answer and
    no log line carries it; neither user info nor a query ever leaves this function."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    try:
        port = parts.port
    except ValueError:
        port = None
    return f"{parts.scheme}://{host}" + (f":{port}" if port is not None else "")


def _get_json(url: str, headers: Mapping[str, str], what: str) -> dict:
    last = ""
    for attempt in range(_UPSTREAM_ATTEMPTS):
        if attempt:
            time.sleep(0.5)
        request = urllib.request.Request(url, headers={"Accept": "application/json", **headers})
        try:
            with DIRECT.open(request, timeout=_UPSTREAM_TIMEOUT) as response:
                body = response.read()
        except urllib.error.HTTPError as exc:
            # The body may echo the request; only the status goes into the message (and never a
            # redirect's Location).
            last = f"HTTP {exc.code} {exc.reason}"
            if 300 <= exc.code < 400:
                last += " (redirects are not followed)"
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
            raise ShimError(
                f"failed to read {what} from {safe_url(url)}: the answer is not JSON"
            ) from None
        if not isinstance(document, dict):
            raise ShimError(
                f"failed to read {what} from {safe_url(url)}: the answer is not a JSON object"
            )
        return document
    raise ShimError(f"failed to fetch {what} from {safe_url(url)}: {last}")


@dataclass(frozen=True)
class TaskRoleEndpoint:
    """Where and how to ask for the task role's credentials, resolved like every AWS SDK does."""

    url: str
    token: str | None = field(default=None, repr=False)
    token_file: str | None = None

    @classmethod
    def from_environ(
        cls, environ: Mapping[str, str], ecs_endpoint: str = ECS_ENDPOINT
    ) -> TaskRoleEndpoint:
        relative = environ.get("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "")
        full = environ.get("AWS_CONTAINER_CREDENTIALS_FULL_URI", "")
        # As botocore: the relative URI wins; the authorization token, when set, goes with either.
        if relative:
            url = ecs_endpoint.rstrip("/") + relative
        elif full:
            _check_full_uri_host(full)
            url = full
        else:
            raise ShimError(
                "no task role: neither AWS_CONTAINER_CREDENTIALS_RELATIVE_URI nor "
                "AWS_CONTAINER_CREDENTIALS_FULL_URI is set; set taskRoleArn in the task definition",
                2,
            )
        return cls(
            url,
            environ.get("AWS_CONTAINER_AUTHORIZATION_TOKEN") or None,
            environ.get("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE") or None,
        )

    def headers(self) -> dict[str, str]:
        token = self.token
        if self.token_file:  # the file wins and is reread on every fetch: its owner rotates it
            try:
                with open(self.token_file, encoding="utf-8") as handle:
                    token = handle.read()
            except OSError as exc:
                raise ShimError(
                    f"failed to read AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE {self.token_file}: "
                    f"{exc.strerror}"
                ) from None
        if token is None:
            return {}
        if "\r" in token or "\n" in token:  # botocore refuses these too: not a legal header value
            raise ShimError(
                "the container authorization token contains a line break; write the file "
                "without a trailing newline"
            )
        return {"Authorization": token}

    def fetch(self, now: Callable[[], datetime]) -> TaskRoleCredentials:
        document = _get_json(self.url, self.headers(), "task-role credentials")
        missing = [
            k
            for k in ("AccessKeyId", "SecretAccessKey", "Token", "Expiration")
            if not isinstance(document.get(k), str) or not document[k]
        ]
        if missing:
            raise ShimError(
                f"failed to read task-role credentials from {safe_url(self.url)}: "
                f"the answer lacks {', '.join(missing)}"
            )
        try:
            expiration = datetime.fromisoformat(document["Expiration"])
        except ValueError:
            raise ShimError(
                f"failed to read task-role credentials from {safe_url(self.url)}: "
                "Expiration is not an ISO 8601 time"
            ) from None
        if expiration.tzinfo is None:
            expiration = expiration.replace(tzinfo=UTC)
        # IMDS serves a role *name*; ECS gives the ARN (EKS Pod Identity does not: keep a stable
        # name).
        role_name = str(document.get("RoleArn") or "").rsplit("/", 1)[-1] or "task-role"
        return TaskRoleCredentials(
            document["AccessKeyId"],
            document["SecretAccessKey"],
            document["Token"],
            expiration,
            role_name,
            now(),
        )


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
    raise ShimError(
        f"AWS_CONTAINER_CREDENTIALS_FULL_URI host {host!r} is not allowed: use https, a loopback "
        f"address or one of {', '.join(_FULL_URI_HOSTS)} (the rule every AWS SDK applies)",
        2,
    )


class CredentialCache:
    """Serves one set of credentials until `refresh_margin` before it expires or `max_age` after it
    was fetched, whichever is first; one fetch at a time, however many requests wait."""

    def __init__(
        self,
        fetch: Callable[[], TaskRoleCredentials],
        now: Callable[[], datetime],
        refresh_margin: float,
        max_age: float,
    ) -> None:
        self._fetch = fetch
        self._now = now
        self._refresh_margin = refresh_margin
        self._max_age = max_age
        self._current: TaskRoleCredentials | None = None
        self._lock = threading.Lock()

    def _due(self, creds: TaskRoleCredentials) -> bool:
        now = self._now()
        return (creds.expiration - now).total_seconds() <= self._refresh_margin or (
            now - creds.fetched_at
        ).total_seconds() >= self._max_age

    def get(self) -> TaskRoleCredentials:
        with self._lock:
            current = self._current
            if current is not None and not self._due(current):
                return current
            try:
                fresh = self._fetch()
            except ShimError as exc:
                if current is not None and current.expiration > self._now():
                    # Still valid: keep serving it rather than fail the application, and say why.
                    log.warning(
                        "%s; serving the cached credentials until %s", exc, _iso(current.expiration)
                    )
                    return current
                raise
            if current is not None and fresh.access_key_id != current.access_key_id:
                log.info(
                    "task-role credentials for role %s rotated; new ones expire at %s",
                    fresh.role_name,
                    _iso(fresh.expiration),
                )
            elif current is None:
                log.info(
                    "task-role credentials for role %s fetched; they expire at %s",
                    fresh.role_name,
                    _iso(fresh.expiration),
                )
            self._current = fresh
            return fresh


def availability_zone(environ: Mapping[str, str]) -> str:
    """The task's zone from ECS task metadata v4; google-auth derives the region by dropping its
    last letter."""
    base = environ.get("ECS_CONTAINER_METADATA_URI_V4", "")
    if not base:
        raise ShimError(
            "the availability zone is unknown: ECS_CONTAINER_METADATA_URI_V4 is not set; "
            "set AWS_REGION in the application container",
            404,
        )
    zone = _get_json(base.rstrip("/") + "/task", {}, "task metadata").get("AvailabilityZone")
    if not isinstance(zone, str) or not zone:
        raise ShimError(
            "the ECS task metadata has no AvailabilityZone; set AWS_REGION in the application "
            "container"
        )
    return zone
