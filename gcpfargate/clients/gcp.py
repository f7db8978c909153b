"""The GCP adapter: IAM Admin (service accounts and their keys) over gRPC.

`IAM_EMULATOR_HOST=host:port` switches to a plain-text channel with anonymous credentials, the
way Google's other emulators work. Key creation is never retried: each attempt would mint a key.
Reads retry on UNAVAILABLE only.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from gcpfargate.errors import GcpConfigError, GcpError, KeyLimitError, NotAKeyError
from gcpfargate.keyfile import KeyMaterial

MAX_USER_KEYS = 10


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

    def age_days(self, now: datetime) -> int | None:
        return None if self.created is None else max(0, (now - self.created).days)


class IamAdmin:
    def __init__(self, emulator_host: str | None = None) -> None:
        self._emulator_host = emulator_host if emulator_host is not None else os.environ.get("IAM_EMULATOR_HOST")
        self._client: Any = None
        self._lock = threading.Lock()
        self._call_log = os.environ.get("GCPFARGATE_CALL_LOG")

    @property
    def client(self) -> Any:
        with self._lock:
            if self._client is None:
                self._client = self._make_client()
            return self._client

    def _make_client(self) -> Any:
        from google.cloud import iam_admin_v1

        if self._emulator_host:
            import grpc
            from google.cloud.iam_admin_v1.services.iam.transports import IAMGrpcTransport

            channel = grpc.insecure_channel(self._emulator_host)
            return iam_admin_v1.IAMClient(transport=IAMGrpcTransport(channel=channel))
        import google.auth.exceptions

        try:
            return iam_admin_v1.IAMClient()
        except google.auth.exceptions.DefaultCredentialsError:
            raise GcpConfigError("no Google Cloud credentials found for the IAM API",
                           "Run `gcloud auth application-default login` or set GOOGLE_APPLICATION_CREDENTIALS "
                           "for the identity that manages keys").with_code("UNAUTHENTICATED") from None

    # -- calls -------------------------------------------------------------------------------
    def _call(self, method: str, action: str, request: dict[str, Any], retry_reads: bool = True) -> Any:
        from google.api_core import exceptions as gexc
        from google.api_core import retry as gretry

        if self._call_log:
            kind = "read" if method.startswith(("Get", "List")) else "write"
            with open(self._call_log, "a", encoding="utf-8") as log:
                log.write(f"gcp iam {method} {kind}\n")
        function = getattr(self.client, _snake(method))
        retry = (gretry.Retry(predicate=gretry.if_exception_type(gexc.ServiceUnavailable), initial=0.2,
                              maximum=2.0, timeout=20.0) if retry_reads else None)
        try:
            return function(request=request, retry=retry, timeout=30.0)
        except gexc.GoogleAPICallError as exc:
            raise _translate(exc, action) from None
        except gexc.RetryError:
            raise GcpError(f"failed to {action}: the IAM API stayed unavailable",
                           "Retry later").with_code("UNAVAILABLE") from None

    def get_service_account(self, project: str, account: str) -> ServiceAccount | None:
        """The account by id or email, or None when it does not exist."""
        email = account if "@" in account else f"{account}@{project}.iam.gserviceaccount.com"
        try:
            found = self._call("GetServiceAccount", f"read service account {email}",
                               {"name": f"projects/-/serviceAccounts/{email}"})
        except GcpError as exc:
            if exc.code == "NOT_FOUND":
                return None
            raise
        return ServiceAccount(email=found.email, unique_id=found.unique_id, project=found.project_id,
                              disabled=found.disabled)

    def create_service_account(self, project: str, account_id: str) -> ServiceAccount:
        created = self._call("CreateServiceAccount", f"create service account {account_id} in {project}",
                             {"name": f"projects/{project}", "account_id": account_id,
                              "service_account": {"display_name": f"{account_id} (gcpfargate)",
                                                  "description": "Created by gcpfargate for ECS Fargate tasks"}},
                             retry_reads=False)
        return ServiceAccount(email=created.email, unique_id=created.unique_id, project=created.project_id,
                              disabled=created.disabled)

    def list_user_keys(self, email: str) -> list[KeyInfo]:
        from google.cloud import iam_admin_v1

        response = self._call("ListServiceAccountKeys", f"list the keys of {email}",
                              {"name": f"projects/-/serviceAccounts/{email}",
                               "key_types": [iam_admin_v1.ListServiceAccountKeysRequest.KeyType.USER_MANAGED]})
        return [_key_info(key) for key in response.keys]

    def get_key(self, email: str, key_id: str) -> KeyInfo | None:
        try:
            key = self._call("GetServiceAccountKey", f"read key {key_id} of {email}",
                             {"name": _key_name(email, key_id)})
        except GcpError as exc:
            if exc.code == "NOT_FOUND":
                return None
            raise
        return _key_info(key)

    def create_key(self, email: str) -> KeyMaterial:
        """Mint a key and return its JSON, in memory only. Not retried: a retry would mint another."""
        from google.cloud import iam_admin_v1

        request = {"name": f"projects/-/serviceAccounts/{email}",
                   "private_key_type": iam_admin_v1.ServiceAccountPrivateKeyType.TYPE_GOOGLE_CREDENTIALS_FILE,
                   "key_algorithm": iam_admin_v1.ServiceAccountKeyAlgorithm.KEY_ALG_RSA_2048}
        try:
            key = self._call("CreateServiceAccountKey", f"create a key for {email}", request, retry_reads=False)
        except GcpError as exc:
            if exc.code == "FAILED_PRECONDITION" and "not allowed" in exc.message.lower():
                raise GcpError(f"key creation for {email} is refused by an organization policy "
                               "(constraints/iam.disableServiceAccountKeyCreation)",
                               "Ask your GCP organization admin for an exception for this project, "
                               "or use workload identity federation instead of keys").with_code(exc.code) from None
            if exc.code == "FAILED_PRECONDITION" and len(self.list_user_keys(email)) >= MAX_USER_KEYS:
                raise KeyLimitError(f"cannot create a key for {email}: the account already holds "
                                    f"{MAX_USER_KEYS} user-managed keys",
                                    "Delete unused keys (`gcpfargate rotate-key --prune`)"
                                    ).with_code(exc.code) from None
            if exc.code in ("INTERNAL", "UNAVAILABLE", "DEADLINE_EXCEEDED", "UNKNOWN"):
                # The answer was lost, not necessarily the key: say how to find and remove it.
                raise GcpError(exc.message, "A key may have been created anyway; retry, then remove keys no secret "
                               "uses with `gcpfargate rotate-key --prune --yes`").with_code(exc.code) from None
            raise
        try:
            return KeyMaterial.parse(bytes(key.private_key_data))
        except NotAKeyError as exc:
            # Should not happen; delete what we cannot use so nothing is orphaned.
            self.delete_key(email, key.name.rsplit("/", 1)[-1])
            raise GcpError(f"the IAM API returned an unusable key for {email}: {exc}") from None

    def delete_key(self, email: str, key_id: str) -> None:
        self._call("DeleteServiceAccountKey", f"delete key {key_id} of {email}", {"name": _key_name(email, key_id)},
                   retry_reads=False)

    def disable_key(self, email: str, key_id: str) -> None:
        self._call("DisableServiceAccountKey", f"disable key {key_id} of {email}",
                   {"name": _key_name(email, key_id)}, retry_reads=False)

    # -- IAM policy of a service account (keyless mode's workloadIdentityUser binding) ------------
    def get_iam_policy(self, email: str) -> Any:
        """The account's policy (google.iam.v1 Policy, with its etag for a read-modify-write)."""
        return self._call("GetIamPolicy", f"read the IAM policy of {email}",
                          {"resource": f"projects/-/serviceAccounts/{email}"})

    def set_iam_policy(self, email: str, policy: Any) -> Any:
        """Write `policy` back; ABORTED (code) when someone changed it since it was read (etag)."""
        return self._call("SetIamPolicy", f"update the IAM policy of {email}",
                          {"resource": f"projects/-/serviceAccounts/{email}", "policy": policy}, retry_reads=False)



