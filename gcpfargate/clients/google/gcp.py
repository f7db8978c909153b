"""The GCP adapter: IAM Admin (service accounts and their keys) over gRPC.

`IAM_EMULATOR_HOST=host:port` switches to a plain-text channel with anonymous credentials, the
way Google's other emulators work. The setting gcp.transport = "rest"
(GCPFARGATE_GCP_TRANSPORT=rest) uses HTTPS/JSON (clients/gcp_rest.py) for networks where gRPC is
blocked. Key creation is never retried: each attempt would mint a key. Reads retry on UNAVAILABLE;
key state changes (delete, disable, enable) are idempotent and retry on a lost answer.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar

from gcpfargate.errors import GcpConfigError, GcpError, KeyLimitError, NotAKeyError
from gcpfargate.keymaterial.keyfile import KeyMaterial

if TYPE_CHECKING:
    from gcpfargate.clients.google.ahead import IamAhead

T = TypeVar("T")
MAX_USER_KEYS = 10
NEW_ACCOUNT_WAIT_SECONDS = 60.0


@dataclass(frozen=True)
class ServiceAccount:
    email: str
    unique_id: str
    project: str
    disabled: bool


@dataclass(frozen=True)
class KeyInfo:
    key_id: str
    created: datetime | None
    disabled: bool
    # valid_before_time: keys never expire unless the org policy iam.serviceAccountKeyExpiryHours
    # sets it; Google reports a far-future date (9999-12-31) for keys without expiry.
    expires: datetime | None = None

    def age_days(self, now: datetime) -> int | None:
        return None if self.created is None else max(0, (now - self.created).days)

    def age_hours(self, now: datetime) -> float | None:
        return (
            None if self.created is None else max(0.0, (now - self.created).total_seconds() / 3600)
        )

    def expired(self, now: datetime) -> bool:
        return self.expires is not None and now >= self.expires

    @property
    def live(self) -> bool:
        """Enabled and not expired: a key that can still sign for its account."""
        return not self.disabled and not self.expired(datetime.now(UTC))


class IamAdmin:
    def __init__(
        self, emulator_host: str | None = None, transport: str = "grpc", universe: str = ""
    ) -> None:
        from gcpfargate.clients.google.universe import universe_domain

        self._transport = transport
        self._universe = universe_domain(universe)
        self._emulator_host = (
            emulator_host if emulator_host is not None else os.environ.get("IAM_EMULATOR_HOST")
        )
        self._client: Any = None
        self._lock = threading.Lock()
        self._call_log = os.environ.get("GCPFARGATE_CALL_LOG")
        # Accounts this process created: NOT_FOUND for them means "not visible yet", not "gone".
        self._created: set[str] = set()
        # Reads a forked child made ahead (clients/google/ahead.py), until this adapter writes.
        self._ahead: IamAhead | None = None
        self.answered_ahead = 0  # how many calls took their answer from it
        # The child's side: told each call's outcome (the response, or the error as worded here).
        self.recorder: Callable[[str, str, Any], None] | None = None

    def read_ahead_from(self, ahead: IamAhead) -> None:
        """Take the answers of reads `ahead` made, each once, while nothing is written."""
        self._ahead = ahead

    @property
    def client(self) -> Any:
        with self._lock:
            if self._client is None:
                self._client = self._make_client()
            return self._client

    def _make_client(self) -> Any:
        from google.cloud import iam_admin_v1

        from gcpfargate.clients.google.universe import DEFAULT_UNIVERSE, google_api

        if self._transport == "rest":
            from gcpfargate.clients.google.iam_admin_rest import RestIam

            # With IAM_EMULATOR_HOST the REST face of a local emulator: plain HTTP, no credentials.
            if self._emulator_host:
                return RestIam(f"http://{self._emulator_host}", anonymous=True)
            return _with_credentials(lambda: RestIam(google_api("iam", self._universe)))
        if self._emulator_host:
            import grpc
            from google.cloud.iam_admin_v1.services.iam.transports import IAMGrpcTransport

            channel = grpc.insecure_channel(self._emulator_host)
            return iam_admin_v1.IAMClient(transport=IAMGrpcTransport(channel=channel))
        if self._universe != DEFAULT_UNIVERSE:
            # The client library builds iam.<universe> from it and checks the credentials' own.
            universe = self._universe
            return _with_credentials(
                lambda: iam_admin_v1.IAMClient(client_options={"universe_domain": universe})
            )
        return _with_credentials(iam_admin_v1.IAMClient)

    # -- calls -------------------------------------------------------------------------------
    def _call(
        self, method: str, action: str, request: dict[str, Any], retry_reads: bool = True
    ) -> Any:
        name = str(request.get("name", ""))
        reading = method.startswith(("Get", "List"))
        if not reading:
            self._ahead = None  # what was read before a write may have changed
        elif self._ahead is not None:
            answered = self._ahead.take(method, name)
            if answered is not None:
                self.answered_ahead += 1
                if isinstance(answered, GcpError):
                    raise answered
                return answered
        from google.api_core import exceptions as gexc
        from google.api_core import retry as gretry

        if self._call_log:
            with open(self._call_log, "a", encoding="utf-8") as log:
                log.write(f"gcp iam {method} {'read' if reading else 'write'}\n")
        function = getattr(self.client, _snake(method))
        retry = (
            gretry.Retry(
                predicate=gretry.if_exception_type(gexc.ServiceUnavailable),
                initial=0.2,
                maximum=2.0,
                timeout=20.0,
            )
            if retry_reads
            else None
        )
        try:
            response = function(request=request, retry=retry, timeout=30.0)
        except gexc.GoogleAPICallError as exc:
            error = _translate(exc, action)
        except gexc.RetryError:
            error = GcpError(
                f"failed to {action}: the IAM API stayed unavailable", "Retry later"
            ).with_code("UNAVAILABLE")
        else:
            if self.recorder is not None:
                self.recorder(method, name, response)
            return response
        if self.recorder is not None:
            self.recorder(method, name, error)
        raise error from None

    def get_service_account(self, project: str, account: str) -> ServiceAccount | None:
        """The account by id or email, or None when it does not exist."""
        email = account if "@" in account else f"{account}@{project}.iam.gserviceaccount.com"
        try:
            found = self._call(
                "GetServiceAccount",
                f"read service account {email}",
                {"name": f"projects/-/serviceAccounts/{email}"},
            )
        except GcpError as exc:
            if exc.code == "NOT_FOUND":
                return None
            raise
        return ServiceAccount(
            email=found.email,
            unique_id=found.unique_id,
            project=found.project_id,
            disabled=found.disabled,
        )

    def create_service_account(self, project: str, account_id: str) -> ServiceAccount:
        created = self._call(
            "CreateServiceAccount",
            f"create service account {account_id} in {project}",
            {
                "name": f"projects/{project}",
                "account_id": account_id,
                "service_account": {
                    "display_name": f"{account_id} (gcpfargate)",
                    "description": "Created by gcpfargate for ECS Fargate tasks",
                },
            },
            retry_reads=False,
        )
        self._created.add(created.email)
        return ServiceAccount(
            email=created.email,
            unique_id=created.unique_id,
            project=created.project_id,
            disabled=created.disabled,
        )

    def _while_new(self, email: str, call: Callable[[], T]) -> T:
        """`call()`, retried with backoff for up to NEW_ACCOUNT_WAIT_SECONDS while it answers
        NOT_FOUND for an account this process just created: "it might take some time for the service
        account to be available" (Google's docs for CreateServiceAccount). NOT_FOUND on a create
        means nothing was made, so the retry cannot mint a second key."""
        deadline = time.monotonic() + NEW_ACCOUNT_WAIT_SECONDS
        pause = 0.5
        while True:
            try:
                return call()
            except GcpError as exc:
                if (
                    exc.code != "NOT_FOUND"
                    or email not in self._created
                    or time.monotonic() + pause > deadline
                ):
                    raise
            time.sleep(pause)
            pause = min(pause * 2, 5.0)

    def list_user_keys(self, email: str) -> list[KeyInfo]:
        from google.cloud import iam_admin_v1

        request = {
            "name": f"projects/-/serviceAccounts/{email}",
            "key_types": [iam_admin_v1.ListServiceAccountKeysRequest.KeyType.USER_MANAGED],
        }
        response = self._while_new(
            email,
            lambda: self._call("ListServiceAccountKeys", f"list the keys of {email}", request),
        )
        return [_key_info(key) for key in response.keys]

    def get_key(self, email: str, key_id: str) -> KeyInfo | None:
        try:
            key = self._call(
                "GetServiceAccountKey",
                f"read key {key_id} of {email}",
                {"name": _key_name(email, key_id)},
            )
        except GcpError as exc:
            if exc.code == "NOT_FOUND":
                return None
            raise
        return _key_info(key)

    def create_key(self, email: str) -> KeyMaterial:
        """Mint a key and return its JSON, in memory only. Not retried: a retry would mint
        another."""
        from google.cloud import iam_admin_v1

        request = {
            "name": f"projects/-/serviceAccounts/{email}",
            "private_key_type": (
                iam_admin_v1.ServiceAccountPrivateKeyType.TYPE_GOOGLE_CREDENTIALS_FILE
            ),
            "key_algorithm": iam_admin_v1.ServiceAccountKeyAlgorithm.KEY_ALG_RSA_2048,
        }
        try:
            key = self._while_new(
                email,
                lambda: self._call(
                    "CreateServiceAccountKey",
                    f"create a key for {email}",
                    request,
                    retry_reads=False,
                ),
            )
        except KeyLimitError:
            raise
        except GcpError as exc:
            if exc.code == "FAILED_PRECONDITION":
                # Google's bare "Precondition check failed." to CreateServiceAccountKey is the key
                # limit (firebase/firebase-tools#6192); org-policy refusals were mapped by
                # _translate.
                count = len(self.list_user_keys(email))
                raise KeyLimitError(
                    f"cannot create a key for {email}: the account holds {count} user-managed "
                    f"keys, at its limit (10 of {MAX_USER_KEYS} in Google's default quota)",
                    PRUNE_HINT.replace("EMAIL", email),
                ).with_code(exc.code) from None
            if exc.code in ("INTERNAL", "UNAVAILABLE", "DEADLINE_EXCEEDED", "UNKNOWN"):
                # The answer was lost, not necessarily the key: say how to find and remove it.
                raise GcpError(
                    exc.message,
                    "A key may have been created anyway: gcpfargate looked for a key created "
                    "since and deleted it, or named it above with the command to delete it",
                ).with_code(exc.code) from None
            raise
        try:
            return KeyMaterial.parse(bytes(key.private_key_data))
        except NotAKeyError as exc:
            # Should not happen; delete what we cannot use so nothing is orphaned.
            self.delete_key(email, key.name.rsplit("/", 1)[-1])
            raise GcpError(f"the IAM API returned an unusable key for {email}: {exc}") from None

    def delete_key(self, email: str, key_id: str) -> None:
        self._idempotent(
            "DeleteServiceAccountKey", f"delete key {key_id} of {email}", _key_name(email, key_id)
        )

    def disable_key(self, email: str, key_id: str) -> None:
        self._idempotent(
            "DisableServiceAccountKey", f"disable key {key_id} of {email}", _key_name(email, key_id)
        )

    # -- IAM policy of a service account (keyless mode's workloadIdentityUser binding) ------------
    def get_iam_policy(self, email: str) -> Any:
        """The account's policy (google.iam.v1 Policy, with its etag for a read-modify-write)."""
        return self._call(
            "GetIamPolicy",
            f"read the IAM policy of {email}",
            {"resource": f"projects/-/serviceAccounts/{email}"},
        )

    def set_iam_policy(self, email: str, policy: Any) -> Any:
        """Write `policy` back; ABORTED (code) when someone changed it since it was read (etag)."""
        return self._call(
            "SetIamPolicy",
            f"update the IAM policy of {email}",
            {"resource": f"projects/-/serviceAccounts/{email}", "policy": policy},
            retry_reads=False,
        )

    def enable_key(self, email: str, key_id: str) -> None:
        self._idempotent(
            "EnableServiceAccountKey", f"enable key {key_id} of {email}", _key_name(email, key_id)
        )

    def _idempotent(self, method: str, action: str, name: str, attempts: int = 3) -> None:
        """A key state change done twice is done once (a second delete answers NOT_FOUND, which
        callers accept), so a failure whose answer may have been lost is simply retried."""
        for attempt in range(attempts):
            try:
                self._call(method, action, {"name": name}, retry_reads=False)
                return
            except GcpError as exc:
                if (
                    exc.code not in ("INTERNAL", "UNAVAILABLE", "DEADLINE_EXCEEDED", "UNKNOWN")
                    or attempt + 1 == attempts
                ):
                    raise
                time.sleep(0.5 * (attempt + 1))


