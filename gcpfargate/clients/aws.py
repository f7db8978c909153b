"""The AWS adapter: one boto3 session, clients created once and reused, errors translated.

Every AWS call in gcpfargate goes through `AwsClients.call`, which
- uses botocore's standard retry mode (honouring AWS_MAX_ATTEMPTS and AWS_RETRY_MODE),
- logs each call's operation to GCPFARGATE_CALL_LOG when set (the call table in docs/calls.md and
  the no-op tests read it),
- turns botocore's specific exceptions into `AwsError` with the error code kept, so callers can
  react to `ResourceNotFoundException` without mistaking AccessDenied or throttling for it.
"""

from __future__ import annotations

import contextlib
import os
import re
import threading
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, cast

from gcpfargate.errors import AwsConfigError, AwsError

if TYPE_CHECKING:  # the stubs only: boto3 itself is imported when the first client is made
    import queue
    from concurrent.futures import Future

    from botocore.client import BaseClient
    from botocore.config import _RetryDict
    from botocore.model import ServiceModel
    from botocore.session import Session as BotocoreSession

# Operations that only read. Everything else counts as mutating in the call log.
_READ_PREFIXES = ("Get", "List", "Describe", "BatchGet", "Simulate", "Lookup", "Head", "Search")


def is_mutating(operation: str) -> bool:
    return not operation.startswith(_READ_PREFIXES)


def _all_items(client: BaseClient, operation: str, key: str, params: dict[str, Any]) -> list[Any]:
    """Every item under `key` across the pages of `operation` (botocore's own paginator)."""
    return [
        item
        for page in client.get_paginator(operation).paginate(**params)
        for item in page.get(key, [])
    ]


def _ahead_key(service: str, what: tuple[str, ...], params: dict[str, Any]) -> tuple[str, ...]:
    import json

    return (service, *what, json.dumps(params, sort_keys=True, default=str))


_HINTS = {
    "AccessDenied": "Check the IAM permissions of the AWS identity gcpfargate runs as",
    "AccessDeniedException": "Check the IAM permissions of the AWS identity gcpfargate runs as",
    "UnrecognizedClientException": "Check the AWS credentials (profile, AWS_ACCESS_KEY_ID)",
    "InvalidClientTokenId": "Check the AWS credentials (profile, AWS_ACCESS_KEY_ID)",
    "ExpiredToken": "Refresh the AWS session credentials and retry",
    "ExpiredTokenException": "Refresh the AWS session credentials and retry",
    "ThrottlingException": "AWS kept throttling after retries; retry later or raise "
    "AWS_MAX_ATTEMPTS",
    "Throttling": "AWS kept throttling after retries; retry later or raise AWS_MAX_ATTEMPTS",
}


def _cache_assumed_roles(session: Any) -> None:
    """Keep assumed-role credentials (a profile's `role_arn`, with or without `mfa_serial`) where
    the AWS CLI keeps them, ~/.aws/cli/cache, as its JSONFileCache: an MFA code is asked once per
    role session, shared with the AWS CLI, not on every command."""
    from botocore.exceptions import UnknownCredentialError
    from botocore.utils import JSONFileCache

    try:
        provider = session.get_component("credential_provider").get_provider("assume-role")
    except UnknownCredentialError:  # a resolver without that provider: nothing to cache
        return
    provider.cache = JSONFileCache(os.path.join(os.path.expanduser("~"), ".aws", "cli", "cache"))


def profile_prompts_for_mfa(profile: str = "") -> bool:
    """Whether the AWS profile in use (`profile`, else AWS_PROFILE / AWS_DEFAULT_PROFILE, else
    default) names an `mfa_serial`. Read from the config file alone: no SDK import, so commands
    that never prompt pay nothing."""
    import configparser

    name = (
        profile
        or os.environ.get("AWS_PROFILE")
        or os.environ.get("AWS_DEFAULT_PROFILE")
        or "default"
    )
    path = os.environ.get("AWS_CONFIG_FILE") or os.path.join(
        os.path.expanduser("~"), ".aws", "config"
    )
    parser = configparser.RawConfigParser()
    try:
        parser.read(os.path.expanduser(path), encoding="utf-8")
    except (configparser.Error, UnicodeDecodeError):
        return False  # botocore will say what is wrong with the file
    section = "default" if name == "default" else f"profile {name}"
    return parser.has_option(section, "mfa_serial")


# Threads that send the reads sent ahead (read_ahead).
AHEAD_WORKERS = 2


