"""What the emulated Google knows: service accounts, their keys, counters, and minted keys.

One `IamState` is shared by the gRPC service, the token endpoint and the admin interface. Its
`lock` guards everything here and in `faults.Knobs`; callers hold it while they read or change.
"""

from __future__ import annotations

import datetime as dt
import re
import secrets
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import grpc
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from google.cloud.iam_admin_v1.types import iam
from google.rpc import error_details_pb2

from tests.stack.iam import issuing
from tests.stack.iam.errors import (
    MSG_ACCOUNT_EXISTS,
    MSG_ACCOUNT_ID_LENGTH,
    MSG_ACCOUNT_ID_PATTERN,
    MSG_INVALID_ARGUMENT,
    MSG_KEY_NOT_FOUND,
    RpcFailure,
    account_not_found,
)

KeyType = iam.ListServiceAccountKeysRequest.KeyType

# User-managed keys without an expiry policy report this as validBeforeTime.
NEVER_EXPIRES = dt.datetime(9999, 12, 31, 23, 59, 59, tzinfo=dt.UTC)
# System-managed keys are rotated by Google roughly every two weeks (ServiceAccountKey docs).
SYSTEM_KEY_LIFETIME = dt.timedelta(days=14)

# account_id rule from CreateServiceAccountRequest's documentation: 6-30 characters matching
# `[a-z]([-a-z0-9]*[a-z0-9])` (RFC 1035).
_ACCOUNT_ID_RE = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])")
PROJECT_RE = re.compile(r"^projects/([^/]+)$")
ACCOUNT_NAME_RE = re.compile(r"^projects/([^/]+)/serviceAccounts/([^/]+)$")
KEY_NAME_RE = re.compile(r"^projects/([^/]+)/serviceAccounts/([^/]+)/keys/([^/]+)$")


@dataclass
class Account:
    project: str
    account_id: str
    email: str
    unique_id: str
    display_name: str = ""
    description: str = ""
    disabled: bool = False
    key_ids: list[str] = field(default_factory=list)  # creation order, includes deleted keys
    # Eventual consistency after creation: NOT_FOUND until `hidden_until` (time.time()) and for
    # `hidden_calls` more look-ups.
    hidden_until: float = 0.0
    hidden_calls: int = 0


@dataclass
class Key:
    key_id: str
    email: str
    project: str
    key_type: KeyType
    origin: iam.ServiceAccountKeyOrigin
    algorithm: iam.ServiceAccountKeyAlgorithm
    valid_after: dt.datetime
    valid_before: dt.datetime
    # Only public material is kept with the key. `None` for system-managed keys until a caller
    # asks for their public key (built lazily, because generating RSA keys is slow).
    public_key: rsa.RSAPublicKey | None = None
    cert_pem: bytes | None = None
    disabled: bool = False
    deleted: bool = False
    # Propagation to the token service: refused until `usable_after` and for `refusals_left` more
    # token requests (see faults.Knobs.propagation_for).
    usable_after: float = 0.0
    refusals_left: int = 0

    @property
    def state(self) -> str:
        if self.deleted:
            return "deleted"
        return "disabled" if self.disabled else "enabled"

    def expired(self, now: float) -> bool:
        return now > self.valid_before.timestamp()


@dataclass(frozen=True)
class MintedKey:
    """Test-only record of private material the emulator handed out (for the leak scan)."""

    key_id: str
    email: str
    private_key_pem: str
    private_key_data: bytes  # exactly what CreateServiceAccountKey returned (JSON or P12)


@dataclass
class Counters:
    calls: Counter[str] = field(default_factory=Counter)
    mutating_calls: int = 0
    tokens_issued: int = 0
    authenticated_calls: int = 0
    rejected_grants: int = 0
    rejected_access_tokens: int = 0
    authenticated_by_key: Counter[str] = field(default_factory=Counter)
    injected_faults: int = 0


def utcnow() -> dt.datetime:
    # Whole seconds, as the real API reports them.
    return dt.datetime.now(dt.UTC).replace(microsecond=0)


