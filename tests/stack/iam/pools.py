"""Workload identity pools and providers: IAM REST v1, long-running operations, soft delete.

Routes (https://cloud.google.com/iam/docs/reference/rest/v1/projects.locations.workloadIdentityPools
and `.providers`), PROJECT being the project id or number, answers naming the project NUMBER:
  POST   /v1/projects/P/locations/global/workloadIdentityPools?workloadIdentityPoolId=ID   create
  GET    /v1/projects/P/locations/global/workloadIdentityPools[?showDeleted=true]          list
  GET | DELETE  .../workloadIdentityPools/ID            get / soft delete
  POST   .../workloadIdentityPools/ID:undelete
  POST   .../workloadIdentityPools/ID/providers?workloadIdentityPoolProviderId=V          create
  GET | DELETE | PATCH(updateMask)  .../providers/V; POST .../providers/V:undelete; GET
  .../providers GET    .../operations/OP                                 long-running operation
Rules kept: ids are 4-32 of [a-z0-9-] and may not start with "gcp-"; a deleted pool or provider
stays (state DELETED, expireTime 30 days on) and blocks its id until purged, so a re-create gets 409
and `:undelete` is the way back; a provider cannot be created under a deleted pool; an AWS provider
needs a 12-digit accountId and gets Google's default AWS mapping when none is given; mappings and
conditions must be valid CEL. Every mutation answers an Operation that reports `done` only after
`operation_polls` GETs (knob), so callers must poll as with the real API.
"""

from __future__ import annotations

import datetime as dt
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import grpc

from tests.stack.iam import cel_oracle, rest
from tests.stack.iam.admin_http import HttpRequest
from tests.stack.iam.errors import RpcFailure

if TYPE_CHECKING:
    from tests.stack.iam.emulator import IamEmulator

PREFIX = "/v1/projects/"
# Documented: "Deleted pools ... can be undeleted within 30 days".
SOFT_DELETE = dt.timedelta(days=30)
_ID = re.compile(r"[a-z0-9-]{4,32}")
_PATH = re.compile(
    r"^/v1/projects/([^/]+)/locations/global/workloadIdentityPools"
    r"(?:/([^/:]+)(?:/providers(?:/([^/:]+))?)?(?:/operations/([^/:]+))?)?(:undelete)?$"
)
# Google's default for AWS providers
# (https://cloud.google.com/iam/docs/workload-identity-federation-with-other-clouds).
DEFAULT_AWS_MAPPING = {
    "google.subject": "assertion.arn",
    "attribute.aws_role": (
        "assertion.arn.contains('assumed-role') ? "
        "assertion.arn.extract('{account_arn}assumed-role/') + 'assumed-role/' + "
        "assertion.arn.extract('assumed-role/{role_name}/') : assertion.arn"
    ),
}
# Illustrative texts (shape of Google's INVALID_ARGUMENT / FAILED_PRECONDITION answers; not quoted).
MSG_BAD_ID = (
    "The {what} id {id!r} is invalid: it must be 4 to 32 lowercase letters, digits or hyphens."
)
MSG_BAD_ACCOUNT = "aws.accountId must be a 12-digit AWS account ID."
MSG_BAD_CEL = "Invalid CEL expression in {where}: {why}"
MSG_POOL_DELETED = "The workload identity pool {name} is deleted."
MSG_NOT_DELETED = "The {what} {name} is not deleted."


def project_number(project_id: str) -> str:
    """A stable 12-digit project number for a project id (real numbers are decimal, 12 digits)."""
    import hashlib

    return str(
        100000000000 + int(hashlib.sha256(project_id.encode()).hexdigest(), 16) % 900000000000
    )