class AwsClients:
    def __init__(self, region: str = "", profile: str = "") -> None:
        # botocore reads AWS_DEFAULT_REGION and the profile; AWS_REGION is what the SDKs (and
        # Fargate) set.
        self._region = region or os.environ.get("AWS_REGION") or None
        self._profile = profile or None
        # Any, not boto3.Session: the stubs type `Session.client` only for literal service names,
        # and this adapter makes its clients from a name held in a variable.
        self._session: Any = None
        self._clients: dict[str, BaseClient] = {}
        self._lock = threading.Lock()
        # Reads sent ahead (read_ahead): request -> (the service's write count when sent, its
        # answer). Its own lock: taking an answer never waits for another thread making a client.
        self._ahead: dict[tuple[str, ...], tuple[int, Future[Any]]] = {}
        self._writes: dict[str, int] = {}
        self._ahead_lock = threading.Lock()
        self._ahead_queue: queue.SimpleQueue[Callable[[], None]] | None = None
        # Worker thread ident -> the reads its `then` sent (only that worker touches its list).
        self._ahead_next: dict[int, list[Callable[[], None]]] = {}
        self._account_id: str | None = None
        self._call_log = os.environ.get("GCPFARGATE_CALL_LOG")

    @property
    def session(self) -> Any:
        if self._session is None:
            import boto3
            import botocore.exceptions

            from gcpfargate.clients.botocore_data import use_cached_files

            try:
                self._session = boto3.Session(profile_name=self._profile, region_name=self._region)
            except botocore.exceptions.ProfileNotFound:
                raise AwsConfigError(
                    f"AWS profile {self._profile!r} is not configured",
                    "Check --profile / aws.profile against ~/.aws/config",
                ) from None
            use_cached_files(
                self._session._session
            )  # botocore's models parsed once, not per command
            _cache_assumed_roles(self._session._session)
        return self._session

    def resolve_credentials(self) -> None:
        """Resolve the credentials now, on the calling thread: a profile's MFA prompt (botocore's
        getpass) is then asked before any spinner draws over it and before a read-ahead thread
        would ask it unseen."""
        with self._translated("resolve AWS credentials"):
            credentials = self.session.get_credentials()
            if credentials is not None:
                credentials.get_frozen_credentials()

    @property
    def ca_bundle(self) -> str | None:
        """The CA bundle botocore verifies TLS with: AWS_CA_BUNDLE, else the profile's `ca_bundle`;
        None for the system's. The registry client uses the same, as the AWS CLI does for ECR."""
        value = self.session._session.get_config_variable("ca_bundle")
        return str(value) if value else None

    @property
    def region(self) -> str:
        region = self.session.region_name
        if not region:
            raise AwsConfigError(
                "no AWS region is set", "Set aws.region in gcpfargate.toml, --region, or AWS_REGION"
            )
        return str(region)

    def client(self, service: str, probe: bool = False) -> BaseClient:
        """The shared client for `service`; `probe=True` gives one that never retries, for optional
        calls (such as the policy simulator) whose failure only means "fall back"."""
        with self._lock:
            cache_key = f"{service}/probe" if probe else service
            if cache_key not in self._clients:
                from botocore.config import Config

                # Standard retry mode unless the user chose one; max attempts stay with botocore's
                # own resolution, so AWS_MAX_ATTEMPTS is honoured.
                # The mode is the user's text as given: botocore rejects an unknown one when it
                # makes the client, and `_usable_client` words that error.
                retries = cast("_RetryDict", {"mode": os.environ.get("AWS_RETRY_MODE", "standard")})
                if probe:
                    retries["total_max_attempts"] = 1
                client = self.session.client(
                    service,
                    region_name=self.region,
                    config=Config(retries=retries, user_agent_extra="gcpfargate"),
                )
                client.meta.events.register("before-call", self._log_call)
                self._clients[cache_key] = client
            return self._clients[cache_key]

    def service_model(self, service: str) -> ServiceModel:
        """botocore's model of `service`, loaded through this session's loader, whose cache the
        clients share: validating against it costs nothing extra when a client of the service is
        made anyway."""
        botocore_session: BotocoreSession = self.session._session
        return botocore_session.get_service_model(service)

    def _log_call(self, model: Any, **_: Any) -> None:
        service = model.service_model.service_name
        if self._call_log:
            with open(self._call_log, "a", encoding="utf-8") as log:
                log.write(
                    f"aws {service} {model.name} {'write' if is_mutating(model.name) else 'read'}\n"
                )

    def call(
        self, service: str, operation: str, /, action: str = "", probe: bool = False, **params: Any
    ) -> Any:
        """Call `operation` (snake_case) on `service`; `action` words the error ("store the
        secret")."""
        action = action or operation.replace("_", " ")
        client = self._usable_client(service, probe, action)
        ahead = self._ahead_taken(service, ("call", operation), params)
        with self._translated(action):
            if ahead is not None:
                return ahead.result()
            return getattr(client, operation)(**params)

    def find(
        self,
        service: str,
        operation: str,
        missing: str | tuple[str, ...],
        action: str = "",
        **params: Any,
    ) -> Any | None:
        """Like `call`, but None when AWS answers with a `missing` error code ("no such resource").

        Only the named codes mean "absent": AccessDenied, throttling and the rest still raise."""
        try:
            return self.call(service, operation, action, **params)
        except AwsError as exc:
            if exc.code in ((missing,) if isinstance(missing, str) else missing):
                return None
            raise

    def paginate(
        self, service: str, operation: str, key: str, action: str = "", **params: Any
    ) -> list[Any]:
        """All items under `key` across pages (botocore's own paginator), with `call`'s error
        translation."""
        action = action or operation.replace("_", " ")
        client = self._usable_client(service, False, action)
        ahead = self._ahead_taken(service, ("paginate", operation, key), params)
        with self._translated(action):
            if ahead is not None:
                return list(ahead.result())
            return _all_items(client, operation, key, params)

    def read_ahead(
        self,
        service: str,
        operation: str,
        /,
        then: Callable[[Any], None] | None = None,
        **params: Any,
    ) -> None:
        """Send the read `call(service, operation, **params)` now, in a background thread; the next
        identical call takes its answer (or its error, worded by that call) instead of asking again.

        deploy overlaps its independent reads with the work that keeps the interpreter busy
        (importing the Google SDK, checking the template). Only for a read the caller is sure to
        make next: one never taken is an extra request. A write to the same service in between makes
        the answer stale: the call then asks again. `then(answer)` runs once the read succeeded,
        before the answer is handed over, to send the reads that depend on it ahead too."""
        self._start_ahead(
            service,
            ("call", operation),
            params,
            lambda client: getattr(client, operation)(**params),
            then,
        )

    def paginate_ahead(self, service: str, operation: str, key: str, /, **params: Any) -> None:
        """`read_ahead` for `paginate(service, operation, key, **params)`."""
        self._start_ahead(
            service,
            ("paginate", operation, key),
            params,
            lambda client: _all_items(client, operation, key, params),
        )

    def _start_ahead(
        self,
        service: str,
        what: tuple[str, ...],
        params: dict[str, Any],
        read: Callable[[BaseClient], Any],
        then: Callable[[Any], None] | None = None,
    ) -> None:
        from concurrent.futures import Future

        _ = self.session  # made here, in the caller's thread: never by two threads at once
        future: Future[Any] = Future()
        with self._ahead_lock:
            self._ahead[_ahead_key(service, what, params)] = (self._writes.get(service, 0), future)

        def run() -> None:
            try:
                answer = read(self.client(service))
            except (
                BaseException
            ) as exc:  # raised where the answer is taken, inside that call's wording
                future.set_exception(exc)
                return
            if then is not None:
                # Sends the dependent reads ahead (registered now, sent right after this one) before
                # this answer is handed over, so whoever takes it finds them already on their way.
                with contextlib.suppress(
                    Exception
                ):  # only an optimisation: the reads are then made as usual
                    then(answer)
            future.set_result(answer)

        with self._ahead_lock:
            if self._ahead_queue is None:
                import queue

                self._ahead_queue = queue.SimpleQueue()
                # AHEAD_WORKERS daemon threads send the reads, in the order sent, started once:
                # starting a thread per read costs the sender a hand-over of the interpreter each
                # time, and a daemon never holds the process open for a read nobody takes (an
                # earlier step failed). Two, so one read's round trip overlaps the next one's.
                for number in range(AHEAD_WORKERS):
                    threading.Thread(
                        target=self._work, name=f"gcpfargate-ahead-{number}", daemon=True
                    ).start()
            sent_by = self._ahead_next.get(threading.get_ident())
            if sent_by is not None:
                sent_by.append(run)  # sent by `then`: next, before what was queued after its read
            else:
                assert self._ahead_queue is not None
                self._ahead_queue.put(run)

    def _work(self) -> None:
        assert self._ahead_queue is not None
        mine: list[Callable[[], None]] = []
        with self._ahead_lock:
            self._ahead_next[threading.get_ident()] = mine
        while True:
            self._ahead_queue.get()()
            while mine:
                mine.pop(0)()

    def _ahead_taken(
        self, service: str, what: tuple[str, ...], params: dict[str, Any]
    ) -> Future[Any] | None:
        """The read sent ahead for exactly this request, unless a write to `service` came after it
        was sent. A write forgets nothing itself; it only moves the service's write count on."""
        if what[0] == "call" and is_mutating(
            "".join(part.capitalize() for part in what[1].split("_"))
        ):
            with self._ahead_lock:
                self._writes[service] = self._writes.get(service, 0) + 1
            return None
        with self._ahead_lock:
            if not self._ahead:
                return None
            sent = self._ahead.pop(_ahead_key(service, what, params), None)
            if sent is None or sent[0] != self._writes.get(service, 0):
                return None
            return sent[1]

    def _usable_client(self, service: str, probe: bool, action: str) -> BaseClient:
        import botocore.exceptions

        try:
            return self.client(service, probe=probe)
        except botocore.exceptions.BotoCoreError as exc:
            # A malformed ~/.aws/config, an unknown AWS_RETRY_MODE, …: the client cannot even be
            # made.
            raise AwsError(
                f"failed to {action}: the AWS configuration is invalid: {exc}",
                "Check ~/.aws/config, the AWS_* variables and --profile",
            ).with_code(type(exc).__name__) from None
        except ValueError as exc:
            raise AwsError(
                f"failed to {action}: {exc}",
                "Check AWS_ENDPOINT_URL (a URL such as https://host:port)",
            ).with_code("Config") from None

    @contextlib.contextmanager
    def _translated(self, action: str) -> Iterator[None]:
        """botocore's specific exceptions → one AwsError per cause, with the AWS error code kept."""
        import botocore.exceptions
        import botocore.parsers

        try:
            yield
        except botocore.exceptions.ClientError as exc:
            error = exc.response.get("Error", {})
            code = str(error.get("Code", "Unknown"))
            message = str(error.get("Message", "")).rstrip(".")
            raise AwsError(
                f"failed to {action}: {code}: {message}", _HINTS.get(code, "")
            ).with_code(code) from None
        except botocore.exceptions.NoCredentialsError:
            raise AwsConfigError(
                f"failed to {action}: no AWS credentials found",
                "Configure a profile (--profile) or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY",
            ).with_code("NoCredentials") from None
        except botocore.exceptions.EndpointConnectionError as exc:
            endpoint = exc.kwargs.get("endpoint_url", "")
            raise AwsError(
                f"failed to {action}: cannot reach the AWS endpoint {endpoint}",
                "Check the network, AWS_ENDPOINT_URL and the region",
            ).with_code("EndpointConnection") from None
        except (
            botocore.exceptions.ConnectionClosedError,
            botocore.exceptions.ReadTimeoutError,
            botocore.exceptions.ConnectTimeoutError,
        ) as exc:
            raise AwsError(
                f"failed to {action}: connection to AWS failed ({type(exc).__name__})",
                "Retry; check the network",
            ).with_code("Connection") from None
        except botocore.exceptions.ParamValidationError as exc:
            # botocore's text quotes the offending value, which may be a secret: keep the first line
            # only.
            reason = str(exc).splitlines()[-1].split(", value:")[0]
            raise AwsError(f"failed to {action}: invalid request: {reason}").with_code(
                "ParamValidation"
            ) from None
        except botocore.parsers.ResponseParserError:
            raise AwsError(
                f"failed to {action}: the endpoint sent a response that is not AWS's",
                "Check AWS_ENDPOINT_URL; retry",
            ).with_code("ResponseParserError") from None
        except botocore.exceptions.BotoCoreError as exc:
            raise AwsError(f"failed to {action}: {exc}").with_code(type(exc).__name__) from None

    @property
    def account_id(self) -> str:
        if self._account_id is None:
            identity = self.call("sts", "get_caller_identity", "read the AWS identity")
            self._account_id = str(identity["Account"])
        return self._account_id

    def partition(self) -> str:
        """The ARN partition of the region (aws, aws-cn, aws-us-gov, aws-iso, aws-iso-b, aws-eusc,
        …)."""
        return str(self._partition_data()["id"])

    def dns_suffix(self) -> str:
        """The region's DNS suffix (amazonaws.com, amazonaws.com.cn, c2s.ic.gov, amazonaws.eu,
        …)."""
        return str(self._partition_data()["outputs"]["dnsSuffix"])

    def _partition_data(self) -> dict[str, Any]:
        """botocore's partition entry for the region: botocore's own answer for the regions it
        knows; a region newer than this botocore by its partition's region pattern; else the
        commercial one."""
        import botocore.exceptions

        region = self.region
        # The same partition data botocore's endpoint rules use (its loader caches it for the
        # clients).
        partitions = self.session._session.get_component("data_loader").load_data("partitions")[
            "partitions"
        ]
        try:
            name = self.session.get_partition_for_region(region)
        except botocore.exceptions.UnknownRegionError:
            name = next(
                (p["id"] for p in partitions if re.match(p.get("regionRegex") or "(?!)", region)),
                "aws",
            )
        return dict(next(p for p in partitions if p["id"] == name))
