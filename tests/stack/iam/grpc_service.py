"""The gRPC face: `google.iam.admin.v1.IAM` (service accounts and their keys).

The real `google.cloud.iam_admin_v1.IAMClient` talks to it over an insecure channel. Each call is
counted, may meet an injected fault, then the API-level knobs (service disabled, permission
denied), then the method itself with Google's own rules.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import time
from collections.abc import Callable
from typing import Any, NoReturn

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from google.cloud.iam_admin_v1.types import iam
from google.protobuf import any_pb2, empty_pb2
from google.rpc import status_pb2
from grpc_status import rpc_status

from tests.stack.iam import issuing
from tests.stack.iam.errors import (
    MSG_INVALID_ARGUMENT,
    MSG_KEY_LIMIT,
    RpcFailure,
    account_not_found,
)
from tests.stack.iam.faults import Knobs
from tests.stack.iam.state import (
    NEVER_EXPIRES,
    PROJECT_RE,
    IamState,
    Key,
    KeyType,
    MintedKey,
    utcnow,
)

SERVICE_NAME = "google.iam.admin.v1.IAM"

# Prefixes of method names that change state; counted separately so tests can assert that a
# read-only command (e.g. `plan`) made no mutating call.
_MUTATING_PREFIXES = (
    "Create",
    "Upload",
    "Delete",
    "Disable",
    "Enable",
    "Patch",
    "Update",
    "Undelete",
    "Set",
)


def is_mutating(method: str) -> bool:
    return method.startswith(_MUTATING_PREFIXES)


def _serialize_empty(message: empty_pb2.Empty) -> bytes:
    return message.SerializeToString()


def _abort(context: grpc.ServicerContext, failure: RpcFailure) -> NoReturn:
    # abort_with_status sends google.rpc.Status in grpc-status-details-bin, so api_core
    # exceptions carry `.details` (e.g. the PreconditionFailure of an org-policy refusal).
    packed = []
    for detail in failure.details:
        any_detail = any_pb2.Any()
        any_detail.Pack(detail)
        packed.append(any_detail)
    status = status_pb2.Status(code=failure.code.value[0], message=failure.message, details=packed)
    context.abort_with_status(rpc_status.to_status(status))
    raise AssertionError("unreachable: abort_with_status raises")  # for type checkers


class IamService:
    def __init__(
        self,
        state: IamState,
        knobs: Knobs,
        urls: Callable[[], tuple[str, str]],
        ready_key: Callable[[], Any] = lambda: None,
    ) -> None:
        self.state = state
        self.knobs = knobs
        self._urls = urls  # -> (token_uri, http_url), known only once the HTTP side is bound
        self._ready_key = ready_key  # an RSA-2048 key made ahead (keypool.py), or None
        # Further methods of the same service from other modules (policies.py: Get/SetIamPolicy):
        # name -> (implementation, request deserializer, response serializer).
        self.extra_methods: dict[
            str, tuple[Callable[[Any], Any], Callable[[bytes], Any], Callable[[Any], bytes]]
        ] = {}

    def handlers(self) -> dict[str, tuple[Callable[[Any], Any], Any, Callable[[Any], bytes]]]:
        # method name -> (implementation, request type, response serializer)
        return {
            "GetServiceAccount": (
                self._get_account,
                iam.GetServiceAccountRequest,
                iam.ServiceAccount.serialize,
            ),
            "ListServiceAccounts": (
                self._list_accounts,
                iam.ListServiceAccountsRequest,
                iam.ListServiceAccountsResponse.serialize,
            ),
            "CreateServiceAccount": (
                self._create_account,
                iam.CreateServiceAccountRequest,
                iam.ServiceAccount.serialize,
            ),
            "DeleteServiceAccount": (
                self._delete_account,
                iam.DeleteServiceAccountRequest,
                _serialize_empty,
            ),
            "DisableServiceAccount": (
                self._disable_account,
                iam.DisableServiceAccountRequest,
                _serialize_empty,
            ),
            "EnableServiceAccount": (
                self._enable_account,
                iam.EnableServiceAccountRequest,
                _serialize_empty,
            ),
            "ListServiceAccountKeys": (
                self._list_keys,
                iam.ListServiceAccountKeysRequest,
                iam.ListServiceAccountKeysResponse.serialize,
            ),
            "GetServiceAccountKey": (
                self._get_key,
                iam.GetServiceAccountKeyRequest,
                iam.ServiceAccountKey.serialize,
            ),
            "CreateServiceAccountKey": (
                self._create_key,
                iam.CreateServiceAccountKeyRequest,
                iam.ServiceAccountKey.serialize,
            ),
            "UploadServiceAccountKey": (
                self._upload_key,
                iam.UploadServiceAccountKeyRequest,
                iam.ServiceAccountKey.serialize,
            ),
            "DeleteServiceAccountKey": (
                self._delete_key,
                iam.DeleteServiceAccountKeyRequest,
                _serialize_empty,
            ),
            "DisableServiceAccountKey": (
                self._disable_key,
                iam.DisableServiceAccountKeyRequest,
                _serialize_empty,
            ),
            "EnableServiceAccountKey": (
                self._enable_key,
                iam.EnableServiceAccountKeyRequest,
                _serialize_empty,
            ),
        }

    def generic_handler(self) -> grpc.GenericRpcHandler:
        method_handlers = {
            method: grpc.unary_unary_rpc_method_handler(
                self._wrap(method, impl),
                request_deserializer=request_type.deserialize,
                response_serializer=serializer,
            )
            for method, (impl, request_type, serializer) in self.handlers().items()
        }
        for method, (impl, deserializer, serializer) in self.extra_methods.items():
            method_handlers[method] = grpc.unary_unary_rpc_method_handler(
                self._wrap(method, impl),
                request_deserializer=deserializer,
                response_serializer=serializer,
            )
        return grpc.method_handlers_generic_handler(SERVICE_NAME, method_handlers)

    def _wrap(
        self, method: str, impl: Callable[[Any], Any]
    ) -> Callable[[Any, grpc.ServicerContext], Any]:
        def handler(request: Any, context: grpc.ServicerContext) -> Any:
            with self.state.lock:
                counters = self.state.counters
                counters.calls[method] += 1
                if is_mutating(method):
                    counters.mutating_calls += 1
                fault = self.knobs.take_fault(method)
                if fault is not None:
                    counters.injected_faults += 1
            if fault is not None and fault.when == "before":
                _abort(context, RpcFailure(fault.code, fault.message))
            try:
                with self.state.lock:
                    # Get/SetIamPolicy name their target `resource`, every other method `name`.
                    target = getattr(request, "name", "") or getattr(request, "resource", "")
                    self.knobs.check_call(method, self.state.project_of(target))
                response = impl(request)
            except RpcFailure as failure:
                _abort(context, failure)
            if fault is not None:  # when == "after": the work is done, the answer is lost
                _abort(context, RpcFailure(fault.code, fault.message))
            return response

        return handler

    # ------------------------------------------------------------------ service accounts
    def _get_account(self, request: iam.GetServiceAccountRequest) -> iam.ServiceAccount:
        with self.state.lock:
            return self.state.account_message(self.state.resolve_account(request.name))

    def _list_accounts(
        self, request: iam.ListServiceAccountsRequest
    ) -> iam.ListServiceAccountsResponse:
        match = PROJECT_RE.match(request.name)
        if match is None or match.group(1) == "-":
            raise RpcFailure(grpc.StatusCode.INVALID_ARGUMENT, MSG_INVALID_ARGUMENT)
        project = match.group(1)
        # Documented: default page size 20, maximum 100. The page token is an opaque offset.
        page_size = min(request.page_size or 20, 100)
        try:
            offset = int(request.page_token) if request.page_token else 0
        except ValueError:
            raise RpcFailure(grpc.StatusCode.INVALID_ARGUMENT, MSG_INVALID_ARGUMENT) from None
        now = time.time()
        with self.state.lock:
            accounts = sorted(
                (
                    a
                    for a in self.state.accounts.values()
                    if a.project == project and a.hidden_until <= now
                ),
                key=lambda a: a.email,
            )
            page = [self.state.account_message(a) for a in accounts[offset : offset + page_size]]
        next_offset = offset + page_size
        return iam.ListServiceAccountsResponse(
            accounts=page, next_page_token=str(next_offset) if next_offset < len(accounts) else ""
        )

    def _create_account(self, request: iam.CreateServiceAccountRequest) -> iam.ServiceAccount:
        match = PROJECT_RE.match(request.name)
        if match is None:
            raise RpcFailure(grpc.StatusCode.INVALID_ARGUMENT, MSG_INVALID_ARGUMENT)
        with self.state.lock:
            hidden_for_s, hidden_calls = self.knobs.account_visibility
        return self.state.create_account(
            match.group(1),
            request.account_id,
            request.service_account.display_name,
            request.service_account.description,
            hidden_for_s,
            hidden_calls,
        )

    def _delete_account(self, request: iam.DeleteServiceAccountRequest) -> empty_pb2.Empty:
        with self.state.lock:
            self.state.delete_account(self.state.resolve_account(request.name))
        return empty_pb2.Empty()

    def _disable_account(self, request: iam.DisableServiceAccountRequest) -> empty_pb2.Empty:
        with self.state.lock:
            self.state.resolve_account(request.name).disabled = True
        return empty_pb2.Empty()

    def _enable_account(self, request: iam.EnableServiceAccountRequest) -> empty_pb2.Empty:
        with self.state.lock:
            self.state.resolve_account(request.name).disabled = False
        return empty_pb2.Empty()

    # ------------------------------------------------------------------ keys
    def _list_keys(
        self, request: iam.ListServiceAccountKeysRequest
    ) -> iam.ListServiceAccountKeysResponse:
        wanted = list(request.key_types)
        # Documented: KEY_TYPE_UNSPECIFIED in the filter is an error, and so are duplicates.
        if KeyType.KEY_TYPE_UNSPECIFIED in wanted or len(set(wanted)) != len(wanted):
            raise RpcFailure(grpc.StatusCode.INVALID_ARGUMENT, MSG_INVALID_ARGUMENT)
        with self.state.lock:
            account = self.state.resolve_account(request.name)
            keys = [
                self.state.key_message(key)
                for key in (self.state.keys[key_id] for key_id in account.key_ids)
                if not key.deleted and (not wanted or key.key_type in wanted)
            ]
        return iam.ListServiceAccountKeysResponse(keys=keys)

    def _get_key(self, request: iam.GetServiceAccountKeyRequest) -> iam.ServiceAccountKey:
        with self.state.lock:
            _, key = self.state.resolve_key(request.name)
            return self.state.key_message(key, request.public_key_type)

    def _create_key(self, request: iam.CreateServiceAccountKeyRequest) -> iam.ServiceAccountKey:
        state, knobs = self.state, self.knobs
        with state.lock:
            account = state.resolve_account(request.name)
            knobs.check_key_creation(
                account.project, account.email, state.user_key_count(account), creating=True
            )
            email, project, client_id = account.email, account.project, account.unique_id
            key_id = state.new_key_id()
            propagation = knobs.propagation_for(email)
            expiry_hours = knobs.expiry_hours_for(email)

        algorithm = request.key_algorithm
        if algorithm == iam.ServiceAccountKeyAlgorithm.KEY_ALG_UNSPECIFIED:
            algorithm = iam.ServiceAccountKeyAlgorithm.KEY_ALG_RSA_2048
        output = request.private_key_type
        if output == iam.ServiceAccountPrivateKeyType.TYPE_UNSPECIFIED:
            output = iam.ServiceAccountPrivateKeyType.TYPE_GOOGLE_CREDENTIALS_FILE
        now = utcnow()
        valid_before = (
            NEVER_EXPIRES if expiry_hours is None else now + dt.timedelta(hours=expiry_hours)
        )
        token_uri, http_url = self._urls()
        # Slow part, done without the lock.
        issued = issuing.issue(
            algorithm=algorithm,
            output=output,
            key_id=key_id,
            email=email,
            project=project,
            client_id=client_id,
            valid_after=now,
            valid_before=valid_before,
            token_uri=token_uri,
            http_url=http_url,
            ready_key=self._ready_key,
        )
        key = Key(
            key_id=key_id,
            email=email,
            project=project,
            key_type=KeyType.USER_MANAGED,
            origin=iam.ServiceAccountKeyOrigin.GOOGLE_PROVIDED,
            algorithm=algorithm,
            valid_after=now,
            valid_before=valid_before,
            public_key=issued.public_key,
            cert_pem=issued.cert_pem,
            usable_after=time.time() + propagation.seconds if propagation.seconds > 0 else 0.0,
            refusals_left=propagation.refusals,
        )
        with state.lock:
            self._add_user_key(email, key)
            state.minted.append(
                MintedKey(key_id, email, issued.private_key_pem, issued.private_key_data)
            )
            response = state.key_message(key)
        response.private_key_type = output
        response.private_key_data = issued.private_key_data
        with state.lock:
            hold, knobs.hold_key_answer_s = knobs.hold_key_answer_s, 0.0
        if hold > 0:
            # The key exists; its answer is in flight (a slow network, a client about to be
            # stopped).
            knobs.key_answer_held.set()
            time.sleep(hold)
        return response

    def _add_user_key(self, email: str, key: Key) -> None:
        # Re-check under the lock: the account may have gone, or a concurrent call may have used
        # the last free key slot while the key was generated outside the lock.
        account = self.state.accounts.get(email)
        if account is None:
            raise account_not_found(f"projects/-/serviceAccounts/{email}")
        self.knobs.check_key_creation(
            account.project, email, self.state.user_key_count(account), creating=False
        )
        self.state.keys[key.key_id] = key
        account.key_ids.append(key.key_id)

    def _upload_key(self, request: iam.UploadServiceAccountKeyRequest) -> iam.ServiceAccountKey:
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
        with self.state.lock:
            account = self.state.resolve_account(request.name)
            existing = self.state.keys.get(key_id)
            if existing is not None and not existing.deleted:
                raise RpcFailure(
                    grpc.StatusCode.ALREADY_EXISTS, f"Service account key {key_id} already exists."
                )
            if existing is not None:  # re-upload of a deleted key: start a fresh record
                previous_owner = self.state.accounts.get(existing.email)
                if previous_owner is not None:
                    previous_owner.key_ids.remove(key_id)
            key = Key(
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
            self._add_user_key(account.email, key)
            return self.state.key_message(key, iam.ServiceAccountPublicKeyType.TYPE_X509_PEM_FILE)

    def _user_key_for_change(self, name: str) -> Key:
        _, key = self.state.resolve_key(name)
        if key.key_type != KeyType.USER_MANAGED:
            # Google-managed keys cannot be deleted, disabled or enabled by users.
            raise RpcFailure(grpc.StatusCode.FAILED_PRECONDITION, MSG_KEY_LIMIT)
        return key

    def _delete_key(self, request: iam.DeleteServiceAccountKeyRequest) -> empty_pb2.Empty:
        with self.state.lock:
            self._user_key_for_change(request.name).deleted = True
        return empty_pb2.Empty()

    def _disable_key(self, request: iam.DisableServiceAccountKeyRequest) -> empty_pb2.Empty:
        with self.state.lock:
            self._user_key_for_change(request.name).disabled = True
        return empty_pb2.Empty()

    def _enable_key(self, request: iam.EnableServiceAccountKeyRequest) -> empty_pb2.Empty:
        with self.state.lock:
            self._user_key_for_change(request.name).disabled = False
        return empty_pb2.Empty()
