"""IAM policies on service accounts: `google.iam.admin.v1.IAM` GetIamPolicy / SetIamPolicy (gRPC).

What IAMClient.get_iam_policy / set_iam_policy talk to. Rules kept
(https://cloud.google.com/iam/docs/reference/rest/v1/projects.serviceAccounts/setIamPolicy and
https://cloud.google.com/iam/docs/policies#etag): every policy has an etag that changes with every
write; a SetIamPolicy carrying an etag that is not the current one is refused with ABORTED
(read-modify-write lost a race), one without an etag overwrites; roles are `roles/...`; members
have one of the documented prefixes. `grants(...)` answers whether a federated principal holds a
role, which generateAccessToken asks (iamcredentials.py).
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from typing import Any

import grpc
from google.iam.v1 import iam_policy_pb2, policy_pb2

from tests.stack.iam.errors import MSG_INVALID_ARGUMENT, RpcFailure
from tests.stack.iam.state import IamState

# terraform-provider-google#4276, googleapis/google-cloud-go#1906: the text of a lost etag race.
MSG_CONCURRENT_CHANGE = (
    "There were concurrent policy changes. Please retry the whole read-modify-write with "
    "exponential backoff."
)
_MEMBER_PREFIXES = (
    "user:",
    "serviceAccount:",
    "group:",
    "domain:",
    "principal://",
    "principalSet://",
    "allUsers",
    "allAuthenticatedUsers",
    "deleted:",
)
_IAM = "//iam.googleapis.com/"


class Policies:
    def __init__(self, state: IamState) -> None:
        self.state = state
        self.policies: dict[str, policy_pb2.Policy] = {}  # by email; guarded by state.lock
        # Knob: after each of the next `races` GetIamPolicy answers, another writer changes the
        # policy (adds `race_member` as roles/viewer), so the reader's etag is stale by its write.
        self.races = 0
        self.race_member = "user:someone-else@example.com"
        # Knob: a member SetIamPolicy adds is not granted yet for its next N checks (IAM policy
        # changes "typically take 2 minutes" and can take 7 or more to propagate:
        # cloud.google.com/iam/docs/access-change-propagation). Counted, not timed.
        self.binding_refusals = 0
        self.unseen: dict[tuple[str, str, str], int] = {}  # (email, role, member) -> refusals left

    def methods(self) -> dict[str, tuple[Any, Any, Any]]:
        return {
            "GetIamPolicy": (
                self._get,
                iam_policy_pb2.GetIamPolicyRequest.FromString,
                policy_pb2.Policy.SerializeToString,
            ),
            "SetIamPolicy": (
                self._set,
                iam_policy_pb2.SetIamPolicyRequest.FromString,
                policy_pb2.Policy.SerializeToString,
            ),
        }

    def _current(self, email: str) -> policy_pb2.Policy:
        policy = self.policies.get(email)
        if policy is None:
            policy = policy_pb2.Policy(version=1, etag=secrets.token_bytes(8))
            self.policies[email] = policy
        return policy

    def _get(self, request: iam_policy_pb2.GetIamPolicyRequest) -> policy_pb2.Policy:
        with self.state.lock:
            account = self.state.resolve_account(request.resource)
            answer = policy_pb2.Policy()
            answer.CopyFrom(self._current(account.email))
            if self.races > 0:
                self.races -= 1
                raced = self._current(account.email)
                raced.bindings.append(
                    policy_pb2.Binding(role="roles/viewer", members=[self.race_member])
                )
                raced.etag = secrets.token_bytes(8)
            return answer

    def _set(self, request: iam_policy_pb2.SetIamPolicyRequest) -> policy_pb2.Policy:
        for binding in request.policy.bindings:
            if not binding.role.startswith("roles/") or not binding.members:
                raise RpcFailure(grpc.StatusCode.INVALID_ARGUMENT, MSG_INVALID_ARGUMENT)
            for member in binding.members:
                if not member.startswith(_MEMBER_PREFIXES):
                    raise RpcFailure(
                        grpc.StatusCode.INVALID_ARGUMENT, f"Invalid principal: {member}"
                    )
        with self.state.lock:
            account = self.state.resolve_account(request.resource)
            current = self._current(account.email)
            if request.policy.etag and request.policy.etag != current.etag:
                raise RpcFailure(grpc.StatusCode.ABORTED, MSG_CONCURRENT_CHANGE)
            before = {(b.role, m) for b in current.bindings for m in b.members}
            if self.binding_refusals > 0:
                for binding in request.policy.bindings:
                    for member in binding.members:
                        if (binding.role, member) not in before:
                            key = (account.email, binding.role, member)
                            self.unseen[key] = self.binding_refusals
            stored = policy_pb2.Policy(
                version=request.policy.version or 1, etag=secrets.token_bytes(8)
            )
            stored.bindings.extend(request.policy.bindings)
            self.policies[account.email] = stored
            answer = policy_pb2.Policy()
            answer.CopyFrom(stored)
            return answer

    def grants(
        self, email: str, role: str, pool_name: str, subject: str, attributes: Mapping[str, Any]
    ) -> bool:
        """Does `role` on the account name this federated identity? `pool_name` is
        projects/N/locations/global/workloadIdentityPools/P. Call with state.lock held."""
        base = _IAM + pool_name
        names = {f"principal:{base}/subject/{subject}", f"principalSet:{base}/*"}
        names |= {
            f"principalSet:{base}/attribute.{key.removeprefix('attribute.')}/{value}"
            for key, value in attributes.items()
            if key.startswith("attribute.")
        }
        policy = self.policies.get(email)
        if policy is None:
            return False
        matched = {
            member
            for binding in policy.bindings
            if binding.role == role
            for member in names & set(binding.members)
        }
        waiting = {m for m in matched if self.unseen.get((email, role, m), 0) > 0}
        if matched - waiting:
            return True
        for member in waiting:  # only grants not propagated yet: refused, once per check
            self.unseen[(email, role, member)] -= 1
        return False

    def members(self, email: str, role: str) -> list[str]:
        with self.state.lock:
            policy = self.policies.get(email)
            return [
                m for b in (policy.bindings if policy else []) if b.role == role for m in b.members
            ]