def _utc(when: dt.datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass
class Provider:
    name: str
    display_name: str = ""
    description: str = ""
    disabled: bool = False
    attribute_mapping: dict[str, str] = field(default_factory=dict)
    attribute_condition: str = ""
    aws_account_id: str = ""
    deleted_at: dt.datetime | None = None
    # Knob: token exchanges this new provider still refuses as unknown (Pools.provider_refusals).
    unseen: int = 0

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "name": self.name,
            "displayName": self.display_name,
            "description": self.description,
            "state": "DELETED" if self.deleted_at else "ACTIVE",
            "disabled": self.disabled,
            "attributeMapping": dict(self.attribute_mapping),
            "aws": {"accountId": self.aws_account_id},
        }
        if self.attribute_condition:
            body["attributeCondition"] = self.attribute_condition
        if self.deleted_at:
            body["expireTime"] = _utc(self.deleted_at + SOFT_DELETE)
        return body


@dataclass
class Pool:
    name: str
    display_name: str = ""
    description: str = ""
    disabled: bool = False
    deleted_at: dt.datetime | None = None
    providers: dict[str, Provider] = field(default_factory=dict)

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "name": self.name,
            "displayName": self.display_name,
            "description": self.description,
            "state": "DELETED" if self.deleted_at else "ACTIVE",
            "disabled": self.disabled,
        }
        if self.deleted_at:
            body["expireTime"] = _utc(self.deleted_at + SOFT_DELETE)
        return body


@dataclass
class Operation:
    name: str
    response: dict[str, Any]
    polls_left: int