def import_client(transport: str) -> None:
    """Import what `_make_client` will need for `transport` (the slow part of a first call)."""
    if transport == "rest":
        import google.auth.transport.requests  # noqa: F401
    from google.cloud import iam_admin_v1  # noqa: F401


def _with_credentials(make: Any) -> Any:
    import google.auth.exceptions

    try:
        return make()
    except google.auth.exceptions.DefaultCredentialsError:
        raise GcpConfigError(
            "no Google Cloud credentials found for the IAM API",
            "Run `gcloud auth application-default login` or set GOOGLE_APPLICATION_CREDENTIALS "
            "for the identity that manages keys",
        ).with_code("UNAUTHENTICATED") from None


def _snake(method: str) -> str:
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in method).lstrip("_")


def _key_name(email: str, key_id: str) -> str:
    return f"projects/-/serviceAccounts/{email}/keys/{key_id}"


def timestamp(value: Any) -> datetime | None:
    if not value:
        return None
    return (
        value if isinstance(value, datetime) else datetime.fromtimestamp(value.timestamp(), tz=UTC)
    )


def _key_info(key: Any) -> KeyInfo:
    expires = timestamp(key.valid_before_time)
    if expires is not None and expires.year >= 9999:
        expires = None  # Google's "never expires"
    return KeyInfo(
        key_id=key.name.rsplit("/", 1)[-1],
        created=timestamp(key.valid_after_time),
        disabled=bool(key.disabled),
        expires=expires,
    )


