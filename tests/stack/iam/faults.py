"""Knobs: the real Google behaviours a test can switch on, and injected faults.

Each knob models something the real service does (the source is named beside it) and is set
through `IamEmulator` (constructor or method) or its admin HTTP interface. Callers hold
`IamState.lock` while they use a `Knobs`.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import grpc

from tests.stack.iam import errors

ALL = "*"  # knob key meaning "every project" / "every account"


@dataclass
class Fault:
    nth: int
    code: grpc.StatusCode
    message: str
    when: str  # "before": fail without side effects; "after": do the work, lose the response
    seen: int = 0


@dataclass(frozen=True)
class Propagation:
    """How a new key reaches Google's token service.
    https://cloud.google.com/iam/docs/keys-create-delete: "it can take 60 seconds or more before the
    key can be used" (google-cloud-cpp#10587 waits up to 7 minutes). Until then the token endpoint
    answers invalid_grant "Invalid JWT Signature."."""

    seconds: float = 0.0
    refusals: int = 0  # refuse the key's first K token requests, whatever the time


@dataclass(frozen=True)
class Defaults:
    """Constructor values; `Knobs.reset()` returns to them."""

    propagation: Propagation = Propagation()
    # Org policy constraints/iam.serviceAccountKeyExpiryHours (Google's blog "Introducing time-bound
    # key authentication for service accounts", 2023): new keys get valid_before_time =
    # valid_after_time + N hours. The real policy takes 8..2160 hours; any positive float is
    # accepted here so a test can watch a key expire within seconds. None: keys never expire.
    key_expiry_hours: float | None = None
    # 10 user-managed keys per account (https://cloud.google.com/iam/docs/keys-create-delete).
    key_limit: int = 10
    # FAILED_PRECONDITION is today's answer; RESOURCE_EXHAUSTED the one other surfaces give.
    key_limit_code: grpc.StatusCode = grpc.StatusCode.FAILED_PRECONDITION
    # New service accounts are NOT_FOUND for a while
    # (https://cloud.google.com/iam/docs/overview#consistency).
    account_visibility_delay_s: float = 0.0
    account_visibility_calls: int = 0


def status_code(code: grpc.StatusCode | str) -> grpc.StatusCode:
    if isinstance(code, grpc.StatusCode):
        return code
    try:
        return grpc.StatusCode[code.upper()]
    except KeyError:
        raise ValueError(f"unknown gRPC status code {code!r}") from None


class Knobs:
    def __init__(self, defaults: Defaults) -> None:
        self.defaults = defaults
        self.reset()

    def reset(self) -> None:
        """Everything back to the constructor's values: no faults, no refusals."""
        self.faults: dict[str, list[Fault]] = {}
        self.refuse_grants = 0
        self.refusal_description = errors.OAUTH_BAD_SIGNATURE
        self.deny_key_creation: dict[str, str] = {}  # project -> constraint
        self.disabled_services: set[str] = set()  # projects where the IAM API is off
        self.perimeter: set[str] = set()  # projects in a VPC-SC perimeter the caller is outside of
        self.denied_permissions: dict[str, set[str]] = {}  # project or ALL -> permissions
        # project or ALL -> the permissions of the roles the caller holds there (roles.py); a scope
        # without an entry grants every permission.
        self.caller_permissions: dict[str, frozenset[str]] = {}
        self.key_quota_refusals: dict[str, int] = {}  # project or ALL -> count (-1: until reset)
        self.propagation: dict[str, Propagation] = {ALL: self.defaults.propagation}  # email or ALL
        self.key_expiry_hours: dict[str, float | None] = {ALL: self.defaults.key_expiry_hours}
        self.key_limit = self.defaults.key_limit
        self.key_limit_code = self.defaults.key_limit_code
        # CreateServiceAccountKey: the key is made, then the answer waits this long (once).
        self.hold_key_answer_s = 0.0
        self.key_answer_held = threading.Event()
        self.account_visibility = (
            self.defaults.account_visibility_delay_s,
            self.defaults.account_visibility_calls,
        )

    def clear_faults(self) -> None:
        """Only the injected faults (fail_nth, refuse_grants); the real-world knobs stay."""
        self.faults.clear()
        self.refuse_grants = 0

    # ------------------------------------------------------------------ injected faults
    def add_fault(
        self, method: str, nth: int, code: grpc.StatusCode | str, message: str, when: str
    ) -> None:
        if method not in errors.METHOD_PERMISSIONS:
            raise ValueError(f"unknown IAM method {method!r}")
        if nth < 1:
            raise ValueError("nth must be >= 1")
        status = status_code(code)
        if status is grpc.StatusCode.OK:
            raise ValueError("cannot inject OK as a failure")
        if when not in ("before", "after"):
            raise ValueError("when must be 'before' or 'after'")
        self.faults.setdefault(method, []).append(Fault(nth, status, message, when))

    def take_fault(self, method: str) -> Fault | None:
        pending = self.faults.get(method, [])
        fired: Fault | None = None
        for fault in pending:
            fault.seen += 1
            if fired is None and fault.seen >= fault.nth:
                fired = fault
        if fired is not None:
            pending.remove(fired)
        return fired

    def take_grant_refusal(self) -> str | None:
        """The description of the next injected invalid_grant, or None."""
        if self.refuse_grants > 0:
            self.refuse_grants -= 1
            return self.refusal_description
        return None

    # ------------------------------------------------------------------ checks on every call
    def check_call(self, method: str, project: str | None) -> None:
        """API-level refusals, in Google's order: the perimeter, service disabled, then the
        caller's permission."""
        if project is not None and project in self.perimeter:
            raise errors.vpc_sc_violation(project)
        if project is not None and project in self.disabled_services:
            raise errors.service_disabled(project)
        permission = errors.METHOD_PERMISSIONS[method]
        for scope in (ALL, project):
            if scope is not None and permission in self.denied_permissions.get(scope, set()):
                raise errors.permission_denied(permission)
        granted = self.caller_permissions.get(project or ALL, self.caller_permissions.get(ALL))
        if granted is not None and permission not in granted:
            raise errors.permission_denied(permission)

    def check_key_creation(self, project: str, email: str, user_keys: int, creating: bool) -> None:
        """Refusals of a new key: org policy, quota, then the per-account limit."""
        if creating and project in self.deny_key_creation:
            raise errors.key_creation_denied(project, email, self.deny_key_creation[project])
        if creating:
            for scope in (project, ALL):
                remaining = self.key_quota_refusals.get(scope, 0)
                if remaining != 0:
                    if remaining > 0:
                        self.key_quota_refusals[scope] = remaining - 1
                    raise errors.quota_exceeded(project)
        if user_keys >= self.key_limit:
            raise errors.key_limit(self.key_limit_code)

    # ------------------------------------------------------------------ per-account settings
    def propagation_for(self, email: str) -> Propagation:
        return self.propagation.get(email, self.propagation[ALL])

    def expiry_hours_for(self, email: str) -> float | None:
        return self.key_expiry_hours.get(email, self.key_expiry_hours[ALL])
