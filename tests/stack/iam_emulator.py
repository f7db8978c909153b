"""In-memory emulator of the Google Cloud IAM admin API (google.iam.admin.v1.IAM) for tests.

Why this exists: gcpfargate creates and rotates service-account keys. Testing that against real
Google Cloud is slow, needs credentials and leaves real key material around, so the test stack
runs this emulator instead. It has two faces:

* a gRPC server speaking `google.iam.admin.v1.IAM` (service accounts and their keys) that the
  real `google.cloud.iam_admin_v1.IAMClient` talks to over an insecure channel to
  `IamEmulator.grpc_address` (what clients put in IAM_EMULATOR_HOST), and
* an HTTP server that plays Google's OAuth2 token endpoint (`POST /token`, the JWT-bearer grant
  that google-auth's service-account credentials use), a tiny "Google API" (`GET /v1/whoami`)
  that only answers valid access tokens, and admin endpoints that let another process read
  counters and inject faults.

Keys handed out by CreateServiceAccountKey are real RSA keys in Google's key-file JSON format,
with `token_uri` pointing at this emulator, so a key produced by the product can be used with
google-auth end to end. Like Google, the emulator never keeps a user-managed private key: it
keeps only the public key (to verify JWT assertions) and a self-signed certificate.

Error codes and messages copy what the real service returns, as observed in public bug reports
(see the comments next to each message constant).

Run standalone with `python -m tests.stack.iam_emulator`: it prints one JSON line
`{"grpc": "127.0.0.1:PORT", "http": "http://127.0.0.1:PORT"}` and serves until SIGTERM/SIGINT.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import datetime as dt
import hashlib
import json
import re
import secrets
import signal
import sys
import threading
import time
import urllib.parse
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from concurrent import futures
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, NoReturn

import grpc
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID
from google.cloud.iam_admin_v1.types import iam
from google.protobuf import any_pb2, empty_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

SERVICE_NAME = "google.iam.admin.v1.IAM"

# Google allows at most 10 user-managed keys per service account (disabled keys count, deleted
# keys do not): https://cloud.google.com/iam/docs/keys-create-delete#creating
MAX_USER_MANAGED_KEYS = 10

# google-auth always puts Google's token endpoint in the assertion's `aud`, whatever `token_uri`
# the key file names (google/oauth2/service_account.py `_make_authorization_grant_assertion`),
# so /token must accept that audience as well as its own URL.
GOOGLE_TOKEN_AUDIENCE = "https://oauth2.googleapis.com/token"
JWT_BEARER_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
ACCESS_TOKEN_LIFETIME_S = 3600
# Google rejects assertions living longer than an hour; allow a little clock skew either way.
MAX_ASSERTION_LIFETIME_S = 3600
CLOCK_SKEW_S = 300

# User-managed keys without an expiry policy report this as validBeforeTime.
NEVER_EXPIRES = dt.datetime(9999, 12, 31, 23, 59, 59, tzinfo=dt.UTC)
# System-managed keys are rotated by Google roughly every two weeks.
SYSTEM_KEY_LIFETIME = dt.timedelta(days=14)

# account_id rule from CreateServiceAccountRequest's documentation: 6-30 characters matching
# `[a-z]([-a-z0-9]*[a-z0-9])` (RFC 1035).
_ACCOUNT_ID_RE = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])")
_PROJECT_RE = re.compile(r"^projects/([^/]+)$")
_ACCOUNT_NAME_RE = re.compile(r"^projects/([^/]+)/serviceAccounts/([^/]+)$")
_KEY_NAME_RE = re.compile(r"^projects/([^/]+)/serviceAccounts/([^/]+)/keys/([^/]+)$")

# --- Messages of the real service (sources: public GitHub issues quoting real responses) -------
# firebase/firebase-tools#6192, google-api-dotnet-client#2027: 11th key -> 400 FAILED_PRECONDITION.
MSG_KEY_LIMIT = "Precondition check failed."
# google/create-service-account#21, GaloyMoney/galoy-infra#242: org policy
# constraints/iam.disableServiceAccountKeyCreation -> FAILED_PRECONDITION + PreconditionFailure.
MSG_KEY_CREATION_DENIED = "Key creation is not allowed on this service account."
KEY_CREATION_CONSTRAINT = "constraints/iam.disableServiceAccountKeyCreation"
# GoogleCloudPlatform/python-docs-samples#10243: 404 "Service account projects/-/serviceAccounts/
# 105186979449173761854 does not exist." (the name as the caller wrote it).
MSG_ACCOUNT_NOT_FOUND = "Service account {name} does not exist."
# googleapis/google-cloud-cpp#7330 and #6637: NOT_FOUND "Service account key <id> does not exist."
MSG_KEY_NOT_FOUND = "Service account key {key_id} does not exist."
# GoogleCloudPlatform/java-docs-samples#3605: 409 ALREADY_EXISTS, with a ResourceInfo detail
# (GoogleCloudPlatform/reg-reporting-blueprint#104).
MSG_ACCOUNT_EXISTS = "Service account {account_id} already exists within project projects/{project}."
# google/litmus#107: INVALID_ARGUMENT for a bad length.
MSG_ACCOUNT_ID_LENGTH = 'The account ID "{account_id}" does not have a length between 6 and 30.'
# prebid/salesagent#789 shows "<id> does not match <regex>." for a bad character; we check the
# documented regex and name it in the message.
MSG_ACCOUNT_ID_PATTERN = "{account_id} does not match [a-z]([-a-z0-9]*[a-z0-9])."
# Google's generic INVALID_ARGUMENT text (hashicorp/terraform-provider-google#793). Used for
# malformed resource names and other bad fields where no specific message is known.
MSG_INVALID_ARGUMENT = "Request contains an invalid argument."

# OAuth2 token endpoint errors (400, error=invalid_grant):
# googleapis/google-cloud-python#10004, crossplane-contrib/provider-jet-gcp#56 (deleted key).
OAUTH_BAD_SIGNATURE = "Invalid JWT Signature."
# googleapis/google-cloud-php#3622: disabled or deleted service account.
OAUTH_ACCOUNT_NOT_FOUND = "Invalid grant: account not found"
# googleapis/google-api-php-client#1429.
OAUTH_BAD_TIMES = (
    "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe. "
    "Check your iat and exp values and use a clock with skew to account for clock differences "
    "between systems."
)
# google/oauth2l#130.
OAUTH_BAD_AUDIENCE = "Invalid JWT: Failed audience check."
# The 401 body Google APIs return for a missing/invalid/revoked bearer token.
UNAUTHENTICATED_MESSAGE = (
    "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie "
    "or other valid authentication credential. "
    "See https://developers.google.com/identity/sign-in/web/devconsole-project."
)

KeyType = iam.ListServiceAccountKeysRequest.KeyType

# Prefixes of method names that change state; counted separately so tests can assert that a
# read-only command (e.g. `plan`) made no mutating call.
_MUTATING_PREFIXES = ("Create", "Upload", "Delete", "Disable", "Enable", "Patch", "Update", "Undelete")


def is_mutating(method: str) -> bool:
    return method.startswith(_MUTATING_PREFIXES)


class RpcFailure(Exception):
    """An error the emulator answers with; becomes a gRPC status (or a ValueError in helpers)."""

    def __init__(self, code: grpc.StatusCode, message: str, details: Sequence[Any] = ()) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = list(details)


@dataclass
class _Account:
    project: str
    account_id: str
    email: str
    unique_id: str
    display_name: str = ""
    description: str = ""
    disabled: bool = False
    key_ids: list[str] = field(default_factory=list)  # creation order, includes deleted keys


@dataclass
class _Key:
    key_id: str
    email: str
    project: str
    key_type: KeyType
    origin: iam.ServiceAccountKeyOrigin
    algorithm: iam.ServiceAccountKeyAlgorithm
    valid_after: dt.datetime
    valid_before: dt.datetime
    # Only public material is ever stored. `None` for system-managed keys until a caller asks
    # for their public key (built lazily, because generating RSA keys is slow).
    public_key: rsa.RSAPublicKey | None = None
    cert_pem: bytes | None = None
    disabled: bool = False
    deleted: bool = False

    @property
    def state(self) -> str:
        if self.deleted:
            return "deleted"
        return "disabled" if self.disabled else "enabled"


@dataclass
class _Fault:
    nth: int
    code: grpc.StatusCode
    message: str
    when: str  # "before": fail without side effects; "after": do the work, lose the response
    seen: int = 0


@dataclass
class _AccessToken:
    email: str
    key_id: str
    expires_at: float


def _utcnow() -> dt.datetime:
    # Whole seconds, as the real API reports them.
    return dt.datetime.now(dt.UTC).replace(microsecond=0)


def _b64url_decode(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def _any(message: Any) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)
    return packed


def _serialize_empty(message: empty_pb2.Empty) -> bytes:
    return message.SerializeToString()


def _self_signed_cert(
    private_key: rsa.RSAPrivateKey, common_name: str, not_before: dt.datetime, not_after: dt.datetime
) -> bytes:
    """A self-signed X.509 PEM certificate, the form in which Google publishes key public halves."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(private_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .sign(private_key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM)