# Said wherever the key limit stops a command (every such message names prune-keys).
PRUNE_HINT = (
    "Delete keys no secret version uses with `gcpfargate prune-keys` (then rerun), or "
    "`gcloud iam service-accounts keys delete KEY_ID --iam-account EMAIL`"
)

_HINTS = {
    "PERMISSION_DENIED": "The GCP identity needs roles/iam.serviceAccountKeyAdmin (and "
    "roles/iam.serviceAccountAdmin to create accounts) on the project",
    "UNAUTHENTICATED": "Refresh the Google Cloud credentials (gcloud auth application-default "
    "login)",
    "UNAVAILABLE": "The IAM API is unreachable; check IAM_EMULATOR_HOST or the network (where gRPC "
    "is blocked, set GCPFARGATE_GCP_TRANSPORT=rest) and retry",
    "DEADLINE_EXCEEDED": "The IAM API did not answer in time; retry",
}
# The org-policy constraints that forbid key creation (the managed one is enforced by default for
# organisations created since May 2024: cloud.google.com/resource-manager/docs/organization-policy/
# restricting-service-accounts).
KEY_CREATION_CONSTRAINTS = (
    "constraints/iam.managed.disableServiceAccountKeyCreation",
    "constraints/iam.disableServiceAccountKeyCreation",
)


