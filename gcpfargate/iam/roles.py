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
from typing import Any

from gcpfargate.core.context import Context
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
    summary: str  # what the role is for, in the plan line of a dry run
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
    plan: list[str] = field(default_factory=list)  # what changed (or, in a dry run, would change)


def ensure_own(ctx: Context, spec: OwnRole) -> RoleOutcome:
    """Create the role as `spec` says, or correct its trust, managed and inline policies; no write
    when right."""
    name = spec.name
    role = get_role(ctx, name)
    if role is None:
        outcome = RoleOutcome(
            role_arn(ctx, name),
            created=True,
            changed=True,
            plan=[f"create IAM role {name} ({spec.summary})"],
        )
        if ctx.dry_run:
            return outcome
        try:
            role = ctx.aws.call(
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
            if exc.code != "EntityAlreadyExists" or (role := get_role(ctx, name)) is None:
                raise
        attached: list[str] = []
        current_inline: Any = None
    else:
        outcome = RoleOutcome(str(role["Arn"]), created=False, changed=False)
        if not spec.trusted(role.get("AssumeRolePolicyDocument", {})):
            outcome.plan.append(f"update the trust policy of role {name}")
            if not ctx.dry_run:
                ctx.aws.call(
                    "iam",
                    "update_assume_role_policy",
                    f"update the trust policy of role {name}",
                    RoleName=name,
                    PolicyDocument=json.dumps(spec.trust),
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
        current_inline = (
            get_inline_policy(ctx, name, spec.inline_name) if spec.inline is not None else None
        )
    for managed in spec.managed:
        if managed not in attached:
            outcome.plan.append(f"attach {managed} to role {name}")
            if not ctx.dry_run:
                ctx.aws.call(
                    "iam",
                    "attach_role_policy",
                    f"attach {managed} to role {name}",
                    RoleName=name,
                    PolicyArn=managed,
                )
    if spec.inline is not None and not same_statements(current_inline, spec.inline):
        outcome.plan.append(f"update policy {spec.inline_name} of role {name}")
        if not ctx.dry_run:
            put_inline_policy(ctx, name, spec.inline_name, spec.inline, spec.inline_action)
    outcome.arn = str(role["Arn"])
    outcome.changed = outcome.changed or bool(outcome.plan)
    return outcome
