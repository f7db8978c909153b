"""IAM roles: names and ARNs, reading a role and its policies, and keeping gcpfargate's own roles
right.

gcpfargate owns two kinds of role, the task execution role (`execution_role.py`) and the scheduler
role (`schedule.py`). Both are created, or corrected, here by `ensure_own` from an `OwnRole`
description; a role the user configured instead is only checked (`require_given`), never changed
(except by `bootstrap --grant`).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from gcpfargate.core import plan as planning
from gcpfargate.core.context import Context
from gcpfargate.core.plan import Change
from gcpfargate.errors import AwsError, ConfigError
from gcpfargate.iam import policy

MANAGED_BY = {"Key": "managed-by", "Value": "gcpfargate"}


def role_name_from_arn(arn: str) -> str:
    return arn.rsplit("/", 1)[-1]


def role_arn(ctx: Context, name: str) -> str:
    """The ARN of role `name` in this account, in the region's partition (aws, aws-cn, aws-iso,
    …)."""
    return f"arn:{ctx.aws.partition()}:iam::{ctx.aws.account_id}:role/{name}"


def execution_role_arn(ctx: Context) -> str:
    """task.execution_role_arn when given, else the ARN of the role bootstrap creates."""
    configured = ctx.settings.task.execution_role_arn
    return configured or role_arn(ctx, ctx.settings.execution_role_name)


def read_ahead(ctx: Context, name: str, inline_name: str | None) -> None:
    """Send `ensure_own`'s reads of role `name` ahead (AwsClients.read_ahead): the role and, when it
    exists, its attached policies and inline policy `inline_name`, with the very parameters
    ensure_own uses."""

    def policies(_: Any) -> None:
        ctx.aws.paginate_ahead(
            "iam", "list_attached_role_policies", "AttachedPolicies", RoleName=name
        )
        if inline_name:
            ctx.aws.read_ahead("iam", "get_role_policy", RoleName=name, PolicyName=inline_name)

    ctx.aws.read_ahead("iam", "get_role", then=policies, RoleName=name)


def get_role(ctx: Context, name: str) -> dict[str, Any] | None:
    found = ctx.aws.find("iam", "get_role", "NoSuchEntity", f"read IAM role {name}", RoleName=name)
    return None if found is None else dict(found["Role"])


def require_given(ctx: Context, arn: str, setting: str, hint: str) -> dict[str, Any]:
    """The role a setting (`setting`) names; a config error when it does not exist."""
    name = role_name_from_arn(arn)
    role = get_role(ctx, name)
    if role is None:
        raise ConfigError(f"{setting} names role {name}, which does not exist", hint)
    return role


def get_inline_policy(ctx: Context, role: str, policy_name: str) -> Any:
    """The document of inline policy `policy_name` of `role`; None when the role has no such
    policy."""
    found = ctx.aws.find(
        "iam",
        "get_role_policy",
        "NoSuchEntity",
        f"read policy {policy_name} of role {role}",
        RoleName=role,
        PolicyName=policy_name,
    )
    return None if found is None else found["PolicyDocument"]


def put_inline_policy(
    ctx: Context, role: str, policy_name: str, document: dict[str, Any], action: str
) -> None:
    ctx.aws.call(
        "iam",
        "put_role_policy",
        action,
        RoleName=role,
        PolicyName=policy_name,
        PolicyDocument=json.dumps(document),
    )


def role_documents(ctx: Context, name: str) -> list[Any]:
    """The role's own identity policies: inline ones and the default version of each attached
    one."""
    documents: list[Any] = []
    for policy_name in ctx.aws.paginate(
        "iam", "list_role_policies", "PolicyNames", f"list policies of {name}", RoleName=name
    ):
        document = ctx.aws.call(
            "iam",
            "get_role_policy",
            f"read policy {policy_name} of role {name}",
            RoleName=name,
            PolicyName=policy_name,
        )["PolicyDocument"]
        documents.append(document)
    for attached in ctx.aws.paginate(
        "iam",
        "list_attached_role_policies",
        "AttachedPolicies",
        f"list attached policies of {name}",
        RoleName=name,
    ):
        arn = attached["PolicyArn"]
        version = ctx.aws.call("iam", "get_policy", f"read policy {arn}", PolicyArn=arn)["Policy"][
            "DefaultVersionId"
        ]
        documents.append(
            ctx.aws.call(
                "iam", "get_policy_version", f"read policy {arn}", PolicyArn=arn, VersionId=version
            )["PolicyVersion"]["Document"]
        )
    return documents


def same_statements(first: Any, second: Any) -> bool:
    """Two policy documents (dicts, JSON or IAM's URL-encoded text; None for "no policy") say the
    same."""
    if first is None or second is None:
        return first is second
    return policy.statements([first]) == policy.statements([second])


@dataclass(frozen=True)
class OwnRole:
    """A role gcpfargate creates and keeps right: who may assume it and its one inline policy."""

    name: str
    description: str
    summary: str  # what the role is for, in the plan line of its creation
    trust: dict[str, Any]
    trusted: Callable[[Any], bool]  # whether an existing trust policy is acceptable as it is
    inline_name: str
    inline: (
        dict[str, Any] | None
    )  # None: no inline policy wanted (one that exists is left as it is)
    inline_action: str  # words for the error when putting the inline policy fails
    managed: tuple[str, ...] = ()  # AWS managed policies to attach


@dataclass
class RoleOutcome:
    arn: str
    created: bool
    changed: bool
    # The role's changes, made (or, in a preview, only recorded) on ctx.plan.
    plan: list[Change] = field(default_factory=list)
    exists: bool = True  # False: a preview of its creation (known after apply)


def ensure_own(
    ctx: Context, spec: OwnRole, shown_as: Callable[[str], str] | None = None
) -> RoleOutcome:
    """Create the role as `spec` says, or correct its trust, managed and inline policies; no write
    when right. Each change is recorded on ctx.plan; with `shown_as`, all of them as one change
    whose text it makes from the role's ARN (a command that names the role, not its policies)."""
    mark = ctx.plan.mark()
    name = spec.name
    role = get_role(ctx, name)
    steps: list[tuple[Change, Callable[[], Any]]]
    if role is None:
        # One change: the role with its policies (a new role has none of them yet).
        text = f"create IAM role {name} ({spec.summary})"
        steps = [(planning.create("IAM role", name, text), lambda: _create(ctx, spec))]
    else:
        steps = _corrections(ctx, spec, role)
    if shown_as and steps:
        arn = role_arn(ctx, name) if role is None else str(role["Arn"])
        whole = planning.Change(steps[0][0].action, "IAM role", name, shown_as(arn))
        steps = [(whole, partial(_in_turn, [write for _, write in steps]))]
    made = [ctx.plan.change(change, write) for change, write in steps]
    changes = ctx.plan.since(mark)
    if role is None:
        role = made[0]  # None in a preview: created only on apply
        arn = role_arn(ctx, name) if role is None else str(role["Arn"])
        return RoleOutcome(arn, created=True, changed=True, plan=changes, exists=role is not None)
    return RoleOutcome(str(role["Arn"]), created=False, changed=bool(changes), plan=changes)


def _in_turn(writes: list[Callable[[], Any]]) -> Any:
    """Make `writes` in turn; what the first returns."""
    made = [write() for write in writes]
    return made[0]


def _create(ctx: Context, spec: OwnRole) -> dict[str, Any]:
    """Create the role, attach its managed policies and put its inline one; the role."""
    name = spec.name
    try:
        role: dict[str, Any] = ctx.aws.call(
            "iam",
            "create_role",
            f"create IAM role {name}",
            RoleName=name,
            AssumeRolePolicyDocument=json.dumps(spec.trust),
            Description=spec.description,
            Tags=[MANAGED_BY],
        )["Role"]
    except AwsError as exc:
        # Created meanwhile by another run (two deploys at once): use it; attaching and putting
        # the policies below are idempotent, so doing them again is harmless.
        found = get_role(ctx, name) if exc.code == "EntityAlreadyExists" else None
        if found is None:
            raise
        role = found
    for managed in spec.managed:
        _attach(ctx, name, managed)
    if spec.inline is not None:
        put_inline_policy(ctx, name, spec.inline_name, spec.inline, spec.inline_action)
    return role


def _corrections(
    ctx: Context, spec: OwnRole, role: dict[str, Any]
) -> list[tuple[Change, Callable[[], Any]]]:
    """What an existing role needs to be as `spec` says, each change with its write (read-only)."""
    name = spec.name
    steps: list[tuple[Change, Callable[[], Any]]] = []
    if not spec.trusted(role.get("AssumeRolePolicyDocument", {})):
        text = f"update the trust policy of role {name}"
        steps.append(
            (
                planning.update("IAM role", name, text),
                lambda: ctx.aws.call(
                    "iam",
                    "update_assume_role_policy",
                    text,
                    RoleName=name,
                    PolicyDocument=json.dumps(spec.trust),
                ),
            )
        )
    attached = (
        [
            p["PolicyArn"]
            for p in ctx.aws.paginate(
                "iam",
                "list_attached_role_policies",
                "AttachedPolicies",
                f"list policies of role {name}",
                RoleName=name,
            )
        ]
        if spec.managed
        else []
    )
    for managed in spec.managed:
        if managed not in attached:
            text = f"attach {managed} to role {name}"
            steps.append(
                (
                    planning.update("IAM role", name, text, after=managed),
                    partial(_attach, ctx, name, managed),
                )
            )
    if spec.inline is not None:
        current = get_inline_policy(ctx, name, spec.inline_name)
        if not same_statements(current, spec.inline):
            inline = spec.inline
            steps.append(
                (
                    planning.update(
                        "IAM role", name, f"update policy {spec.inline_name} of role {name}"
                    ),
                    lambda: put_inline_policy(
                        ctx, name, spec.inline_name, inline, spec.inline_action
                    ),
                )
            )
    return steps


def _attach(ctx: Context, name: str, managed: str) -> None:
    ctx.aws.call(
        "iam",
        "attach_role_policy",
        f"attach {managed} to role {name}",
        RoleName=name,
        PolicyArn=managed,
    )