def perimeter_refusal(action: str, message: str) -> GcpError:
    """A VPC Service Controls perimeter refused the call (Google's ErrorInfo reason
    SECURITY_POLICY_VIOLATED): no IAM role grants a way through it, so none is suggested."""
    uid = message.rpartition("vpcServiceControlsUniqueIdentifier:")[2].strip()
    return GcpError(
        f"failed to {action}: a VPC Service Controls perimeter refused the request "
        f"(not a missing IAM role{'; vpcServiceControlsUniqueIdentifier ' + uid if uid else ''})",
        "Run from a network or identity the perimeter admits, or ask its administrator for an "
        "ingress rule for this identity and iam.googleapis.com (the identifier finds the "
        "denial in the audit logs)",
    ).with_code("VPC_SERVICE_CONTROLS")


def _translate(exc: Any, action: str) -> GcpError:
    """One clear line per kind of refusal; Google's own text otherwise."""
    code = (
        getattr(exc, "rest_status", None)
        or getattr(getattr(exc, "grpc_status_code", None), "name", None)
        or type(exc).__name__
    )
    message = str(getattr(exc, "message", "") or exc).rstrip(".")
    reason = str(getattr(exc, "reason", "") or "")
    metadata = dict(getattr(exc, "metadata", None) or {})
    if reason == "SECURITY_POLICY_VIOLATED" or "vpcServiceControlsUniqueIdentifier" in message:
        return perimeter_refusal(action, message)
    if reason == "SERVICE_DISABLED" or "API has not been used" in message:
        # PERMISSION_DENIED with ErrorInfo SERVICE_DISABLED: not a missing role
        # (openshift/installer#2187).
        project = str(metadata.get("consumer", "")).removeprefix("projects/") or "the project"
        return GcpError(
            f"failed to {action}: the IAM API (iam.googleapis.com) is not enabled in {project}",
            f"Enable it: gcloud services enable iam.googleapis.com --project {project} (it takes "
            "a few minutes to take effect)",
        ).with_code("SERVICE_DISABLED")
    if code == "FAILED_PRECONDITION":
        constraint = _violated_constraint(exc)
        if constraint:
            return GcpError(
                f"failed to {action}: key creation is refused by the organization policy "
                f"{constraint}",
                'Use keyless mode, which needs no key: set gcp.auth = "keyless" in gcpfargate.toml '
                "(or "
                "GCPFARGATE_GCP_AUTH=keyless) and rerun; or ask an organization policy "
                "administrator to set the constraint to not enforced for this project",
            ).with_code("ORG_POLICY")
    if code == "RESOURCE_EXHAUSTED":
        if "keys" in message.lower() and "quota" not in message.lower():
            # The older surface's answer to the 11th key (kubeflow/pipelines#348).
            return KeyLimitError(
                f"failed to {action}: the account already holds its {MAX_USER_KEYS} user-managed "
                "keys",
                PRUNE_HINT,
            ).with_code(code)
        return GcpError(
            f"failed to {action}: Google's API quota is exhausted ({message})",
            "Wait a minute and retry; raise the quota in the console if it keeps happening",
        ).with_code("QUOTA")
    return GcpError(f"failed to {action}: {code}: {message}", _HINTS.get(code, "")).with_code(code)


def _violated_constraint(exc: Any) -> str:
    """The org-policy constraint a FAILED_PRECONDITION names (PreconditionFailure detail or
    text)."""
    for detail in getattr(exc, "details", None) or []:
        # gRPC gives PreconditionFailure messages; REST gives the same as JSON dicts.
        violations = (
            detail.get("violations", [])
            if isinstance(detail, dict)
            else getattr(detail, "violations", [])
        )
        for violation in violations or []:
            kind = str(
                violation.get("type", "")
                if isinstance(violation, dict)
                else getattr(violation, "type", "")
            )
            if kind.startswith("constraints/"):
                return kind
    text = str(getattr(exc, "message", "") or exc)
    for constraint in KEY_CREATION_CONSTRAINTS:
        if constraint in text:
            return constraint
    if "key creation is not allowed" in text.lower():
        return KEY_CREATION_CONSTRAINTS[1]
    return ""
