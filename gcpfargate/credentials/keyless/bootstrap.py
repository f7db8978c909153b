"""Keyless mode (`gcp.auth = "keyless"`): the names it uses and `bootstrap` for it.

No key exists anywhere. The task runs with a task role `gcpfargate-<family>-task`; a workload
identity pool `gcpfargate` with an AWS provider `aws-<account>` (its attribute condition admits only
this account's gcpfargate task roles) turns that role's signed GetCallerIdentity into a federated
token; `roles/iam.workloadIdentityUser` on the service account for the role's principal set lets
that token impersonate the account. Bootstrap creates or repairs each piece, undeletes a
soft-deleted pool or provider, and writes nothing when all is in place. Design notes:
../shared/KEYLESS.md (summarised in README "Keyless").
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from gcpfargate.core import plan as planning
from gcpfargate.core.context import Context
from gcpfargate.core.plan import Change
from gcpfargate.core.results import NOT_SHOWN, PlannedResult
from gcpfargate.credentials.key import keys
from gcpfargate.credentials.keyless import retire as keyless_retire
from gcpfargate.credentials.keyless import services
from gcpfargate.errors import GcpError
from gcpfargate.iam import execution_role, policy, roles
from gcpfargate.settings import own_role_name

POOL_ID = "gcpfargate"
WORKLOAD_IDENTITY_USER = "roles/iam.workloadIdentityUser"
# Google STS refuses an exchange whose mapped google.subject exceeds 127 bytes ("Troubleshoot
# Workload Identity Federation"). Google's default AWS mapping (`google.subject = assertion.arn`)
# is 39 bytes of ARN prefix + role + "/" + session, and ECS names each task's session by its
# 32-hex task id, so long families went over. The subject here is "<role>/<session>" instead (the
# provider already pins the account); with task role names of at most 62 characters and AWS's
# 64-character session names (RoleSessionName) it is at most 127 bytes for any session.
SUBJECT_MAX_BYTES = 127
SESSION_NAME_MAX = 64  # sts:AssumeRole RoleSessionName, botocore's roleSessionNameType
TASK_ROLE_NAME_MAX = SUBJECT_MAX_BYTES - 1 - SESSION_NAME_MAX
LOCAL_TRUST_SID = "GcpfargateRunLocal"  # the trust statement gcp.local_principal adds
ECS_SESSION_EXAMPLE = "0123456789abcdef0123456789abcdef"  # ECS's shape: the task id, 32 hex
# Written out (not left to Google's default) so `doctor` can evaluate it
# (https://cloud.google.com/iam/docs/workload-identity-federation-with-other-clouds).
AWS_MAPPING = {
    "google.subject": (
        "assertion.arn.contains('assumed-role') ? "
        "assertion.arn.extract('assumed-role/{role_and_session}') : assertion.arn"
    ),
    "attribute.aws_role": (
        "assertion.arn.contains('assumed-role') ? "
        "assertion.arn.extract('{account_arn}assumed-role/') + 'assumed-role/' + "
        "assertion.arn.extract('assumed-role/{role_name}/') : assertion.arn"
    ),
}
MAX_POLICY_ATTEMPTS = 3  # read-modify-write of the IAM policy, retried when the etag lost a race
# The kinds of resource in keyless bootstrap's changes.
POOL, PROVIDER = "workload identity pool", "workload identity provider"
BINDING = "service account IAM policy"


def task_role_name(family: str) -> str:
    """`gcpfargate-<family>-task`, shortened like the other roles gcpfargate owns, and to
    TASK_ROLE_NAME_MAX so every session's google.subject fits Google's limit."""
    return own_role_name(family, "task", TASK_ROLE_NAME_MAX)


def provider_id(account_id: str) -> str:
    return f"aws-{account_id}"


def pool_name(project: str) -> str:
    return f"projects/{project}/locations/global/workloadIdentityPools/{POOL_ID}"


def attribute_condition(partition: str, account_id: str) -> str:
    """Only this account's gcpfargate task roles (gcpfargate-<family>-task) may federate."""
    prefix = f"arn:{partition}:sts::{account_id}:assumed-role/gcpfargate-"
    return f"attribute.aws_role.startsWith('{prefix}') && attribute.aws_role.endsWith('-task')"


def role_session_prefix(partition: str, account_id: str, role: str) -> str:
    """What `attribute.aws_role` is for every session of `role`."""
    return f"arn:{partition}:sts::{account_id}:assumed-role/{role}"


def principal_set(project_number: str, aws_role: str) -> str:
    return (
        f"principalSet://iam.googleapis.com/projects/{project_number}/locations/global/"
        f"workloadIdentityPools/{POOL_ID}/attribute.aws_role/{aws_role}"
    )