class Pools:
    """Pools by (project number, pool id); shares the emulator's lock, counters and knobs."""

    def __init__(self, emulator: IamEmulator) -> None:
        self.emu = emulator
        self.pools: dict[tuple[str, str], Pool] = {}
        self.operations: dict[str, Operation] = {}
        self.project_ids: dict[str, str] = {}  # number -> id, for the knobs keyed by project id
        self.operation_polls = 1
        # Knob: a provider created from now on is unknown to Google STS for its first N exchanges
        # (invalid_target, as for a provider that does not exist): Google documents that a new
        # pool or provider "can take several minutes" before tokens can be exchanged
        # (cloud.google.com/iam/docs/workload-identity-federation-with-other-clouds). Counted, not
        # timed, so a test sees the same refusals on any machine.
        self.provider_refusals = 0

    # -------------------------------------------------------------- look-ups (hold the lock)
    def number(self, project: str) -> str:
        if project.isdigit():
            return project
        number = project_number(project)
        self.project_ids[number] = project
        return number

    def pool(self, project: str, pool_id: str, *, deleted_ok: bool = True) -> Pool:
        pool = self.pools.get((self.number(project), pool_id))
        if pool is None or (pool.deleted_at and not deleted_ok):
            raise rest.not_found()
        return pool

    def provider_by_audience(self, audience: str) -> tuple[Pool, Provider] | None:
        """The ACTIVE, enabled pool and provider an STS audience names, or None."""
        match = re.fullmatch(
            r"//iam\.googleapis\.com/projects/(\d+)/locations/global/"
            r"workloadIdentityPools/([^/]+)/providers/([^/]+)",
            audience,
        )
        if match is None:
            return None
        pool = self.pools.get((match.group(1), match.group(2)))
        provider = pool.providers.get(match.group(3)) if pool else None
        if pool is None or provider is None or pool.deleted_at or provider.deleted_at:
            return None
        return None if pool.disabled or provider.disabled else (pool, provider)

    # -------------------------------------------------------------- HTTP
    def route(self, request: HttpRequest) -> tuple[int, Any] | None:
        match = _PATH.match(request.path)
        if match is None:
            return None  # another surface under /v1/projects/ (or a 404)
        project, pool_id, provider_id, operation, undelete = match.groups()
        with self.emu.state.lock:
            number = self.number(project)
            project_id = self.project_ids.get(number, project)
        kind = (
            "WorkloadIdentityPoolProvider"
            if "/providers" in request.path
            else "WorkloadIdentityPool"
        )
        method, impl = self._dispatch(
            request, kind, number, pool_id, provider_id, operation, bool(undelete)
        )
        return rest.call(self.emu.state, self.emu.knobs, method, project_id, impl)

    def _dispatch(
        self,
        request: HttpRequest,
        kind: str,
        number: str,
        pool_id: str | None,
        provider_id: str | None,
        operation: str | None,
        undelete: bool,
    ) -> tuple[str, Callable[[], Any]]:
        verb = request.method
        query = {k: v[0] for k, v in request.query.items()}
        if operation is not None and verb == "GET":
            return f"Get{kind}Operation", lambda: self._poll(request.path.removeprefix("/v1/"))
        if pool_id is None or (kind.endswith("Provider") and provider_id is None):
            if verb == "POST":
                return f"Create{kind}", lambda: self._create(request, number, pool_id, query)
            if verb == "GET":
                return f"List{kind}s", lambda: self._list(number, pool_id, query)
        elif undelete and verb == "POST":
            return f"Undelete{kind}", lambda: self._set_deleted(number, pool_id, provider_id, False)
        elif verb == "GET":
            return f"Get{kind}", lambda: self._get(number, pool_id, provider_id).body()
        elif verb == "DELETE":
            return f"Delete{kind}", lambda: self._set_deleted(number, pool_id, provider_id, True)
        elif verb == "PATCH" and provider_id is not None:
            return f"Update{kind}", lambda: self._patch(
                request, number, pool_id, provider_id, query
            )
        return f"Unknown{kind}", self._unknown

    @staticmethod
    def _unknown() -> Any:
        raise rest.not_found()

    def _get(self, number: str, pool_id: str, provider_id: str | None) -> Pool | Provider:
        with self.emu.state.lock:
            pool = self.pool(number, pool_id)
            if provider_id is None:
                return pool
            provider = pool.providers.get(provider_id)
            if provider is None:
                raise rest.not_found()
            return provider

    def _operation(self, resource_name: str, response: dict[str, Any]) -> dict[str, Any]:
        name = f"{resource_name}/operations/{secrets.token_hex(12)}"
        self.operations[name] = Operation(name, response, self.operation_polls)
        body: dict[str, Any] = {"name": name}
        if self.operation_polls <= 0:
            body.update(done=True, response=response)
        return body

    def _poll(self, name: str) -> dict[str, Any]:
        with self.emu.state.lock:
            operation = self.operations.get(name)
            if operation is None:
                raise rest.not_found()
            operation.polls_left -= 1
            if operation.polls_left > 0:
                return {"name": name}
            return {"name": name, "done": True, "response": operation.response}

    def _list(self, number: str, pool_id: str | None, query: dict[str, str]) -> dict[str, Any]:
        show_deleted = query.get("showDeleted") == "true"
        with self.emu.state.lock:
            if pool_id is None:
                items: list[Pool | Provider] = [
                    p for (n, _), p in sorted(self.pools.items()) if n == number
                ]
                key = "workloadIdentityPools"
            else:
                items = list(self.pool(number, pool_id).providers.values())
                key = "workloadIdentityPoolProviders"
            return {key: [i.body() for i in items if show_deleted or not i.deleted_at]}

    def _create(
        self, request: HttpRequest, number: str, pool_id: str | None, query: dict[str, str]
    ) -> Any:
        body = request.json()
        what = "workload identity pool provider" if pool_id else "workload identity pool"
        new_id = query.get(
            "workloadIdentityPoolProviderId" if pool_id else "workloadIdentityPoolId", ""
        )
        if not _ID.fullmatch(new_id) or new_id.startswith("gcp-"):
            raise rest.invalid(MSG_BAD_ID.format(what=what, id=new_id))
        base = f"projects/{number}/locations/global/workloadIdentityPools"
        with self.emu.state.lock:
            if pool_id is None:
                if (number, new_id) in self.pools:
                    raise RpcFailure(grpc.StatusCode.ALREADY_EXISTS, rest.MSG_ALREADY_EXISTS)
                pool = Pool(
                    f"{base}/{new_id}",
                    str(body.get("displayName", "")),
                    str(body.get("description", "")),
                    bool(body.get("disabled", False)),
                )
                self.pools[(number, new_id)] = pool
                return self._operation(pool.name, pool.body())
            pool = self.pool(number, pool_id)
            if pool.deleted_at:
                raise RpcFailure(
                    grpc.StatusCode.FAILED_PRECONDITION, MSG_POOL_DELETED.format(name=pool.name)
                )
            if new_id in pool.providers:
                raise RpcFailure(grpc.StatusCode.ALREADY_EXISTS, rest.MSG_ALREADY_EXISTS)
            provider = Provider(
                f"{pool.name}/providers/{new_id}",
                str(body.get("displayName", "")),
                str(body.get("description", "")),
                bool(body.get("disabled", False)),
            )
            self._apply_provider_fields(
                provider, body, ("aws", "attributeMapping", "attributeCondition")
            )
            provider.unseen = self.provider_refusals
            pool.providers[new_id] = provider
            return self._operation(provider.name, provider.body())

    def _apply_provider_fields(
        self, provider: Provider, body: dict[str, Any], fields: tuple[str, ...]
    ) -> None:
        if "aws" in fields:
            account = str((body.get("aws") or {}).get("accountId", ""))
            if not re.fullmatch(r"\d{12}", account):
                raise rest.invalid(MSG_BAD_ACCOUNT)
            provider.aws_account_id = account
        if "attributeMapping" in fields:
            mapping = {
                str(k): str(v)
                for k, v in (body.get("attributeMapping") or DEFAULT_AWS_MAPPING).items()
            }
            for target, expression in mapping.items():
                try:
                    cel_oracle.check(expression, ("assertion",))
                except cel_oracle.CelRefused as exc:
                    raise rest.invalid(
                        MSG_BAD_CEL.format(where=f"attributeMapping[{target}]", why=exc)
                    ) from None
            provider.attribute_mapping = mapping
        if "attributeCondition" in fields:
            condition = str(body.get("attributeCondition") or "")
            try:
                cel_oracle.check(condition) if condition else None
            except cel_oracle.CelRefused as exc:
                raise rest.invalid(
                    MSG_BAD_CEL.format(where="attributeCondition", why=exc)
                ) from None
            provider.attribute_condition = condition
        for name, attr in (
            ("displayName", "display_name"),
            ("description", "description"),
            ("disabled", "disabled"),
        ):
            if name in fields and name in body:
                setattr(provider, attr, body[name])

    def _patch(
        self,
        request: HttpRequest,
        number: str,
        pool_id: str,
        provider_id: str,
        query: dict[str, str],
    ) -> Any:
        fields = tuple(f.strip() for f in query.get("updateMask", "").split(",") if f.strip())
        known = (
            "displayName",
            "description",
            "disabled",
            "attributeMapping",
            "attributeCondition",
            "aws",
        )
        if not fields or any(f not in known for f in fields):
            raise rest.invalid("updateMask must list fields to update: " + ", ".join(known))
        with self.emu.state.lock:
            provider = self._get(number, pool_id, provider_id)
            assert isinstance(provider, Provider)
            if provider.deleted_at:
                raise rest.not_found()
            self._apply_provider_fields(provider, request.json(), fields)
            return self._operation(provider.name, provider.body())

    def _set_deleted(self, number: str, pool_id: str, provider_id: str | None, delete: bool) -> Any:
        with self.emu.state.lock:
            resource = self._get(number, pool_id, provider_id)
            if delete and resource.deleted_at:
                raise rest.not_found()  # deleting a deleted resource: it is not there any more
            if not delete and not resource.deleted_at:
                what = (
                    "workload identity pool"
                    if provider_id is None
                    else "workload identity pool provider"
                )
                raise RpcFailure(
                    grpc.StatusCode.FAILED_PRECONDITION,
                    MSG_NOT_DELETED.format(what=what, name=resource.name),
                )
            resource.deleted_at = dt.datetime.now(dt.UTC) if delete else None
            return self._operation(resource.name, resource.body())