class IamState:
    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.accounts: dict[str, Account] = {}  # by email
        self.by_unique_id: dict[str, str] = {}  # unique_id -> email
        self.keys: dict[str, Key] = {}  # by key id, deleted keys kept for key_state()
        self.counters = Counters()
        self.minted: list[MintedKey] = []
        # Signs the certificates of system-managed keys; its private half is never exposed.
        self._system_signer: rsa.RSAPrivateKey | None = None
        self._system_signer_lock = threading.Lock()

    # ------------------------------------------------------------------ admin-side look-ups
    def account_by_email(self, email: str) -> Account:
        account = self.accounts.get(email)
        if account is None:
            raise KeyError(f"no service account {email}")
        return account

    def key_ids(self, email: str, include_deleted: bool = False) -> list[str]:
        account = self.account_by_email(email)
        return [
            key_id
            for key_id in account.key_ids
            if self.keys[key_id].key_type == KeyType.USER_MANAGED
            and (include_deleted or not self.keys[key_id].deleted)
        ]

    def key_of(self, email: str, key_id: str) -> Key:
        key = self.keys.get(key_id)
        if key is None or key.email != email:
            raise KeyError(f"no key {key_id} for {email}")
        return key

    def stats(self) -> dict[str, Any]:
        c = self.counters
        return {
            "calls": dict(c.calls),
            "mutating_calls": c.mutating_calls,
            "tokens_issued": c.tokens_issued,
            "authenticated_calls": c.authenticated_calls,
            # Every refused credential: assertions refused at /token plus access tokens refused
            # by the emulated API. The two parts are also reported separately.
            "rejected_tokens": c.rejected_grants + c.rejected_access_tokens,
            "rejected_grants": c.rejected_grants,
            "rejected_access_tokens": c.rejected_access_tokens,
            "authenticated_by_key": dict(c.authenticated_by_key),
            "injected_faults": c.injected_faults,
            "keys_minted": len(self.minted),
        }

    # ------------------------------------------------------------------ API-side resolution
    def resolve_account(self, name: str) -> Account:
        match = ACCOUNT_NAME_RE.match(name)
        if match is None:
            raise RpcFailure(grpc.StatusCode.INVALID_ARGUMENT, MSG_INVALID_ARGUMENT)
        return self.lookup_account(match.group(1), match.group(2), name)

    def lookup_account(self, project: str, ident: str, name: str) -> Account:
        # ACCOUNT may be the email or the numeric unique id; project "-" means "infer it".
        email = ident if "@" in ident else self.by_unique_id.get(ident, "")
        account = self.accounts.get(email)
        if account is None or (project != "-" and account.project != project):
            raise account_not_found(name)
        if account.hidden_until > time.time():
            raise account_not_found(name)
        if account.hidden_calls > 0:
            account.hidden_calls -= 1
            raise account_not_found(name)
        return account

    def project_of(self, name: str) -> str | None:
        """The project a resource name belongs to ("-" resolved through the account), if known."""
        match = re.match(r"^projects/([^/]+)(?:/serviceAccounts/([^/]+))?", name)
        if match is None:
            return None
        project, ident = match.groups()
        if project != "-" or ident is None:
            return project
        email = ident if "@" in ident else self.by_unique_id.get(ident, "")
        account = self.accounts.get(email)
        return account.project if account is not None else None

    def resolve_key(self, name: str) -> tuple[Account, Key]:
        match = KEY_NAME_RE.match(name)
        if match is None:
            raise RpcFailure(grpc.StatusCode.INVALID_ARGUMENT, MSG_INVALID_ARGUMENT)
        project, ident, key_id = match.groups()
        account = self.lookup_account(project, ident, f"projects/{project}/serviceAccounts/{ident}")
        key = self.keys.get(key_id)
        if key is None or key.deleted or key.email != account.email:
            raise RpcFailure(grpc.StatusCode.NOT_FOUND, MSG_KEY_NOT_FOUND.format(key_id=key_id))
        return account, key

    # ------------------------------------------------------------------ messages
    def account_message(self, account: Account) -> iam.ServiceAccount:
        return iam.ServiceAccount(
            name=f"projects/{account.project}/serviceAccounts/{account.email}",
            project_id=account.project,
            unique_id=account.unique_id,
            email=account.email,
            display_name=account.display_name,
            description=account.description,
            oauth2_client_id=account.unique_id,
            disabled=account.disabled,
        )

    def key_message(
        self,
        key: Key,
        public_key_type: iam.ServiceAccountPublicKeyType = (
            iam.ServiceAccountPublicKeyType.TYPE_NONE
        ),
    ) -> iam.ServiceAccountKey:
        message = iam.ServiceAccountKey(
            name=f"projects/{key.project}/serviceAccounts/{key.email}/keys/{key.key_id}",
            key_algorithm=key.algorithm,
            valid_after_time=key.valid_after,
            valid_before_time=key.valid_before,
            key_origin=key.origin,
            key_type=key.key_type,
            disabled=key.disabled,
        )
        # As documented for GetServiceAccountKey, public key data only when asked for.
        if public_key_type == iam.ServiceAccountPublicKeyType.TYPE_X509_PEM_FILE:
            message.public_key_data = self.certificate(key)
        elif public_key_type == iam.ServiceAccountPublicKeyType.TYPE_RAW_PUBLIC_KEY:
            self.certificate(key)  # makes sure a system key has its public half
            assert key.public_key is not None
            message.public_key_data = key.public_key.public_bytes(
                serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        return message

    def certificate(self, key: Key) -> bytes:
        if key.cert_pem is None:
            signer = self._system_key_signer()
            key.cert_pem = issuing.self_signed_cert(
                signer, key.email, key.valid_after, key.valid_before
            )
            key.public_key = signer.public_key()
        return key.cert_pem

    def _system_key_signer(self) -> rsa.RSAPrivateKey:
        with self._system_signer_lock:
            if self._system_signer is None:
                self._system_signer = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            return self._system_signer

    # ------------------------------------------------------------------ changes
    def create_account(
        self,
        project: str,
        account_id: str,
        display_name: str,
        description: str,
        hidden_for_s: float,
        hidden_calls: int,
    ) -> iam.ServiceAccount:
        if not project or project == "-" or "/" in project:
            raise RpcFailure(grpc.StatusCode.INVALID_ARGUMENT, MSG_INVALID_ARGUMENT)
        if not 6 <= len(account_id) <= 30:
            raise RpcFailure(
                grpc.StatusCode.INVALID_ARGUMENT,
                MSG_ACCOUNT_ID_LENGTH.format(account_id=account_id),
            )
        if _ACCOUNT_ID_RE.fullmatch(account_id) is None:
            raise RpcFailure(
                grpc.StatusCode.INVALID_ARGUMENT,
                MSG_ACCOUNT_ID_PATTERN.format(account_id=account_id),
            )
        # Documented limits: display name 100 UTF-8 bytes, description 256.
        if len(display_name.encode()) > 100 or len(description.encode()) > 256:
            raise RpcFailure(grpc.StatusCode.INVALID_ARGUMENT, MSG_INVALID_ARGUMENT)
        email = f"{account_id}@{project}.iam.gserviceaccount.com"
        with self.lock:
            if email in self.accounts:
                raise RpcFailure(
                    grpc.StatusCode.ALREADY_EXISTS,
                    MSG_ACCOUNT_EXISTS.format(account_id=account_id, project=project),
                    [
                        error_details_pb2.ResourceInfo(
                            resource_name=f"projects/{project}/serviceAccounts/{email}"
                        )
                    ],
                )
            unique_id = self._new_unique_id()
            account = Account(project, account_id, email, unique_id, display_name, description)
            account.hidden_until = time.time() + hidden_for_s if hidden_for_s > 0 else 0.0
            account.hidden_calls = hidden_calls
            self.accounts[email] = account
            self.by_unique_id[unique_id] = email
            # Every real service account has a Google-managed key; its material is made lazily.
            now = utcnow()
            system_key = Key(
                key_id=self.new_key_id(),
                email=email,
                project=project,
                key_type=KeyType.SYSTEM_MANAGED,
                origin=iam.ServiceAccountKeyOrigin.GOOGLE_PROVIDED,
                algorithm=iam.ServiceAccountKeyAlgorithm.KEY_ALG_RSA_2048,
                valid_after=now,
                valid_before=now + SYSTEM_KEY_LIFETIME,
            )
            self.keys[system_key.key_id] = system_key
            account.key_ids.append(system_key.key_id)
            return self.account_message(account)

    def delete_account(self, account: Account) -> None:
        for key_id in account.key_ids:
            self.keys[key_id].deleted = True
        del self.accounts[account.email]
        del self.by_unique_id[account.unique_id]

    def user_key_count(self, account: Account) -> int:
        return sum(
            1
            for key_id in account.key_ids
            if self.keys[key_id].key_type == KeyType.USER_MANAGED and not self.keys[key_id].deleted
        )

    def _new_unique_id(self) -> str:
        # Real unique ids are 21 decimal digits starting with 1.
        while True:
            candidate = "1" + "".join(secrets.choice("0123456789") for _ in range(20))
            if candidate not in self.by_unique_id:
                return candidate

    def new_key_id(self) -> str:
        while True:
            candidate = secrets.token_hex(20)  # 40 lowercase hex characters, like Google's ids
            if candidate not in self.keys:
                return candidate