class IamEmulator:
    """gRPC google.iam.admin.v1.IAM + OAuth2 token endpoint, all in memory, all on 127.0.0.1."""

    def __init__(self, host: str = "127.0.0.1", grpc_port: int = 0, http_port: int = 0) -> None:
        self.host = host
        self._grpc_port_wanted = grpc_port
        self._http_port_wanted = http_port
        self.grpc_address = ""
        self.http_url = ""
        self._grpc_server: grpc.Server | None = None
        self._http_server: _HttpServer | None = None
        self._http_thread: threading.Thread | None = None

        # One lock guards all state below. Generating user keys happens outside it (only the
        # one-time system-key signer is generated under it).
        self._lock = threading.RLock()
        self._accounts: dict[str, _Account] = {}  # by email
        self._by_unique_id: dict[str, str] = {}  # unique_id -> email
        self._keys: dict[str, _Key] = {}  # by key id, deleted keys kept for key_state()
        self._deny_projects: set[str] = set()
        self._tokens: dict[str, _AccessToken] = {}
        self._faults: dict[str, list[_Fault]] = {}

        # Signs the certificates of system-managed keys; their private half is never exposed.
        self._system_signer: rsa.RSAPrivateKey | None = None
        self._system_signer_lock = threading.Lock()

        self._reset_counters()

    # ----------------------------------------------------------------------------- lifecycle
    def start(self) -> IamEmulator:
        if self._grpc_server is not None:
            return self
        server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=16, thread_name_prefix="iam-emu-grpc"),
            # With SO_REUSEPORT two emulators could silently share a fixed port; forbid it.
            options=[("grpc.so_reuseport", 0)],
        )
        server.add_generic_rpc_handlers((self._generic_handler(),))
        grpc_port = server.add_insecure_port(f"{self.host}:{self._grpc_port_wanted}")
        if grpc_port == 0:
            raise RuntimeError(f"IAM emulator: cannot bind gRPC port on {self.host}")
        server.start()
        self._grpc_server = server
        self.grpc_address = f"{self.host}:{grpc_port}"

        try:
            http_server = _HttpServer((self.host, self._http_port_wanted), _HttpHandler)
        except OSError:
            self.stop()  # do not leave a half-started emulator behind
            raise
        http_server.emulator = self
        self._http_server = http_server
        self.http_url = f"http://{self.host}:{http_server.server_address[1]}"
        self._http_thread = threading.Thread(target=http_server.serve_forever, name="iam-emu-http", daemon=True)
        self._http_thread.start()
        return self

    def stop(self) -> None:
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

    # ------------------------------------------------------------------- steering from Python
    def stats(self) -> dict[str, Any]:
        with self._lock:
            return {
                "calls": dict(self._calls),
                "mutating_calls": self._mutating_calls,
                "tokens_issued": self._tokens_issued,
                "authenticated_calls": self._authenticated_calls,
                # Every refused credential: assertions refused at /token plus access tokens
                # refused by the emulated API. The two parts are also reported separately.
                "rejected_tokens": self._rejected_grants + self._rejected_access_tokens,
                "rejected_grants": self._rejected_grants,
                "rejected_access_tokens": self._rejected_access_tokens,
                "authenticated_by_key": dict(self._authenticated_by_key),
                "injected_faults": self._injected_faults,
            }

    def reset_stats(self) -> None:
        with self._lock:
            self._reset_counters()

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
        if method not in self._handlers():
            raise ValueError(f"unknown IAM method {method!r}")
        if nth < 1:
            raise ValueError("nth must be >= 1")
        status = code if isinstance(code, grpc.StatusCode) else _status_code(code)
        if status is grpc.StatusCode.OK:
            raise ValueError("cannot inject OK as a failure")
        if when not in ("before", "after"):
            raise ValueError("when must be 'before' or 'after'")
        with self._lock:
            self._faults.setdefault(method, []).append(_Fault(nth, status, message, when))

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()
            self._refuse_grants = 0

    def refuse_grants(self, count: int = 1) -> None:
        """Refuse the next `count` token requests with invalid_grant, whatever key signs them
        (models a key Google does not accept yet, to test rotate-key's verification path)."""
        with self._lock:
            self._refuse_grants = count

    def deny_key_creation(self, project: str, deny: bool = True) -> None:
        """Model the org policy constraints/iam.disableServiceAccountKeyCreation on a project."""
        with self._lock:
            if deny:
                self._deny_projects.add(project)
            else:
                self._deny_projects.discard(project)

    def add_service_account(
        self, project: str, account_id: str, display_name: str = "", description: str = ""
    ) -> iam.ServiceAccount:
        """Seed an account (same rules as CreateServiceAccount); ValueError if refused."""
        try:
            return self._create_account(project, account_id, display_name, description)
        except RpcFailure as exc:
            raise ValueError(f"{exc.code.name}: {exc.message}") from None

    def set_service_account_disabled(self, email: str, disabled: bool = True) -> None:
        with self._lock:
            self._account_by_email(email).disabled = disabled

    def key_ids(self, email: str, include_deleted: bool = False) -> list[str]:
        """Ids of the account's USER_MANAGED keys in creation order (system key excluded)."""
        with self._lock:
            account = self._account_by_email(email)
            return [
                key_id
                for key_id in account.key_ids
                if self._keys[key_id].key_type == KeyType.USER_MANAGED
                and (include_deleted or not self._keys[key_id].deleted)
            ]

    def key_state(self, email: str, key_id: str) -> str:
        """'enabled', 'disabled' or 'deleted'; KeyError if the key never existed for `email`."""
        with self._lock:
            key = self._keys.get(key_id)
            if key is None or key.email != email:
                raise KeyError(f"no key {key_id} for {email}")
            return key.state

    def _account_by_email(self, email: str) -> _Account:
        account = self._accounts.get(email)
        if account is None:
            raise KeyError(f"no service account {email}")
        return account

    def _reset_counters(self) -> None:
        self._calls: Counter[str] = Counter()
        self._mutating_calls = 0
        self._tokens_issued = 0
        self._authenticated_calls = 0
        self._rejected_grants = 0
        self._rejected_access_tokens = 0
        self._authenticated_by_key: Counter[str] = Counter()
        self._injected_faults = 0

    # ----------------------------------------------------------------------------- gRPC side
    def _handlers(self) -> dict[str, tuple[Callable[[Any], Any], Any, Callable[[Any], bytes]]]:
        # method name -> (implementation, request type, response serializer)
        return {
            "GetServiceAccount": (
                self._rpc_get_account,
                iam.GetServiceAccountRequest,
                iam.ServiceAccount.serialize,
            ),
            "ListServiceAccounts": (
                self._rpc_list_accounts,
                iam.ListServiceAccountsRequest,
                iam.ListServiceAccountsResponse.serialize,
            ),
            "CreateServiceAccount": (
                self._rpc_create_account,
                iam.CreateServiceAccountRequest,
                iam.ServiceAccount.serialize,
            ),
            "DeleteServiceAccount": (
                self._rpc_delete_account,
                iam.DeleteServiceAccountRequest,
                _serialize_empty,
            ),
            "DisableServiceAccount": (
                self._rpc_disable_account,
                iam.DisableServiceAccountRequest,
                _serialize_empty,
            ),
            "EnableServiceAccount": (
                self._rpc_enable_account,
                iam.EnableServiceAccountRequest,
                _serialize_empty,
            ),
            "ListServiceAccountKeys": (
                self._rpc_list_keys,
                iam.ListServiceAccountKeysRequest,
                iam.ListServiceAccountKeysResponse.serialize,
            ),
            "GetServiceAccountKey": (
                self._rpc_get_key,
                iam.GetServiceAccountKeyRequest,
                iam.ServiceAccountKey.serialize,
            ),
            "CreateServiceAccountKey": (
                self._rpc_create_key,
                iam.CreateServiceAccountKeyRequest,
                iam.ServiceAccountKey.serialize,
            ),
            "UploadServiceAccountKey": (
                self._rpc_upload_key,
                iam.UploadServiceAccountKeyRequest,
                iam.ServiceAccountKey.serialize,
            ),
            "DeleteServiceAccountKey": (
                self._rpc_delete_key,
                iam.DeleteServiceAccountKeyRequest,
                _serialize_empty,
            ),
            "DisableServiceAccountKey": (
                self._rpc_disable_key,
                iam.DisableServiceAccountKeyRequest,
                _serialize_empty,
            ),
            "EnableServiceAccountKey": (
                self._rpc_enable_key,
                iam.EnableServiceAccountKeyRequest,
                _serialize_empty,
            ),
        }

    def _generic_handler(self) -> grpc.GenericRpcHandler:
        method_handlers = {
            method: grpc.unary_unary_rpc_method_handler(
                self._wrap(method, impl),
                request_deserializer=request_type.deserialize,
                response_serializer=serializer,
            )
            for method, (impl, request_type, serializer) in self._handlers().items()
        }
        return grpc.method_handlers_generic_handler(SERVICE_NAME, method_handlers)

    def _wrap(self, method: str, impl: Callable[[Any], Any]) -> Callable[[Any, grpc.ServicerContext], Any]:
        def handler(request: Any, context: grpc.ServicerContext) -> Any:
            fault = self._record_call(method)
            if fault is not None and fault.when == "before":
                _abort(context, RpcFailure(fault.code, fault.message))
            try:
                response = impl(request)
            except RpcFailure as failure:
                _abort(context, failure)
            if fault is not None:  # when == "after": the work is done, the answer is lost
                _abort(context, RpcFailure(fault.code, fault.message))
            return response

        return handler

    def _record_call(self, method: str) -> _Fault | None:
        with self._lock:
            self._calls[method] += 1
            if is_mutating(method):
                self._mutating_calls += 1
            pending = self._faults.get(method, [])
            fired: _Fault | None = None
            for fault in pending:
                fault.seen += 1
                if fired is None and fault.seen >= fault.nth:
                    fired = fault
            if fired is not None:
                pending.remove(fired)
                self._injected_faults += 1
            return fired

    # Name resolution (callers hold the lock).
    def _resolve_account(self, name: str) -> _Account:
        match = _ACCOUNT_NAME_RE.match(name)
        if match is None:
            raise RpcFailure(grpc.StatusCode.INVALID_ARGUMENT, MSG_INVALID_ARGUMENT)
        return self._lookup_account(match.group(1), match.group(2), name)

    def _lookup_account(self, project: str, ident: str, name: str) -> _Account:
        # ACCOUNT may be the email or the numeric unique id; project "-" means "infer it".
        email = ident if "@" in ident else self._by_unique_id.get(ident, "")
        account = self._accounts.get(email)
        if account is None or (project != "-" and account.project != project):
            raise RpcFailure(grpc.StatusCode.NOT_FOUND, MSG_ACCOUNT_NOT_FOUND.format(name=name))
        return account

    def _resolve_key(self, name: str) -> tuple[_Account, _Key]:
        match = _KEY_NAME_RE.match(name)
        if match is None:
            raise RpcFailure(grpc.StatusCode.INVALID_ARGUMENT, MSG_INVALID_ARGUMENT)
        project, ident, key_id = match.groups()
        account = self._lookup_account(project, ident, f"projects/{project}/serviceAccounts/{ident}")
        key = self._keys.get(key_id)
        if key is None or key.deleted or key.email != account.email:
            raise RpcFailure(grpc.StatusCode.NOT_FOUND, MSG_KEY_NOT_FOUND.format(key_id=key_id))
        return account, key

    def _account_message(self, account: _Account) -> iam.ServiceAccount:
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

    def _key_message(
        self,
        key: _Key,
        public_key_type: iam.ServiceAccountPublicKeyType = iam.ServiceAccountPublicKeyType.TYPE_NONE,
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
            message.public_key_data = self._certificate(key)
        elif public_key_type == iam.ServiceAccountPublicKeyType.TYPE_RAW_PUBLIC_KEY:
            self._certificate(key)  # makes sure a system key has its public half
            assert key.public_key is not None
            message.public_key_data = key.public_key.public_bytes(
                serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        return message

    def _certificate(self, key: _Key) -> bytes:
        if key.cert_pem is None:
            signer = self._system_key_signer()
            key.cert_pem = _self_signed_cert(signer, key.email, key.valid_after, key.valid_before)
            key.public_key = signer.public_key()
        return key.cert_pem

    def _system_key_signer(self) -> rsa.RSAPrivateKey:
        with self._system_signer_lock:
            if self._system_signer is None:
                self._system_signer = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            return self._system_signer

    def _create_account(self, project: str, account_id: str, display_name: str, description: str) -> iam.ServiceAccount:
        if not project or project == "-" or "/" in project:
            raise RpcFailure(grpc.StatusCode.INVALID_ARGUMENT, MSG_INVALID_ARGUMENT)
        if not 6 <= len(account_id) <= 30:
            raise RpcFailure(grpc.StatusCode.INVALID_ARGUMENT, MSG_ACCOUNT_ID_LENGTH.format(account_id=account_id))
        if _ACCOUNT_ID_RE.fullmatch(account_id) is None:
            raise RpcFailure(grpc.StatusCode.INVALID_ARGUMENT, MSG_ACCOUNT_ID_PATTERN.format(account_id=account_id))
        # Documented limits: display name 100 UTF-8 bytes, description 256.
        if len(display_name.encode()) > 100 or len(description.encode()) > 256:
            raise RpcFailure(grpc.StatusCode.INVALID_ARGUMENT, MSG_INVALID_ARGUMENT)
        email = f"{account_id}@{project}.iam.gserviceaccount.com"
        with self._lock:
            if email in self._accounts:
                raise RpcFailure(
                    grpc.StatusCode.ALREADY_EXISTS,
                    MSG_ACCOUNT_EXISTS.format(account_id=account_id, project=project),
                    [error_details_pb2.ResourceInfo(resource_name=f"projects/{project}/serviceAccounts/{email}")],
                )
            unique_id = self._new_unique_id()
            account = _Account(project, account_id, email, unique_id, display_name, description)
            self._accounts[email] = account
            self._by_unique_id[unique_id] = email
            # Every real service account has a Google-managed key; its material is made lazily.
            now = _utcnow()
            system_key = _Key(
                key_id=self._new_key_id(),
                email=email,
                project=project,
                key_type=KeyType.SYSTEM_MANAGED,
                origin=iam.ServiceAccountKeyOrigin.GOOGLE_PROVIDED,
                algorithm=iam.ServiceAccountKeyAlgorithm.KEY_ALG_RSA_2048,
                valid_after=now,
                valid_before=now + SYSTEM_KEY_LIFETIME,
            )
            self._keys[system_key.key_id] = system_key
            account.key_ids.append(system_key.key_id)
            return self._account_message(account)

    def _new_unique_id(self) -> str:
        # Real unique ids are 21 decimal digits starting with 1.
        while True:
            candidate = "1" + "".join(secrets.choice("0123456789") for _ in range(20))
            if candidate not in self._by_unique_id:
                return candidate

    def _new_key_id(self) -> str:
        while True:
            candidate = secrets.token_hex(20)  # 40 lowercase hex characters, like Google's ids
            if candidate not in self._keys:
                return candidate

    def _user_key_count(self, account: _Account) -> int:
        return sum(
            1
            for key_id in account.key_ids
            if self._keys[key_id].key_type == KeyType.USER_MANAGED and not self._keys[key_id].deleted
        )

    def _check_can_add_key(self, account: _Account, creating: bool) -> None:
        if creating and account.project in self._deny_projects:
            subject = (
                f"projects/{account.project}/serviceAccounts/{account.email}"
                f"?configvalue={urllib.parse.quote(account.email, safe='')}"
            )
            raise RpcFailure(
                grpc.StatusCode.FAILED_PRECONDITION,
                MSG_KEY_CREATION_DENIED,
                [
                    error_details_pb2.PreconditionFailure(
                        violations=[
                            error_details_pb2.PreconditionFailure.Violation(
                                type=KEY_CREATION_CONSTRAINT,
                                subject=subject,
                                description=MSG_KEY_CREATION_DENIED,
                            )
                        ]
                    )
                ],
            )
        if self._user_key_count(account) >= MAX_USER_MANAGED_KEYS:
            raise RpcFailure(grpc.StatusCode.FAILED_PRECONDITION, MSG_KEY_LIMIT)

    def _add_user_key(self, email: str, key: _Key, creating: bool) -> None:
        # Re-check under the lock: the account may have gone, or a concurrent call may have
        # used the last free key slot while we generated the key outside the lock.
        account = self._accounts.get(email)
        if account is None:
            raise RpcFailure(
                grpc.StatusCode.NOT_FOUND,
                MSG_ACCOUNT_NOT_FOUND.format(name=f"projects/-/serviceAccounts/{email}"),
            )
        self._check_can_add_key(account, creating)
        self._keys[key.key_id] = key
        account.key_ids.append(key.key_id)

    # Implementations. Each takes the request and returns the response or raises RpcFailure.
    def _rpc_get_account(self, request: iam.GetServiceAccountRequest) -> iam.ServiceAccount:
        with self._lock:
            return self._account_message(self._resolve_account(request.name))

    def _rpc_list_accounts(self, request: iam.ListServiceAccountsRequest) -> iam.ListServiceAccountsResponse:
        match = _PROJECT_RE.match(request.name)
        if match is None or match.group(1) == "-":
            raise RpcFailure(grpc.StatusCode.INVALID_ARGUMENT, MSG_INVALID_ARGUMENT)
        project = match.group(1)
        # Documented: default page size 20, maximum 100. The page token is an opaque offset.
        page_size = min(request.page_size or 20, 100)
        try:
            offset = int(request.page_token) if request.page_token else 0
        except ValueError:
            raise RpcFailure(grpc.StatusCode.INVALID_ARGUMENT, MSG_INVALID_ARGUMENT) from None
        with self._lock:
            accounts = sorted((a for a in self._accounts.values() if a.project == project), key=lambda a: a.email)
            page = [self._account_message(a) for a in accounts[offset : offset + page_size]]
        next_offset = offset + page_size
        return iam.ListServiceAccountsResponse(
            accounts=page, next_page_token=str(next_offset) if next_offset < len(accounts) else ""
        )

    def _rpc_create_account(self, request: iam.CreateServiceAccountRequest) -> iam.ServiceAccount:
        match = _PROJECT_RE.match(request.name)
        if match is None:
            raise RpcFailure(grpc.StatusCode.INVALID_ARGUMENT, MSG_INVALID_ARGUMENT)
        return self._create_account(
            match.group(1),
            request.account_id,
            request.service_account.display_name,
            request.service_account.description,
        )

    def _rpc_delete_account(self, request: iam.DeleteServiceAccountRequest) -> empty_pb2.Empty:
        with self._lock:
            account = self._resolve_account(request.name)
            for key_id in account.key_ids:
                self._keys[key_id].deleted = True
            del self._accounts[account.email]
            del self._by_unique_id[account.unique_id]
        return empty_pb2.Empty()

    def _rpc_disable_account(self, request: iam.DisableServiceAccountRequest) -> empty_pb2.Empty:
        with self._lock:
            self._resolve_account(request.name).disabled = True
        return empty_pb2.Empty()

    def _rpc_enable_account(self, request: iam.EnableServiceAccountRequest) -> empty_pb2.Empty:
        with self._lock:
            self._resolve_account(request.name).disabled = False
        return empty_pb2.Empty()

    def _rpc_list_keys(self, request: iam.ListServiceAccountKeysRequest) -> iam.ListServiceAccountKeysResponse:
        wanted = list(request.key_types)
        # Documented: KEY_TYPE_UNSPECIFIED in the filter is an error, and so are duplicates.
        if KeyType.KEY_TYPE_UNSPECIFIED in wanted or len(set(wanted)) != len(wanted):
            raise RpcFailure(grpc.StatusCode.INVALID_ARGUMENT, MSG_INVALID_ARGUMENT)
        with self._lock:
            account = self._resolve_account(request.name)
            keys = [
                self._key_message(key)
                for key in (self._keys[key_id] for key_id in account.key_ids)
                if not key.deleted and (not wanted or key.key_type in wanted)
            ]
        return iam.ListServiceAccountKeysResponse(keys=keys)

    def _rpc_get_key(self, request: iam.GetServiceAccountKeyRequest) -> iam.ServiceAccountKey:
        with self._lock:
            _, key = self._resolve_key(request.name)
            return self._key_message(key, request.public_key_type)

    def _rpc_create_key(self, request: iam.CreateServiceAccountKeyRequest) -> iam.ServiceAccountKey:
        with self._lock:
            account = self._resolve_account(request.name)
            self._check_can_add_key(account, creating=True)
            email, project, client_id = account.email, account.project, account.unique_id
            key_id = self._new_key_id()

        algorithm = request.key_algorithm
        if algorithm == iam.ServiceAccountKeyAlgorithm.KEY_ALG_UNSPECIFIED:
            algorithm = iam.ServiceAccountKeyAlgorithm.KEY_ALG_RSA_2048
        key_type_out = request.private_key_type
        if key_type_out == iam.ServiceAccountPrivateKeyType.TYPE_UNSPECIFIED:
            key_type_out = iam.ServiceAccountPrivateKeyType.TYPE_GOOGLE_CREDENTIALS_FILE

        # Slow part, done without the lock. The private key lives only in this frame and in
        # the response; afterwards only the public key and certificate are kept.
        bits = 1024 if algorithm == iam.ServiceAccountKeyAlgorithm.KEY_ALG_RSA_1024 else 2048
        private_key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
        now = _utcnow()
        cert_pem = _self_signed_cert(private_key, email, now, NEVER_EXPIRES)
        if key_type_out == iam.ServiceAccountPrivateKeyType.TYPE_PKCS12_FILE:
            # Google's P12 files use the fixed password "notasecret".
            private_key_data = pkcs12.serialize_key_and_certificates(
                b"privatekey",
                private_key,
                x509.load_pem_x509_certificate(cert_pem),
                None,
                serialization.BestAvailableEncryption(b"notasecret"),
            )
        else:
            private_key_data = self._key_file_json(private_key, key_id, email, project, client_id)
        public_key = private_key.public_key()
        del private_key

        key = _Key(
            key_id=key_id,
            email=email,
            project=project,
            key_type=KeyType.USER_MANAGED,
            origin=iam.ServiceAccountKeyOrigin.GOOGLE_PROVIDED,
            algorithm=algorithm,
            valid_after=now,
            valid_before=NEVER_EXPIRES,
            public_key=public_key,
            cert_pem=cert_pem,
        )
        with self._lock:
            self._add_user_key(email, key, creating=True)
            response = self._key_message(key)
        response.private_key_type = key_type_out
        response.private_key_data = private_key_data
        return response

    def _key_file_json(
        self, private_key: rsa.RSAPrivateKey, key_id: str, email: str, project: str, client_id: str
    ) -> bytes:
        # Field order and formatting follow the key files Google hands out.
        private_key_pem = private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode()
        info = {
            "type": "service_account",
            "project_id": project,
            "private_key_id": key_id,
            "private_key": private_key_pem,
            "client_email": email,
            "client_id": client_id,
            "auth_uri": "https://accounts.google.com/o/oauth2/auth",
            "token_uri": self.token_uri,
            "auth_provider_x509_cert_url": "https://www.googleapis.com/oauth2/v1/certs",
            "client_x509_cert_url": f"{self.http_url}/robot/v1/metadata/x509/" + urllib.parse.quote(email, safe=""),
            "universe_domain": "googleapis.com",
        }
        return (json.dumps(info, indent=2) + "\n").encode()

    def _rpc_upload_key(self, request: iam.UploadServiceAccountKeyRequest) -> iam.ServiceAccountKey:
        data = bytes(request.public_key_data)
        try:
            cert = x509.load_pem_x509_certificate(data)
        except ValueError:
            raise RpcFailure(grpc.StatusCode.INVALID_ARGUMENT, MSG_INVALID_ARGUMENT) from None
        public_key = cert.public_key()
        if not isinstance(public_key, rsa.RSAPublicKey) or public_key.key_size < 2048:
            raise RpcFailure(grpc.StatusCode.INVALID_ARGUMENT, MSG_INVALID_ARGUMENT)
        # The id of an uploaded key is derived from the certificate, so re-uploading the same
        # certificate is detected.
        key_id = hashlib.sha1(cert.public_bytes(serialization.Encoding.DER)).hexdigest()
        with self._lock:
            account = self._resolve_account(request.name)
            existing = self._keys.get(key_id)
            if existing is not None and not existing.deleted:
                raise RpcFailure(grpc.StatusCode.ALREADY_EXISTS, f"Service account key {key_id} already exists.")
            self._check_can_add_key(account, creating=False)
            if existing is not None:  # re-upload of a deleted key: start a fresh record
                previous_owner = self._accounts.get(existing.email)
                if previous_owner is not None:
                    previous_owner.key_ids.remove(key_id)
            key = _Key(
                key_id=key_id,
                email=account.email,
                project=account.project,
                key_type=KeyType.USER_MANAGED,
                origin=iam.ServiceAccountKeyOrigin.USER_PROVIDED,
                algorithm=iam.ServiceAccountKeyAlgorithm.KEY_ALG_RSA_2048,
                valid_after=cert.not_valid_before_utc,
                valid_before=cert.not_valid_after_utc,
                public_key=public_key,
                cert_pem=cert.public_bytes(serialization.Encoding.PEM),
            )
            self._add_user_key(account.email, key, creating=False)
            return self._key_message(key, iam.ServiceAccountPublicKeyType.TYPE_X509_PEM_FILE)

    def _user_key_for_change(self, name: str) -> _Key:
        _, key = self._resolve_key(name)
        if key.key_type != KeyType.USER_MANAGED:
            # Google-managed keys cannot be deleted, disabled or enabled by users.
            raise RpcFailure(grpc.StatusCode.FAILED_PRECONDITION, MSG_KEY_LIMIT)
        return key

    def _rpc_delete_key(self, request: iam.DeleteServiceAccountKeyRequest) -> empty_pb2.Empty:
        with self._lock:
            self._user_key_for_change(request.name).deleted = True
        return empty_pb2.Empty()

    def _rpc_disable_key(self, request: iam.DisableServiceAccountKeyRequest) -> empty_pb2.Empty:
        with self._lock:
            self._user_key_for_change(request.name).disabled = True
        return empty_pb2.Empty()

    def _rpc_enable_key(self, request: iam.EnableServiceAccountKeyRequest) -> empty_pb2.Empty:
        with self._lock:
            self._user_key_for_change(request.name).disabled = False
        return empty_pb2.Empty()

    # ----------------------------------------------------------------------------- HTTP side
    def exchange_assertion(self, grant_type: str, assertion: str) -> tuple[int, dict[str, Any]]:
        """OAuth2 token endpoint (RFC 7523 JWT-bearer grant) -> (HTTP status, JSON body)."""
        if grant_type != JWT_BEARER_GRANT:
            with self._lock:
                self._rejected_grants += 1
            return 400, {
                "error": "unsupported_grant_type",
                "error_description": f"Invalid grant_type: {grant_type}",
            }
        try:
            with self._lock:
                if getattr(self, "_refuse_grants", 0) > 0:
                    self._refuse_grants -= 1
                    raise _GrantRefused(OAUTH_BAD_SIGNATURE)
            email, key_id = self._verify_assertion(assertion)
        except _GrantRefused as refused:
            with self._lock:
                self._rejected_grants += 1
            return 400, {"error": "invalid_grant", "error_description": refused.description}
        token = "ya29.emulated-" + secrets.token_urlsafe(32)
        with self._lock:
            self._tokens[token] = _AccessToken(email, key_id, time.time() + ACCESS_TOKEN_LIFETIME_S)
            self._tokens_issued += 1
        return 200, {"access_token": token, "expires_in": ACCESS_TOKEN_LIFETIME_S, "token_type": "Bearer"}

    def _verify_assertion(self, assertion: str) -> tuple[str, str]:
        try:
            header_b64, payload_b64, signature_b64 = assertion.split(".")
            header = json.loads(_b64url_decode(header_b64))
            payload = json.loads(_b64url_decode(payload_b64))
            signature = _b64url_decode(signature_b64)
        except (ValueError, binascii.Error):
            raise _GrantRefused(OAUTH_BAD_SIGNATURE) from None
        if not isinstance(header, dict) or not isinstance(payload, dict) or header.get("alg") != "RS256":
            raise _GrantRefused(OAUTH_BAD_SIGNATURE)
        issuer = payload.get("iss")
        kid = header.get("kid")
        signing_input = f"{header_b64}.{payload_b64}".encode()

        with self._lock:
            account = self._accounts.get(issuer) if isinstance(issuer, str) else None
            if account is None:
                raise _GrantRefused(OAUTH_ACCOUNT_NOT_FOUND)
            # Only live keys of the issuing account can sign; without `kid` try them all.
            candidates = [
                self._keys[key_id]
                for key_id in account.key_ids
                if (kid is None or key_id == kid)
                and self._keys[key_id].key_type == KeyType.USER_MANAGED
                and not self._keys[key_id].deleted
                and not self._keys[key_id].disabled
                and self._keys[key_id].public_key is not None
            ]
            account_disabled = account.disabled
        verified = next((k for k in candidates if _rs256_valid(k, signing_input, signature)), None)
        if verified is None:
            raise _GrantRefused(OAUTH_BAD_SIGNATURE)
        if account_disabled:
            raise _GrantRefused(OAUTH_ACCOUNT_NOT_FOUND)
        audience = payload.get("aud")
        if audience not in (self.token_uri, GOOGLE_TOKEN_AUDIENCE):
            raise _GrantRefused(OAUTH_BAD_AUDIENCE)
        issued_at, expires_at, now = payload.get("iat"), payload.get("exp"), time.time()
        if (
            not isinstance(issued_at, int | float)
            or not isinstance(expires_at, int | float)
            or issued_at > now + CLOCK_SKEW_S
            or expires_at < now - CLOCK_SKEW_S
            or expires_at <= issued_at
            or expires_at - issued_at > MAX_ASSERTION_LIFETIME_S
        ):
            raise _GrantRefused(OAUTH_BAD_TIMES)
        valid_now = verified.valid_after.timestamp() - CLOCK_SKEW_S <= now <= verified.valid_before.timestamp()
        if not valid_now:
            raise _GrantRefused(OAUTH_BAD_SIGNATURE)
        return account.email, verified.key_id

    def authenticate(self, authorization: str | None) -> dict[str, str] | None:
        """Check a `Bearer` header; the token's key must still be live. Counts the outcome."""
        with self._lock:
            identity = self._identity_for(authorization)
            if identity is None:
                self._rejected_access_tokens += 1
                return None
            self._authenticated_calls += 1
            self._authenticated_by_key[identity["key_id"]] += 1
            return identity

    def _identity_for(self, authorization: str | None) -> dict[str, str] | None:
        if not authorization or not authorization.startswith("Bearer "):
            return None
        issued = self._tokens.get(authorization[len("Bearer ") :].strip())
        if issued is None or issued.expires_at < time.time():
            return None
        key = self._keys.get(issued.key_id)
        account = self._accounts.get(issued.email)
        # Revocation is immediate here (stricter than Google, which may honour a token until it
        # expires) so tests can assert that a disabled or deleted key is really dead.
        if key is None or key.deleted or key.disabled or account is None or account.disabled:
            return None
        return {"email": issued.email, "key_id": issued.key_id}

    def public_certificates(self, email: str) -> dict[str, str] | None:
        """Google's x509 metadata document: key id -> PEM certificate of every live key."""
        with self._lock:
            account = self._accounts.get(email)
            if account is None:
                return None
            return {
                key_id: self._certificate(self._keys[key_id]).decode()
                for key_id in account.key_ids
                if not self._keys[key_id].deleted and not self._keys[key_id].disabled
            }


class _GrantRefused(Exception):
    def __init__(self, description: str) -> None:
        super().__init__(description)
        self.description = description


def _rs256_valid(key: _Key, signing_input: bytes, signature: bytes) -> bool:
    assert key.public_key is not None
    try:
        key.public_key.verify(signature, signing_input, padding.PKCS1v15(), hashes.SHA256())
    except InvalidSignature:
        return False
    return True


def _status_code(name: str) -> grpc.StatusCode:
    try:
        return grpc.StatusCode[name.upper()]
    except KeyError:
        raise ValueError(f"unknown gRPC status code {name!r}") from None


def _abort(context: grpc.ServicerContext, failure: RpcFailure) -> NoReturn:
    # abort_with_status sends google.rpc.Status in grpc-status-details-bin, so api_core
    # exceptions carry `.details` (e.g. the PreconditionFailure of an org-policy refusal).
    status = status_pb2.Status(
        code=failure.code.value[0],
        message=failure.message,
        details=[_any(detail) for detail in failure.details],
    )
    context.abort_with_status(rpc_status.to_status(status))
    raise AssertionError("unreachable: abort_with_status raises")  # for type checkers


class _HttpServer(ThreadingHTTPServer):
    daemon_threads = True
    emulator: IamEmulator


class _HttpHandler(BaseHTTPRequestHandler):
    server: _HttpServer
    server_version = "IamEmulator/1"

    # Requests may carry bearer tokens; never log them (or anything else) to stderr.
    def log_message(self, format: str, *args: Any) -> None:
        return

    @property
    def emulator(self) -> IamEmulator:
        return self.server.emulator

    def _send_json(self, status: int, body: Any, headers: Iterable[tuple[str, str]] = ()) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        for name, value in headers:
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def _read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _read_json(self) -> dict[str, Any]:
        raw = self._read_body()
        body = json.loads(raw) if raw.strip() else {}
        if not isinstance(body, dict):
            raise ValueError("JSON object expected")
        return body

    def do_GET(self) -> None:
        url = urllib.parse.urlsplit(self.path)
        path = url.path
        if path == "/v1/whoami":
            identity = self.emulator.authenticate(self.headers.get("Authorization"))
            if identity is None:
                self._send_json(
                    401,
                    {"error": {"code": 401, "message": UNAUTHENTICATED_MESSAGE, "status": "UNAUTHENTICATED"}},
                    [("WWW-Authenticate", 'Bearer realm="https://accounts.google.com/", error="invalid_token"')],
                )
            else:
                self._send_json(200, identity)
        elif path == "/admin/stats":
            self._send_json(200, self.emulator.stats())
        elif path == "/admin/keys":
            email = urllib.parse.parse_qs(url.query).get("email", [""])[0]
            try:
                ids = self.emulator.key_ids(email, include_deleted=True)
                states = {key_id: self.emulator.key_state(email, key_id) for key_id in ids}
            except KeyError:
                self._send_json(404, {"error": f"no service account {email}"})
                return
            self._send_json(200, {"keys": states})
        elif path.startswith("/robot/v1/metadata/x509/"):
            email = urllib.parse.unquote(path.rsplit("/", 1)[1])
            certs = self.emulator.public_certificates(email)
            if certs is None:
                self._send_json(404, {"error": {"code": 404, "message": "Not Found", "status": "NOT_FOUND"}})
            else:
                self._send_json(200, certs)
        elif path == "/healthz":
            self._send_json(200, {"ok": True})
        else:
            self._send_json(404, {"error": {"code": 404, "message": "Not Found", "status": "NOT_FOUND"}})

    def do_POST(self) -> None:
        path = urllib.parse.urlsplit(self.path).path
        if path == "/token":
            self._token()
            return
        try:
            body = self._read_json()
            if path == "/admin/fail":
                self.emulator.fail_nth(
                    str(body["method"]),
                    int(body.get("nth", 1)),
                    str(body.get("code", "UNAVAILABLE")),
                    str(body.get("message", "The service is currently unavailable.")),
                    str(body.get("when", "before")),
                )
            elif path == "/admin/refuse-grants":
                self.emulator.refuse_grants(int(body.get("count", 1)))
            elif path == "/admin/clear-faults":
                self.emulator.clear_faults()
            elif path == "/admin/deny-key-creation":
                self.emulator.deny_key_creation(str(body["project"]), bool(body.get("deny", True)))
            elif path == "/admin/reset-stats":
                self.emulator.reset_stats()
            elif path == "/admin/service-accounts":
                account = self.emulator.add_service_account(
                    str(body["project"]),
                    str(body["account_id"]),
                    str(body.get("display_name", "")),
                    str(body.get("description", "")),
                )
                self._send_json(200, {"name": account.name, "email": account.email, "unique_id": account.unique_id})
                return
            elif path == "/admin/disable-service-account":
                self.emulator.set_service_account_disabled(str(body["email"]), bool(body.get("disabled", True)))
            else:
                self._send_json(404, {"error": {"code": 404, "message": "Not Found", "status": "NOT_FOUND"}})
                return
        except (KeyError, ValueError, TypeError) as exc:
            self._send_json(400, {"error": str(exc)})
            return
        self._send_json(200, {"ok": True})

    def _token(self) -> None:
        raw = self._read_body().decode("utf-8", "replace")
        content_type = self.headers.get("Content-Type", "")
        if "application/json" in content_type:
            try:
                parsed = json.loads(raw)
            except ValueError:
                parsed = None
            form = {k: str(v) for k, v in parsed.items()} if isinstance(parsed, dict) else {}
        else:
            form = {k: v[0] for k, v in urllib.parse.parse_qs(raw).items()}
        if "assertion" not in form:
            self._send_json(
                400, {"error": "invalid_request", "error_description": "Missing required parameter: assertion"}
            )
            return
        status, body = self.emulator.exchange_assertion(form.get("grant_type", ""), form["assertion"])
        self._send_json(status, body, [("Cache-Control", "no-store")])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run the IAM emulator until SIGTERM/SIGINT.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--grpc-port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--http-port", type=int, default=0, help="0 picks a free port")
    args = parser.parse_args(argv)

    stop = threading.Event()

    def _on_signal(signum: int, frame: Any) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    with IamEmulator(args.host, args.grpc_port, args.http_port) as emulator:
        # The only output: where to connect. Parents read this one line.
        print(json.dumps({"grpc": emulator.grpc_address, "http": emulator.http_url}), flush=True)
        while not stop.wait(0.5):
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