def task_role_trust(account_id: str, local_principal: str = "") -> dict[str, Any]:
    # aws:SourceAccount keeps another account's ECS from assuming the role (confused deputy;
    # "Task IAM role" in the ECS developer guide).
    statements: list[dict[str, Any]] = [
        {
            "Effect": "Allow",
            "Principal": {"Service": policy.ECS_TASKS_PRINCIPAL},
            "Action": "sts:AssumeRole",
            "Condition": {"StringEquals": {"aws:SourceAccount": account_id}},
        }
    ]
    if local_principal:
        # Only when asked (gcp.local_principal): the principal's account as Principal, narrowed by
        # aws:PrincipalArn, so a role or user that is deleted and recreated keeps working and a
        # wildcard (SSO role paths) can be written ("IAM JSON policy elements: Principal",
        # "AWS global condition context keys: aws:PrincipalArn").
        parts = local_principal.split(":")
        statements.append(
            {
                "Sid": LOCAL_TRUST_SID,
                "Effect": "Allow",
                "Principal": {"AWS": f"arn:{parts[1]}:iam::{parts[4]}:root"},
                "Action": "sts:AssumeRole",
                "Condition": {"ArnLike": {"aws:PrincipalArn": local_principal}},
            }
        )
    return {"Version": "2012-10-17", "Statement": statements}


@dataclass
class KeylessBootstrapResult(PlannedResult):
    auth: str  # always "keyless": tells the two bootstrap results apart in JSON
    service_account: str
    task_role_arn: str
    execution_role_arn: str
    pool: str
    provider: str
    principal: str
    changed: bool
    plan: list[Change] = field(default_factory=list)  # what a preview would do
    retired_keys: list[str] = field(
        default_factory=list
    )  # key mode's keys deleted when switching (agreed)
    account_exists: bool = field(
        default=True, metadata=NOT_SHOWN
    )  # False: a preview that would create it

    def identity(self) -> str:
        """What tasks authenticate with: no key and no secret, the federation bootstrap set up."""
        return f"task role {self.task_role_arn} via {self.provider}"

    def to_json(self) -> dict[str, Any]:
        data = super().to_json()
        if not self.retired_keys:
            data.pop("retired_keys")
        return data


def ensure_task_role(ctx: Context) -> str:
    name = task_role_name(ctx.settings.family)
    trust = task_role_trust(ctx.aws.account_id, ctx.settings.gcp.local_principal)
    outcome = roles.ensure_own(
        ctx,
        roles.OwnRole(
            name=name,
            description="ECS task role federated to Google Cloud by gcpfargate",
            summary="the task role keyless mode federates",
            trust=trust,
            trusted=lambda document: roles.same_statements(document, trust),
            # No permissions of its own: the application's AWS permissions are the user's to attach.
            inline_name="",
            inline=None,
            inline_action="",
        ),
    )
    return outcome.arn


def _ensure_pool(ctx: Context, project: str) -> dict[str, Any] | None:
    """The pool (None: a preview that would create it)."""
    pools, name, what = ctx.pools, pool_name(project), f"workload identity pool {POOL_ID}"
    pool = pools.get(name, what)
    if pool is None:

        def create() -> dict[str, Any]:
            with ctx.reporter.step(f"Creating workload identity pool {POOL_ID}"):
                return pools.create(
                    f"projects/{project}/locations/global",
                    "workloadIdentityPools",
                    "workloadIdentityPoolId",
                    POOL_ID,
                    {
                        "displayName": "gcpfargate",
                        "description": "ECS tasks federated by gcpfargate",
                    },
                    what,
                )

        text = f"create workload identity pool {POOL_ID} in project {project}"
        return ctx.plan.change(planning.create(POOL, POOL_ID, text), create)
    if pool.get("state") == "DELETED":

        def undelete() -> dict[str, Any]:
            with ctx.reporter.step(f"Undeleting workload identity pool {POOL_ID}"):
                return pools.undelete(name, what)

        undeleted = ctx.plan.change(
            planning.update(
                POOL,
                POOL_ID,
                f"undelete workload identity pool {POOL_ID} (soft-deleted)",
                before="DELETED",
                after="ACTIVE",
            ),
            undelete,
        )
        pool = pool if undeleted is None else undeleted
    if pool.get("disabled"):
        raise GcpError(
            f"workload identity pool {POOL_ID} in project {project} is disabled",
            "Enable it in the GCP console (IAM > Workload Identity Federation), then rerun",
        )
    return pool


