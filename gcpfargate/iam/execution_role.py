"""The ECS task execution role: the identity that reads the secret when a task starts.

The manual recipe forgets it; a task then fails at start with ResourceInitializationError. Here
the role is created or corrected (when gcpfargate owns it) or judged from its own policies (when
the user brought one), and `--grant` adds the one inline policy it needs.

IAM roles are global while secrets are regional: the same family deployed in two regions (or
two secrets) shares one role. So each secret gets an inline policy of its own
(`policy.secret_policy_name`), written only by deploys of that secret; another secret's policy is
removed only once the secret it names no longer exists.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Any

from gcpfargate.core import plan as planning
from gcpfargate.core.context import Context
from gcpfargate.errors import AwsError
from gcpfargate.iam import policy, roles


@dataclass(frozen=True)
class RoleResult:
    arn: str
    changed: bool
    judgement: policy.Judgement | None = None  # for a user-supplied role


def managed_policy_arn(ctx: Context) -> str:
    return f"arn:{ctx.aws.partition()}:iam::aws{policy.EXECUTION_ROLE_POLICY_ARN_SUFFIX}"


def judge_secret_access(
    ctx: Context, role_arn: str, secret_arn: str, kms_key_arn: str = ""
) -> policy.Judgement:
    documents = roles.role_documents(ctx, roles.role_name_from_arn(role_arn))
    verdict = policy.judge(documents, "secretsmanager:GetSecretValue", secret_arn)
    if verdict.allowed and kms_key_arn:
        kms = policy.judge(documents, "kms:Decrypt", kms_key_arn)
        if not kms.allowed:
            return kms
    return verdict


def ensure(ctx: Context, secret_arn: str, kms_key_arn: str = "", grant: bool = False) -> RoleResult:
    """Make sure an execution role can read `secret_arn`; create gcpfargate's own role when none is
    configured."""
    configured = ctx.settings.task.execution_role_arn
    if configured:
        return _check_given(ctx, configured, secret_arn, kms_key_arn, grant)
    name = ctx.settings.execution_role_name
    # Keyless mode (secret_arn ""): no secret to read, so the inline policy is neither added nor
    # removed.
    inline = policy.secret_access_policy(secret_arn, kms_key_arn) if secret_arn else None
    inline_name = secret_policy_name(ctx, secret_arn)
    own = roles.ensure_own(
        ctx,
        roles.OwnRole(
            name=name,
            description="ECS task execution role managed by gcpfargate",
            summary=f"trusts {policy.ECS_TASKS_PRINCIPAL}"
            + ("; may read the secret" if secret_arn else ""),
            trust=policy.trust_policy(),
            trusted=lambda document: policy.trusts(document, policy.ECS_TASKS_PRINCIPAL),
            inline_name=inline_name,
            inline=inline,
            inline_action=f"grant role {name} read access to the secret",
            managed=(managed_policy_arn(ctx),),
        ),
        shown_as=lambda arn: f"create or update execution role {arn}",
    )
    if inline is not None and own.changed and own.exists:
        tidy(ctx, name, inline_name)
    return RoleResult(arn=own.arn, changed=own.changed)


def secret_policy_name(ctx: Context, secret_arn: str) -> str:
    """The inline policy of this secret (before it exists, of the configured name in this
    region)."""
    region, name = policy.secret_of_arn(secret_arn)
    if not region:
        region, name = ctx.aws.region, ctx.settings.secret_name
    return policy.secret_policy_name(region, name)


def tidy(ctx: Context, role: str, keep: str) -> None:
    """After writing policy `keep`: split the older single policy into one per secret, and remove
    policies of this region whose secret no longer exists. Never touches another region's policy:
    only a deploy there can tell whether its secret still exists."""
    names = ctx.aws.paginate(
        "iam", "list_role_policies", "PolicyNames", f"list policies of {role}", RoleName=role
    )
    region = ctx.aws.region
    for name in names:
        if name == keep:
            continue
        if name == policy.INLINE_POLICY_NAME:
            document = roles.get_inline_policy(ctx, role, name)
            for arn in policy.secret_arns(document) if document is not None else []:
                slot = policy.secret_policy_name(*policy.secret_of_arn(arn))
                if slot in (keep, *names) or not _exists(ctx, arn, region):
                    continue
                ctx.plan.change(
                    planning.update("IAM role", role, f"move the grant of {arn} to policy {slot}"),
                    partial(
                        roles.put_inline_policy,
                        ctx,
                        role,
                        slot,
                        _as_dict(document),
                        f"keep role {role}'s grant of {arn}",
                    ),
                )
            _delete(ctx, role, name, "split into one policy per secret")
        elif name.startswith(f"{policy.SECRET_POLICY_PREFIX}{region}-"):
            document = roles.get_inline_policy(ctx, role, name)
            arns = policy.secret_arns(document) if document is not None else []
            if arns and not any(_exists(ctx, arn, region) for arn in arns):
                _delete(ctx, role, name, "its secret no longer exists")


def _exists(ctx: Context, arn: str, region: str) -> bool:
    """False only when Secrets Manager says the secret is gone; anything unsure counts as there."""
    secret_region, _ = policy.secret_of_arn(arn)
    if secret_region != region or arn.split(":")[4] != ctx.aws.account_id:
        return True
    try:
        found = ctx.aws.find(
            "secretsmanager",
            "describe_secret",
            "ResourceNotFoundException",
            f"read secret {arn}",
            SecretId=arn,
        )
    except AwsError:
        return True
    return found is not None


def _as_dict(document: Any) -> dict[str, Any]:
    return {"Version": "2012-10-17", "Statement": policy.statements([document])}


def _delete(ctx: Context, role: str, name: str, why: str) -> None:
    text = f"remove policy {name} of role {role} ({why})"
    ctx.plan.change(planning.update("IAM role", role, text), partial(_remove, ctx, role, name))


def _remove(ctx: Context, role: str, name: str) -> None:
    try:
        ctx.aws.call(
            "iam",
            "delete_role_policy",
            f"remove policy {name} of role {role}",
            RoleName=role,
            PolicyName=name,
        )
    except AwsError as exc:
        ctx.reporter.detail(f"could not remove policy {name} of role {role} ({exc.message})")


def _check_given(
    ctx: Context, role_arn: str, secret_arn: str, kms_key_arn: str, grant: bool
) -> RoleResult:
    roles.require_given(
        ctx,
        role_arn,
        "task.execution_role_arn",
        "Fix the ARN, or leave it empty so bootstrap creates its own role",
    )
    if (
        not secret_arn
    ):  # keyless mode: the role pulls the image and writes logs, nothing more to judge
        return RoleResult(arn=role_arn, changed=False)
    verdict = judge_secret_access(ctx, role_arn, secret_arn, kms_key_arn)
    if verdict.allowed or not grant:
        return RoleResult(arn=role_arn, changed=False, judgement=verdict)
    name = roles.role_name_from_arn(role_arn)
    ctx.plan.change(
        planning.update("IAM role", name, f"create or update execution role {role_arn}"),
        partial(
            roles.put_inline_policy,
            ctx,
            name,
            secret_policy_name(ctx, secret_arn),
            policy.secret_access_policy(secret_arn, kms_key_arn),
            f"grant role {name} read access to the secret",
        ),
    )
    return RoleResult(
        arn=role_arn,
        changed=True,
        judgement=policy.Judgement(policy.Decision.ALLOWED, "granted by --grant"),
    )
