"""`IamEmulator`: the public face of the package. Starts both servers and steers the knobs.

Every knob is a method here and (for other processes) an admin HTTP route in admin_http.py; the
constructor sets the defaults that `reset_knobs()` returns to. What each knob models, and the
source for it, is written in faults.py and errors.py.
"""

from __future__ import annotations

import datetime as dt
import threading
from concurrent import futures
from types import TracebackType
from typing import Any

import grpc
from google.cloud.iam_admin_v1.types import iam

from tests.stack.iam.admin_http import HttpHandler, HttpServer, RouteHandler
from tests.stack.iam.errors import KEY_CREATION_CONSTRAINT, OAUTH_BAD_SIGNATURE, RpcFailure
from tests.stack.iam.faults import ALL, Defaults, Knobs, Propagation, status_code
from tests.stack.iam.grpc_service import IamService
from tests.stack.iam.keyless import Keyless
from tests.stack.iam.keypool import KeyPool
from tests.stack.iam.state import Counters, IamState, MintedKey
from tests.stack.iam.token_endpoint import TokenEndpoint


class IamEmulator:
    """gRPC google.iam.admin.v1.IAM + OAuth2 token endpoint, all in memory, all on 127.0.0.1."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        grpc_port: int = 0,
        http_port: int = 0,
        *,
        propagation_delay_s: float = 0.0,
        propagation_refusals: int = 0,
        key_expiry_hours: float | None = None,
        key_limit: int = 10,
        key_limit_code: grpc.StatusCode | str = grpc.StatusCode.FAILED_PRECONDITION,
        account_visibility_delay_s: float = 0.0,
        account_visibility_calls: int = 0,
        key_pool: bool = False,
    ) -> None:
        self.host = host
        self._grpc_port_wanted = grpc_port
        self._http_port_wanted = http_port
        self.grpc_address = ""
        self.http_url = ""
        self._grpc_server: grpc.Server | None = None
        self._http_server: HttpServer | None = None
        self._http_thread: threading.Thread | None = None

        self.state = IamState()
        self.knobs = Knobs(
            Defaults(
                propagation=Propagation(propagation_delay_s, propagation_refusals),
                key_expiry_hours=key_expiry_hours,
                key_limit=key_limit,
                key_limit_code=status_code(key_limit_code),
                account_visibility_delay_s=account_visibility_delay_s,
                account_visibility_calls=account_visibility_calls,
            )
        )
        # RSA keys made ahead in idle CPU time (keypool.py), for a long-lived emulator (a stack).
        self.key_pool = KeyPool(enabled=key_pool)
        self.service = IamService(
            self.state, self.knobs, lambda: (self.token_uri, self.http_url), self.key_pool.take
        )
        self.tokens = TokenEndpoint(self.state, self.knobs, lambda: self.token_uri)
        self._mounted: list[tuple[str, str, RouteHandler]] = []
        # Workload identity federation: pools REST, STS, generateAccessToken, Get/SetIamPolicy.
        self.keyless = Keyless(self)
        self.keyless.mount()

    def mount(self, method: str, prefix: str, handler: RouteHandler) -> None:
        """Serve another Google surface on the HTTP port: requests whose path starts with
        `prefix` go to `handler` (new modules share `state`, `knobs` and `lock`)."""
        self._mounted.append((method.upper(), prefix, handler))

    # ----------------------------------------------------------------------------- lifecycle
    def start(self) -> IamEmulator:
        if self._grpc_server is not None:
            return self
        server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=16, thread_name_prefix="iam-emu-grpc"),
            # With SO_REUSEPORT two emulators could silently share a fixed port; forbid it.
            options=[("grpc.so_reuseport", 0)],
        )
        server.add_generic_rpc_handlers((self.service.generic_handler(),))
        grpc_port = server.add_insecure_port(f"{self.host}:{self._grpc_port_wanted}")
        if grpc_port == 0:
            raise RuntimeError(f"IAM emulator: cannot bind gRPC port on {self.host}")
        server.start()
        self._grpc_server = server
        self.grpc_address = f"{self.host}:{grpc_port}"

        try:
            http_server = HttpServer((self.host, self._http_port_wanted), HttpHandler)
        except OSError:
            self.stop()  # do not leave a half-started emulator behind
            raise
        http_server.emulator = self
        http_server.mounted = self._mounted
        self._http_server = http_server
        self.http_url = f"http://{self.host}:{http_server.server_address[1]}"
        self._http_thread = threading.Thread(
            target=http_server.serve_forever, name="iam-emu-http", daemon=True
        )
        self._http_thread.start()
        self.key_pool.start()
        return self

    def stop(self) -> None:
        self.key_pool.stop()
        if self._grpc_server is not None:
            self._grpc_server.stop(grace=0.5).wait()
            self._grpc_server = None
        if self._http_server is not None:
            self._http_server.shutdown()
            self._http_server.server_close()
            self._http_server = None
        if self._http_thread is not None:
            self._http_thread.join(timeout=5)
            self._http_thread = None

    def __enter__(self) -> IamEmulator:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def token_uri(self) -> str:
        return f"{self.http_url}/token"

    # ----------------------------------------------------------------------------- reading
    def stats(self) -> dict[str, Any]:
        with self.state.lock:
            return {**self.state.stats(), **self.keyless.stats()}

    def reset_stats(self) -> None:
        with self.state.lock:
            self.state.counters = Counters()
            self.keyless.federated_tokens_issued = self.keyless.impersonated_tokens_issued = 0
            self.keyless.sts_rejections.clear()
            self.keyless.denials.clear()
            self.keyless.subject_access_keys.clear()
            self.keyless.subjects.clear()

    def key_ids(self, email: str, include_deleted: bool = False) -> list[str]:
        """Ids of the account's USER_MANAGED keys in creation order (system key excluded)."""
        with self.state.lock:
            return self.state.key_ids(email, include_deleted)

    def key_state(self, email: str, key_id: str) -> str:
        """'enabled', 'disabled' or 'deleted'; KeyError if the key never existed for `email`."""
        with self.state.lock:
            return self.state.key_of(email, key_id).state

    def key_valid_before(self, email: str, key_id: str) -> dt.datetime:
        with self.state.lock:
            return self.state.key_of(email, key_id).valid_before

    def minted_keys(self) -> list[MintedKey]:
        """Test-only: every private key handed out by CreateServiceAccountKey, deleted ones too,
        so the leak scan (issue 14.1) can search for keys that never reached a secret."""
        with self.state.lock:
            return list(self.state.minted)

    # ----------------------------------------------------------------------------- accounts
    def add_service_account(
        self, project: str, account_id: str, display_name: str = "", description: str = ""
    ) -> iam.ServiceAccount:
        """Seed an account (same rules as CreateServiceAccount, incl. the visibility window)."""
        with self.state.lock:
            hidden_for_s, hidden_calls = self.knobs.account_visibility
        try:
            return self.state.create_account(
                project, account_id, display_name, description, hidden_for_s, hidden_calls
            )
        except RpcFailure as exc:
            raise ValueError(f"{exc.code.name}: {exc.message}") from None

    def set_service_account_disabled(self, email: str, disabled: bool = True) -> None:
        with self.state.lock:
            self.state.account_by_email(email).disabled = disabled

    # ----------------------------------------------------------------------------- faults
    def fail_nth(
        self,
        method: str,
        nth: int = 1,
        code: grpc.StatusCode | str = grpc.StatusCode.UNAVAILABLE,
        message: str = "The service is currently unavailable.",
        when: str = "before",
    ) -> None:
        """Make the nth call of `method` from now on fail once with `code`.

        when="before" fails without touching state; when="after" performs the call and then
        fails, which models a response lost on the wire (e.g. a key created but never returned).
        Note that IAMClient retries UNAVAILABLE/DEADLINE_EXCEEDED by default for Get*/List*/
        Delete* methods, so a single injected UNAVAILABLE there is absorbed by the client.
        """
        with self.state.lock:
            self.knobs.add_fault(method, nth, code, message, when)

    def refuse_grants(self, count: int = 1, description: str = OAUTH_BAD_SIGNATURE) -> None:
        """Refuse the next `count` token requests with invalid_grant, whatever key signs them.
        `description` is the error_description: Google's "Invalid JWT Signature." by default (an
        unknown key: not yet propagated, or gone), or e.g. "Invalid grant: account not found"."""
        with self.state.lock:
            self.knobs.refuse_grants = count
            self.knobs.refusal_description = description

    def race_policy_writes(self, count: int = 1, member: str = "") -> None:
        """Another writer changes the account's IAM policy right after each of the next `count`
        GetIamPolicy answers: the reader's SetIamPolicy then meets Google's etag refusal
        (ABORTED)."""
        with self.state.lock:
            self.keyless.policies.races = count
            if member:
                self.keyless.policies.race_member = member

    def set_keyless_propagation(
        self, binding_refusals: int = 0, provider_refusals: int = 0
    ) -> None:
        """From now on, a workloadIdentityUser (or any) member SetIamPolicy adds is refused at
        generateAccessToken for its first `binding_refusals` checks, and a new provider is unknown
        to STS for its first `provider_refusals` exchanges (both counted, not timed)."""
        with self.state.lock:
            self.keyless.policies.binding_refusals = binding_refusals
            self.keyless.pools.provider_refusals = provider_refusals

    def clear_faults(self) -> None:
        """Forget injected faults and grant refusals; the knobs below stay as set."""
        with self.state.lock:
            self.knobs.clear_faults()

    def reset_knobs(self) -> None:
        """Everything (faults and knobs) back to the constructor's values."""
        with self.state.lock:
            self.knobs.reset()
            self.keyless.policies.races = 0
            self.keyless.policies.binding_refusals = 0
            self.keyless.pools.provider_refusals = 0
            self.keyless.reset_knobs()

    # ----------------------------------------------------------------------------- knobs
    def set_propagation_delay(
        self, seconds: float = 0.0, refusals: int = 0, *, email: str | None = None
    ) -> None:
        """Keys created from now on (for `email`, or every account) are refused at the token
        endpoint with invalid_grant "Invalid JWT Signature." for `seconds` after creation and
        for their first `refusals` token requests, then accepted (faults.Propagation)."""
        if seconds < 0 or refusals < 0:
            raise ValueError("seconds and refusals must be >= 0")
        with self.state.lock:
            self.knobs.propagation[email or ALL] = Propagation(seconds, refusals)

    def set_key_expiry_hours(self, hours: float | None, *, email: str | None = None) -> None:
        """Org policy iam.serviceAccountKeyExpiryHours for keys created from now on; None: never."""
        if hours is not None and hours <= 0:
            raise ValueError("hours must be > 0 (or None for keys that never expire)")
        with self.state.lock:
            self.knobs.key_expiry_hours[email or ALL] = hours

    def set_key_valid_before(self, email: str, key_id: str, valid_before: dt.datetime) -> None:
        """Move an existing key's expiry (e.g. into the past, or within doctor's 7-day warning)."""
        if valid_before.tzinfo is None:
            raise ValueError("valid_before must be timezone-aware")
        with self.state.lock:
            self.state.key_of(email, key_id).valid_before = valid_before.astimezone(dt.UTC)

    def set_key_valid_after(self, email: str, key_id: str, valid_after: dt.datetime) -> None:
        """Backdate a key's creation (valid_after_time), e.g. to make it older than prune's 24 h."""
        if valid_after.tzinfo is None:
            raise ValueError("valid_after must be timezone-aware")
        with self.state.lock:
            # The key's certificate keeps its first validity: only the metadata's age matters here.
            self.state.key_of(email, key_id).valid_after = valid_after.astimezone(dt.UTC)

    def set_key_limit(
        self, max_keys: int = 10, code: grpc.StatusCode | str = "FAILED_PRECONDITION"
    ) -> None:
        """User-managed keys per account, and the answer past it: FAILED_PRECONDITION "Precondition
        check failed." or RESOURCE_EXHAUSTED "Maximum number of keys on account reached."."""
        status = status_code(code)
        if status not in (grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.RESOURCE_EXHAUSTED):
            raise ValueError("code must be FAILED_PRECONDITION or RESOURCE_EXHAUSTED")
        if max_keys < 0:
            raise ValueError("max_keys must be >= 0")
        with self.state.lock:
            self.knobs.key_limit, self.knobs.key_limit_code = max_keys, status

    def hold_key_answer(self, seconds: float) -> threading.Event:
        """The next CreateServiceAccountKey creates its key, then holds the answer `seconds`; the
        returned event is set when it starts holding."""
        with self.state.lock:
            self.knobs.hold_key_answer_s = seconds
            self.knobs.key_answer_held = threading.Event()
            return self.knobs.key_answer_held

    def exhaust_key_quota(self, count: int = 1, *, project: str | None = None) -> None:
        """The next `count` CreateServiceAccountKey calls (in `project`, or anywhere) get the 429
        quota answer (RESOURCE_EXHAUSTED); count=-1 until reset, 0 clears."""
        with self.state.lock:
            self.knobs.key_quota_refusals[project or ALL] = count

    def deny_key_creation(
        self, project: str, deny: bool = True, constraint: str | None = None
    ) -> None:
        """Org policy constraints/iam.disableServiceAccountKeyCreation (or the managed
        constraints/iam.managed.disableServiceAccountKeyCreation) on a project."""
        with self.state.lock:
            if deny:
                self.knobs.deny_key_creation[project] = constraint or KEY_CREATION_CONSTRAINT
            else:
                self.knobs.deny_key_creation.pop(project, None)

    def disable_service(self, project: str, disabled: bool = True) -> None:
        """The IAM API is not enabled in `project`: every call on it gets SERVICE_DISABLED."""
        with self.state.lock:
            if disabled:
                self.knobs.disabled_services.add(project)
            else:
                self.knobs.disabled_services.discard(project)

    def enclose_in_perimeter(self, project: str, enclosed: bool = True) -> None:
        """`project` is inside a VPC Service Controls perimeter and the caller is outside it:
        every call on it gets SECURITY_POLICY_VIOLATED."""
        with self.state.lock:
            if enclosed:
                self.knobs.perimeter.add(project)
            else:
                self.knobs.perimeter.discard(project)

    def deny_permission(
        self, permission: str, *, project: str | None = None, deny: bool = True
    ) -> None:
        """The caller lacks `permission` (e.g. iam.serviceAccountKeys.create) on `project` or
        anywhere: calls needing it get PERMISSION_DENIED with Google's text."""
        with self.state.lock:
            denied = self.knobs.denied_permissions.setdefault(project or ALL, set())
            if deny:
                denied.add(permission)
            else:
                denied.discard(permission)

    def grant_caller_roles(self, roles: list[str] | None, *, project: str | None = None) -> None:
        """The caller holds exactly `roles` (Google's predefined roles, roles.py) on `project` or
        everywhere: a call needing a permission none of them grants gets PERMISSION_DENIED with
        Google's text. None: every permission again."""
        from tests.stack.iam.roles import permissions_of

        with self.state.lock:
            if roles is None:
                self.knobs.caller_permissions.pop(project or ALL, None)
            else:
                self.knobs.caller_permissions[project or ALL] = permissions_of(roles)

    def set_account_visibility_delay(self, seconds: float = 0.0, calls: int = 0) -> None:
        """Service accounts created from now on are NOT_FOUND for `seconds` and for their first
        `calls` look-ups (eventual consistency after CreateServiceAccount)."""
        if seconds < 0 or calls < 0:
            raise ValueError("seconds and calls must be >= 0")
        with self.state.lock:
            self.knobs.account_visibility = (seconds, calls)

    # ----------------------------------------------------------------------------- keyless
    def set_aws_endpoint(self, url: str) -> None:
        """Where STS replays the signed GetCallerIdentity (the stack's moto; Google: AWS itself)."""
        with self.state.lock:
            self.keyless.aws_endpoint = url.rstrip("/")

    def set_token_lifetime(self, seconds: float) -> None:
        """Lifetime of federated (STS) and impersonated (generateAccessToken) tokens from now on;
        short values make an application refresh several times in one run."""
        if seconds <= 0:
            raise ValueError("seconds must be > 0")
        with self.state.lock:
            self.keyless.token_lifetime_s = seconds

    def set_operation_polls(self, polls: int) -> None:
        """GETs a long-running operation needs before it reports done (0: done at once)."""
        if polls < 0:
            raise ValueError("polls must be >= 0")
        with self.state.lock:
            self.keyless.pools.operation_polls = polls

    def set_service_enabled(self, project: str, service: str, enabled: bool) -> None:
        """Switch an API (e.g. sts.googleapis.com) on or off in a project, as Service Usage
        reports it and as the keyless surfaces honour it."""
        with self.state.lock:
            key = (self.keyless.pools.number(project), service)
            usage = self.keyless.service_usage.disabled
            usage.discard(key) if enabled else usage.add(key)

    def project_number(self, project: str) -> str:
        with self.state.lock:
            return self.keyless.pools.number(project)

    def iam_policy_members(self, email: str, role: str) -> list[str]:
        return self.keyless.policies.members(email, role)