def _ensure_provider(ctx: Context, project: str) -> str:
    account, pools = ctx.aws.account_id, ctx.pools
    provider, what = provider_id(account), f"workload identity provider {provider_id(account)}"
    name = f"{pool_name(project)}/providers/{provider}"
    wanted = {
        "aws": {"accountId": account},
        "attributeMapping": AWS_MAPPING,
        "attributeCondition": attribute_condition(ctx.aws.partition(), account),
    }
    found = pools.get(name, what)  # under a missing pool (a preview) this is a 404 too
    if found is None:

        def create() -> dict[str, Any]:
            with ctx.reporter.step(f"Creating {what}"):
                return pools.create(
                    pool_name(project),
                    "providers",
                    "workloadIdentityPoolProviderId",
                    provider,
                    {"displayName": f"AWS {account}", **wanted},
                    what,
                )

        text = f"create {what} (AWS account {account}, only gcpfargate task roles)"
        ctx.plan.change(planning.create(PROVIDER, provider, text), create)
        return provider
    if found.get("state") == "DELETED":
        undeleted = ctx.plan.change(
            planning.update(
                PROVIDER,
                provider,
                f"undelete {what} (soft-deleted)",
                before="DELETED",
                after="ACTIVE",
            ),
            partial(pools.undelete, name, what),
        )
        found = found if undeleted is None else undeleted
    drift = [key for key, value in wanted.items() if found.get(key) != value]
    if found.get("disabled"):
        drift.append("disabled")
    if drift:
        ctx.plan.change(
            planning.update(
                PROVIDER,
                provider,
                f"update {what}: {', '.join(drift)}",
                before={key: found.get(key) for key in drift},
                after={key: wanted.get(key, False) for key in drift},
            ),
            partial(pools.patch, name, {**wanted, "disabled": False}, drift, what),
        )
    return provider


def _ensure_binding(ctx: Context, email: str, member: str, exists: bool) -> None:
    """Grant the role's principal set WORKLOAD_IDENTITY_USER on the account (`exists` False: a
    preview that would create the account, whose policy is known after apply)."""
    current = ctx.iam.get_iam_policy(email) if exists else None
    if current is not None and _bound(current, member):
        return
    ctx.plan.change(
        planning.update(
            BINDING, email, f"grant {WORKLOAD_IDENTITY_USER} on {email} to {member}", after=member
        ),
        partial(_grant, ctx, email, member, current),
    )


def _bound(current: Any, member: str) -> bool:
    return any(b.role == WORKLOAD_IDENTITY_USER and member in b.members for b in current.bindings)


def _grant(ctx: Context, email: str, member: str, current: Any) -> None:
    """Read-modify-write of the account's IAM policy, read again when its etag lost a race."""
    from google.iam.v1 import policy_pb2

    for attempt in range(MAX_POLICY_ATTEMPTS):
        if current is None:
            current = ctx.iam.get_iam_policy(email)
            if _bound(current, member):
                return
        binding = next(
            (
                b
                for b in current.bindings
                if b.role == WORKLOAD_IDENTITY_USER and not b.condition.expression
            ),
            None,
        )
        if binding is None:
            current.bindings.append(
                policy_pb2.Binding(role=WORKLOAD_IDENTITY_USER, members=[member])
            )
        else:
            binding.members.append(member)
        try:
            with ctx.reporter.step(f"Granting {WORKLOAD_IDENTITY_USER} on {email}"):
                ctx.iam.set_iam_policy(email, current)
            return
        except GcpError as exc:
            if exc.code != "ABORTED" or attempt == MAX_POLICY_ATTEMPTS - 1:
                raise
        current = None


def _check_apis(ctx: Context) -> None:
    """Refuse (before any write) when the STS or IAM Credentials API is disabled; only warn when
    the caller may not read Service Usage, which bootstrap does not otherwise need."""
    project = ctx.settings.gcp.project
    disabled, unreadable = services.disabled_or_unreadable(ctx)
    if unreadable:
        ctx.reporter.warn(
            f"cannot check that {' and '.join(services.REQUIRED_APIS)} are enabled ({unreadable}); "
            f"if they are not: {services.enable_command(project, list(services.REQUIRED_APIS))}"
        )
        return
    if disabled:
        raise GcpError(
            services.problem(project, disabled),
            f"Enable {'it' if len(disabled) == 1 else 'them'}: "
            f"{services.enable_command(project, disabled)}, then rerun",
        )


