"""Shared plumbing for the emulator's Google REST surfaces: error bodies, counting, faults.

A REST method is counted like a gRPC one (same `calls`/`mutating_calls` counters, so a test can
assert that a rerun made zero writes), may meet an injected fault (`fail_nth` by its RPC name, e.g.
"CreateWorkloadIdentityPool"), then the API-level knobs, then the method itself.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc

from tests.stack.iam.errors import RpcFailure
from tests.stack.iam.faults import Knobs
from tests.stack.iam.grpc_service import is_mutating
from tests.stack.iam.state import IamState

# google.rpc.Code -> HTTP status, as Google's REST surfaces map them (google/rpc/code.proto).
HTTP_STATUS = {
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.FAILED_PRECONDITION: 400,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.CANCELLED: 499,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
}
# The texts Google's REST APIs give for these codes (e.g. hashicorp/terraform-provider-google#7011
# "Error 404: Requested entity was not found., notFound"; #11006 "Requested entity already exists").
MSG_NOT_FOUND = "Requested entity was not found."
MSG_ALREADY_EXISTS = "Requested entity already exists"


def error_body(failure: RpcFailure) -> tuple[int, dict[str, Any]]:
    status = HTTP_STATUS.get(failure.code, 500)
    return status, {
        "error": {"code": status, "message": failure.message, "status": failure.code.name}
    }


def not_found() -> RpcFailure:
    return RpcFailure(grpc.StatusCode.NOT_FOUND, MSG_NOT_FOUND)


def invalid(message: str) -> RpcFailure:
    return RpcFailure(grpc.StatusCode.INVALID_ARGUMENT, message)


def call(
    state: IamState, knobs: Knobs, method: str, project: str | None, impl: Callable[[], Any]
) -> tuple[int, Any]:
    """Run one REST method the way IamService._wrap runs a gRPC one; answers (HTTP status, body)."""
    with state.lock:
        state.counters.calls[method] += 1
        if is_mutating(method):
            state.counters.mutating_calls += 1
        fault = knobs.take_fault(method)
        if fault is not None:
            state.counters.injected_faults += 1
    if fault is not None and fault.when == "before":
        return error_body(RpcFailure(fault.code, fault.message))
    try:
        with state.lock:
            knobs.check_call(method, project)
        body = impl()
    except RpcFailure as failure:
        return error_body(failure)
    if fault is not None:
        return error_body(RpcFailure(fault.code, fault.message))
    return 200, body