def _snake(method: str) -> str:
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in method).lstrip("_")


def _key_name(email: str, key_id: str) -> str:
    return f"projects/-/serviceAccounts/{email}/keys/{key_id}"


def _key_info(key: Any) -> KeyInfo:
    created = key.valid_after_time
    created_at = None
    if created:
        created_at = created if isinstance(created, datetime) else datetime.fromtimestamp(created.timestamp(), tz=UTC)
    return KeyInfo(key_id=key.name.rsplit("/", 1)[-1], created=created_at, disabled=bool(key.disabled))


_HINTS = {
    "PERMISSION_DENIED": "The GCP identity needs roles/iam.serviceAccountKeyAdmin (and "
                         "roles/iam.serviceAccountAdmin to create accounts) on the project",
    "UNAUTHENTICATED": "Refresh the Google Cloud credentials (gcloud auth application-default login)",
    "UNAVAILABLE": "The IAM API is unreachable; check IAM_EMULATOR_HOST or the network and retry",
    "DEADLINE_EXCEEDED": "The IAM API did not answer in time; retry",
}


def _translate(exc: Any, action: str) -> GcpError:
    code = getattr(getattr(exc, "grpc_status_code", None), "name", None) or type(exc).__name__
    message = str(getattr(exc, "message", "") or exc).rstrip(".")
    return GcpError(f"failed to {action}: {code}: {message}", _HINTS.get(code, "")).with_code(code)