def bootstrap_keyless(
    ctx: Context, retire: Callable[[keyless_retire.Leftovers], bool] | None = None
) -> KeylessBootstrapResult:
    """`retire` (None: not now, as in `deploy` until the keyless revision is registered) decides
    whether the keys key mode left in the secret are retired (keyless_retire)."""
    settings = ctx.settings
    settings.require("gcp.project", "gcp.service_account", "task.family")
    project = settings.gcp.project
    ctx.pools  # noqa: B018 - a malformed GCPFARGATE_IAM_REST_ENDPOINT is refused here, before any write
    mark = ctx.plan.mark()
    with ctx.reporter.step("Checking the Google APIs keyless mode needs"):
        _check_apis(ctx)
    with ctx.reporter.step("Resolving the service account"):
        account = keys.resolve_account(ctx)
    with ctx.reporter.step("Checking the task role"):
        task_role_arn = ensure_task_role(ctx)
    with ctx.reporter.step("Checking the execution role"):
        role = execution_role.ensure(ctx, secret_arn="")
    with ctx.reporter.step("Checking the workload identity pool"):
        pool = _ensure_pool(ctx, project)
        provider = _ensure_provider(ctx, project)
    # The pool's name carries the project NUMBER, which principal sets and audiences need.
    number = str(pool["name"]).split("/")[1] if pool else "PROJECT_NUMBER"
    aws_role = role_session_prefix(
        ctx.aws.partition(), ctx.aws.account_id, task_role_name(settings.family)
    )
    member = principal_set(number, aws_role)
    with ctx.reporter.step("Checking the workloadIdentityUser binding"):
        _ensure_binding(ctx, account.email, member, exists=bool(account.unique_id))
    changes = ctx.plan.since(mark)
    changed = bool(changes)
    fresh = [
        change
        for change in changes
        if change.resource in (POOL, PROVIDER, BINDING)
        and change.text.startswith(("create", "undelete", "grant "))
    ]
    if fresh and ctx.plan.apply:  # only what was made propagates: a preview has nothing to wait on
        # Nothing here can wait it out: only a task holding the task role can exchange a token.
        ctx.reporter.warn(
            "Google takes a few minutes (up to 7) to propagate a new workload identity pool, "
            "provider or binding: a task started before then may be refused (invalid_target or "
            "PERMISSION_DENIED on iam.serviceAccounts.getAccessToken); `gcpfargate doctor` checks "
            "the configuration, a rerun of the task the propagation"
        )
    retired = (
        keyless_retire.offer(ctx, account.email, retire) if retire and account.unique_id else []
    )
    return KeylessBootstrapResult(
        auth="keyless",
        service_account=account.email,
        task_role_arn=task_role_arn,
        execution_role_arn=role.arn,
        pool=f"projects/{number}/locations/global/workloadIdentityPools/{POOL_ID}",
        provider=provider,
        principal=member,
        changed=changed or bool(retired),
        plan=ctx.plan.shown(mark),
        retired_keys=retired,
        account_exists=bool(account.unique_id),
    )


def project_number(ctx: Context) -> str:
    """From the pool's resource name (the IAM API answers with the number); bootstrap must have
    run."""
    project = ctx.settings.gcp.project
    pool = ctx.pools.get(pool_name(project), f"workload identity pool {POOL_ID}")
    if pool is None or pool.get("state") != "ACTIVE":
        raise GcpError(
            f"workload identity pool {POOL_ID} in project {project} is "
            f"{'missing' if pool is None else str(pool.get('state', '')).lower()}",
            "Run gcpfargate bootstrap (keyless mode creates or undeletes it)",
        )
    return str(pool["name"]).split("/")[1]


def wire_definition(
    ctx: Context,
    definition: dict[str, Any],
    image_config: Any,
    image: str | None = None,
    image_user: Any = None,
) -> dict[str, Any]:
    """register-task's keyless wiring: config, task role, shim (see keyless_wiring)."""
    import os

    from gcpfargate.clients.google.universe import universe_domain
    from gcpfargate.credentials.keyless.config import GoogleEndpoints, credential_config
    from gcpfargate.credentials.keyless.wiring import wire_keyless
    from gcpfargate.image.shim_push import resolve_shim

    settings = ctx.settings
    account = ctx.aws.account_id
    universe = universe_domain(settings.gcp.universe_domain)
    config = credential_config(
        project_number=project_number(ctx),
        pool_id=POOL_ID,
        provider_id=provider_id(account),
        service_account_email=settings.service_account_email,
        endpoints=GoogleEndpoints.from_environ(os.environ, universe),
        aws_dns_suffix=ctx.aws.dns_suffix(),
        universe=universe,
    )
    return wire_keyless(
        definition,
        credential_config=config,
        credentials_env=settings.task.credentials_env,
        credentials_path=settings.task.credentials_path,
        containers=settings.task.containers or None,
        image_config=image_config,
        task_role_arn=f"arn:{ctx.aws.partition()}:iam::{account}:role/{task_role_name(settings.family)}",
        shim_image_ref=resolve_shim(ctx),
        project=settings.gcp.project,
        image=image,
        **({"image_user": image_user} if image_user is not None else {}),
    )
