"""The ECS task execution role: the identity that reads the secret when a task starts.

The manual recipe forgets it; a task then fails at start with ResourceInitializationError. Here
the role is created or corrected (when gcpfargate owns it) or judged from its own policies (when
the user brought one), and `--grant` adds the one inline policy it needs.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from gcpfargate.core import policy
from gcpfargate.core.context import Context
from gcpfargate.errors import AwsError, ConfigError


@dataclass(frozen=True)
class RoleResult:
    arn: str
    changed: bool
    judgement: policy.Judgement | None = None  # for a user-supplied role


def role_name_from_arn(arn: str) -> str:
    return arn.rsplit("/", 1)[-1]


def managed_policy_arn(ctx: Context) -> str:
    return f"arn:{ctx.aws.partition()}:iam::aws{policy.EXECUTION_ROLE_POLICY_ARN_SUFFIX}"


def _get_role(ctx: Context, name: str) -> dict[str, Any] | None:
    try:
        return ctx.aws.call("iam", "get_role", f"read IAM role {name}", RoleName=name)["Role"]
    except AwsError as exc:
        if exc.code == "NoSuchEntity":
            return None
        raise


def role_documents(ctx: Context, name: str) -> list[Any]:
    """The role's own identity policies: inline ones and the default version of each attached one."""
    documents: list[Any] = []
    for policy_name in ctx.aws.paginate("iam", "list_role_policies", "PolicyNames", f"list policies of {name}",
                                        RoleName=name):
        document = ctx.aws.call("iam", "get_role_policy", f"read policy {policy_name} of role {name}",
                                RoleName=name, PolicyName=policy_name)["PolicyDocument"]
        documents.append(document)
    for attached in ctx.aws.paginate("iam", "list_attached_role_policies", "AttachedPolicies",
                                     f"list attached policies of {name}", RoleName=name):
        arn = attached["PolicyArn"]
        version = ctx.aws.call("iam", "get_policy", f"read policy {arn}", PolicyArn=arn)["Policy"]["DefaultVersionId"]
        documents.append(ctx.aws.call("iam", "get_policy_version", f"read policy {arn}", PolicyArn=arn,
                                      VersionId=version)["PolicyVersion"]["Document"])
    return documents


def judge_secret_access(ctx: Context, role_arn: str, secret_arn: str, kms_key_arn: str = "") -> policy.Judgement:
    documents = role_documents(ctx, role_name_from_arn(role_arn))
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
    return _ensure_own(ctx, secret_arn, kms_key_arn)


def _check_given(ctx: Context, role_arn: str, secret_arn: str, kms_key_arn: str, grant: bool) -> RoleResult:
    name = role_name_from_arn(role_arn)
    if _get_role(ctx, name) is None:
        raise ConfigError(f"task.execution_role_arn names role {name}, which does not exist",
                          "Fix the ARN, or leave it empty so bootstrap creates its own role")
    verdict = judge_secret_access(ctx, role_arn, secret_arn, kms_key_arn)
    if verdict.allowed or not grant:
        return RoleResult(arn=role_arn, changed=False, judgement=verdict)
    if not ctx.dry_run:
        _put_inline(ctx, name, secret_arn, kms_key_arn)
    return RoleResult(arn=role_arn, changed=True,
                      judgement=policy.Judgement(policy.Decision.ALLOWED, "granted by --grant"))


def _ensure_own(ctx: Context, secret_arn: str, kms_key_arn: str) -> RoleResult:
    name = ctx.settings.execution_role_name
    changed = False
    role = _get_role(ctx, name)
    trust = json.dumps(policy.trust_policy())
    if role is None:
        changed = True
        if ctx.dry_run:
            arn = f"arn:{ctx.aws.partition()}:iam::{ctx.aws.account_id}:role/{name}"
            return RoleResult(arn=arn, changed=True)
        try:
            role = ctx.aws.call("iam", "create_role", f"create IAM role {name}", RoleName=name,
                                AssumeRolePolicyDocument=trust,
                                Description="ECS task execution role managed by gcpfargate",
                                Tags=[{"Key": "managed-by", "Value": "gcpfargate"}])["Role"]
        except AwsError as exc:
            # Created meanwhile by another run (two deploys at once): use it; attaching and putting the
            # policies below are idempotent, so doing them again is harmless.
            if exc.code != "EntityAlreadyExists" or (role := _get_role(ctx, name)) is None:
                raise
        attached: list[str] = []
        inline_document: Any = None
    else:
        if not policy.trusts_ecs_tasks(role.get("AssumeRolePolicyDocument", {})):
            changed = True
            if not ctx.dry_run:
                ctx.aws.call("iam", "update_assume_role_policy", f"update the trust policy of role {name}",
                             RoleName=name, PolicyDocument=trust)
        attached = [p["PolicyArn"] for p in ctx.aws.paginate(
            "iam", "list_attached_role_policies", "AttachedPolicies", f"list policies of role {name}", RoleName=name)]
        inline_document = _get_inline(ctx, name)
    managed = managed_policy_arn(ctx)
    if managed not in attached:
        changed = True
        if not ctx.dry_run:
            ctx.aws.call("iam", "attach_role_policy", f"attach {managed} to role {name}", RoleName=name,
                         PolicyArn=managed)
    wanted = policy.secret_access_policy(secret_arn, kms_key_arn)
    if _normalise(inline_document) != _normalise(wanted):
        changed = True
        if not ctx.dry_run:
            _put_inline(ctx, name, secret_arn, kms_key_arn)
    return RoleResult(arn=role["Arn"], changed=changed)


def _get_inline(ctx: Context, name: str) -> Any:
    try:
        return ctx.aws.call("iam", "get_role_policy", f"read the inline policy of role {name}", RoleName=name,
                            PolicyName=policy.INLINE_POLICY_NAME)["PolicyDocument"]
    except AwsError as exc:
        if exc.code == "NoSuchEntity":
            return None
        raise


def _put_inline(ctx: Context, name: str, secret_arn: str, kms_key_arn: str) -> None:
    ctx.aws.call("iam", "put_role_policy", f"grant role {name} read access to the secret", RoleName=name,
                 PolicyName=policy.INLINE_POLICY_NAME,
                 PolicyDocument=json.dumps(policy.secret_access_policy(secret_arn, kms_key_arn)))


def _normalise(document: Any) -> Any:
    if document is None:
        return None
    return policy.statements([document])
