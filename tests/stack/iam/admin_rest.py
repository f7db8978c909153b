"""The IAM Admin v1 REST face (https://cloud.google.com/iam/docs/reference/rest) over the emulator's
gRPC implementation, for `GCPFARGATE_GCP_TRANSPORT=rest`. Same state, same knobs, same refusals:
each REST call runs the gRPC method's handler, and an RpcFailure becomes Google's JSON error
(`{"error": {"code", "message", "status", "details": [{"@type": …}]}}`)."""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any

import grpc
from google.protobuf import any_pb2, json_format

from tests.stack.iam.admin_http import HttpRequest
from tests.stack.iam.errors import RpcFailure
from tests.stack.iam.grpc_service import is_mutating

if TYPE_CHECKING:
    from tests.stack.iam.emulator import IamEmulator

# gRPC status -> HTTP status (google.rpc.Code mapping, https://cloud.google.com/apis/design/errors).
HTTP = {
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.FAILED_PRECONDITION: 400,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.INTERNAL: 500,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
}
KEY = re.compile(r"^/v1/(projects/[^/]+/serviceAccounts/[^/]+/keys/[^/:]+)(?::(disable|enable))?$")
KEYS = re.compile(r"^/v1/(projects/[^/]+/serviceAccounts/[^/]+)/keys$")
ACCOUNT = re.compile(r"^/v1/(projects/[^/]+/serviceAccounts/[^/]+)$")
ACCOUNTS = re.compile(r"^/v1/(projects/[^/]+)/serviceAccounts$")


def mount_rest(emulator: IamEmulator) -> None:
    for method in ("GET", "POST", "DELETE"):
        emulator.mount(method, "/v1/projects/", lambda request: _answer(emulator, request))


def _route(request: HttpRequest) -> tuple[str, dict[str, Any]]:
    path, body = request.path, request.json() if request.method == "POST" else {}
    if match := KEY.match(path):
        action = {"disable": "DisableServiceAccountKey", "enable": "EnableServiceAccountKey"}.get(
            match.group(2) or ""
        )
        method = (
            action
            or {"GET": "GetServiceAccountKey", "DELETE": "DeleteServiceAccountKey"}[request.method]
        )
        return method, {"name": match.group(1)}
    if match := KEYS.match(path):
        if request.method == "GET":
            return "ListServiceAccountKeys", {
                "name": match.group(1),
                "key_types": request.query.get("keyTypes", []),
            }
        return "CreateServiceAccountKey", {
            "name": match.group(1),
            "private_key_type": body.get("privateKeyType", 0),
            "key_algorithm": body.get("keyAlgorithm", 0),
        }
    if match := ACCOUNT.match(path):
        return "GetServiceAccount", {"name": match.group(1)}
    if match := ACCOUNTS.match(path):
        account = body.get("serviceAccount", {})
        return "CreateServiceAccount", {
            "name": match.group(1),
            "account_id": body.get("accountId", ""),
            "service_account": {
                "display_name": account.get("displayName", ""),
                "description": account.get("description", ""),
            },
        }
    raise KeyError(path)


def _answer(emulator: IamEmulator, request: HttpRequest) -> tuple[int, Any]:
    try:
        method, fields = _route(request)
    except KeyError:
        return 404, {"error": {"code": 404, "message": "Not Found", "status": "NOT_FOUND"}}
    impl, request_type, _ = emulator.service.handlers()[method]
    message = request_type(**fields)
    try:
        with emulator.state.lock:
            emulator.state.counters.calls[method] += 1
            if is_mutating(method):  # as the gRPC face counts it (the write journal reads it)
                emulator.state.counters.mutating_calls += 1
            emulator.knobs.check_call(method, emulator.state.project_of(message.name))
        response = impl(message)
    except RpcFailure as failure:
        details = []
        for detail in failure.details:
            packed = any_pb2.Any()
            packed.Pack(detail)
            details.append(json_format.MessageToDict(packed))
        return HTTP.get(failure.code, 500), {
            "error": {
                "code": HTTP.get(failure.code, 500),
                "message": failure.message,
                "status": failure.code.name,
                "details": details,
            }
        }
    if hasattr(type(response), "to_json"):
        return 200, json.loads(type(response).to_json(response))
    return 200, {}
