"""The ECS task execution role: the identity that reads the secret when a task starts.

The manual recipe forgets it; a task then fails at start with ResourceInitializationError. Here
the role is created or corrected (when gcpfargate owns it) or judged from its own policies (when
the user brought one), and `--grant` adds the one inline policy it needs.
"""

from __future__ import annotations

from dataclasses import dataclass

from gcpfargate.core.context import Context
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
    """Make sure an execution role can read `secret_arn`; create gcpfargate's own role when none is configured."""
    configured = ctx.settings.task.execution_role_arn
    if configured:
        return _check_given(ctx, configured, secret_arn, kms_key_arn, grant)
    name = ctx.settings.execution_role_name
    # Keyless mode (secret_arn ""): no secret to read, so the inline policy is neither added nor removed.
    inline = policy.secret_access_policy(secret_arn, kms_key_arn) if secret_arn else None
    own = roles.ensure_own(
        ctx,
        roles.OwnRole(
            name=name,
            description="ECS task execution role managed by gcpfargate",
            summary=f"trusts {policy.ECS_TASKS_PRINCIPAL}"
            + ("; may read the secret" if secret_arn else ""),
            trust=policy.trust_policy(),
            trusted=lambda document: policy.trusts(document, policy.ECS_TASKS_PRINCIPAL),
            inline_name=policy.INLINE_POLICY_NAME,
            inline=inline,
            inline_action=f"grant role {name} read access to the secret",
            managed=(managed_policy_arn(ctx),),
        ),
    )
    return RoleResult(arn=own.arn, changed=own.changed)


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
    if not ctx.dry_run:
        name = roles.role_name_from_arn(role_arn)
        roles.put_inline_policy(
            ctx,
            name,
            policy.INLINE_POLICY_NAME,
            policy.secret_access_policy(secret_arn, kms_key_arn),
            f"grant role {name} read access to the secret",
        )
    return RoleResult(
        arn=role_arn,
        changed=True,
        judgement=policy.Judgement(policy.Decision.ALLOWED, "granted by --grant"),
    )
