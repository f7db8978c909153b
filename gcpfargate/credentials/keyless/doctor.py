"""`doctor` in keyless mode: every link from the task role to a Google access token, no key
anywhere.

The checks (after config, AWS identity and the service account, shared with key mode): the pool and
the AWS provider are ACTIVE and the provider trusts the caller's account; the provider's mapping and
condition, evaluated here with the CEL subset gcpfargate writes, admit a session of the task role;
the task role exists and trusts ECS tasks; the account grants roles/iam.workloadIdentityUser to the
role's principal set; the registered revision is wired (task role, pinned shim sidecar with a health
check, dependsOn HEALTHY, the external_account config for this provider, GOOGLE_CLOUD_PROJECT, no
secrets); and no key material is left (key text in the definition FAILs; a key-mode secret or
user-managed keys of the account WARN, they are what a migration retires).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable

from gcpfargate.core.checks import Facts, Skip, Status
from gcpfargate.core.context import Context
from gcpfargate.credentials.keyless import bootstrap as keyless
from gcpfargate.credentials.keyless import cel, services
from gcpfargate.ecs.cluster import latest_revision
from gcpfargate.iam import policy, roles
from gcpfargate.image import shim_image
from gcpfargate.keymaterial.keyfile import looks_like_key

Result = tuple[Status, str]


def _pool(ctx: Context, facts: Facts) -> Result:
    project = ctx.settings.gcp.project
    pool = ctx.pools.get(keyless.pool_name(project), f"workload identity pool {keyless.POOL_ID}")
    if pool is None:
        return (
            Status.FAIL,
            f"pool {keyless.POOL_ID} does not exist in project {project}; run gcpfargate bootstrap",
        )
    if pool.get("state") != "ACTIVE" or pool.get("disabled"):
        state = "disabled" if pool.get("disabled") else str(pool.get("state")).lower()
        return Status.FAIL, f"pool {keyless.POOL_ID} is {state}; gcpfargate bootstrap undeletes it"
    facts.extra["project_number"] = str(pool["name"]).split("/")[1]
    return Status.OK, str(pool["name"])


def _provider(ctx: Context, facts: Facts) -> Result:
    if "project_number" not in facts.extra:
        raise Skip("no active pool")
    account = ctx.aws.account_id
    name = f"{keyless.pool_name(ctx.settings.gcp.project)}/providers/{keyless.provider_id(account)}"
    provider = ctx.pools.get(name, f"workload identity provider {keyless.provider_id(account)}")
    if provider is None:
        return (
            Status.FAIL,
            f"provider {keyless.provider_id(account)} does not exist; run gcpfargate bootstrap",
        )
    if provider.get("state") != "ACTIVE" or provider.get("disabled"):
        return (
            Status.FAIL,
            f"provider {keyless.provider_id(account)} is not active; run gcpfargate bootstrap",
        )
    trusted = (provider.get("aws") or {}).get("accountId")
    if trusted != account:
        return (
            Status.FAIL,
            f"provider trusts AWS account {trusted}, but the caller's account is {account}",
        )
    facts.extra["provider"] = provider
    return Status.OK, f"{keyless.provider_id(account)} trusts AWS account {account}"


def _admits(ctx: Context, facts: Facts) -> Result:
    provider = facts.extra.get("provider")
    if provider is None:
        raise Skip("no active provider")
    role = keyless.role_session_prefix(
        ctx.aws.partition(), ctx.aws.account_id, keyless.task_role_name(ctx.settings.family)
    )
    # A session named as ECS names a task's (its 32-hex task id), so the subject's size is the one
    # every real exchange has.
    session = {"arn": f"{role}/{keyless.ECS_SESSION_EXAMPLE}"}
    try:
        attributes = cel.map_attributes(
            provider.get("attributeMapping") or keyless.AWS_MAPPING, session
        )
        admitted = cel.condition_accepts(
            str(provider.get("attributeCondition") or ""), session, attributes
        )
    except cel.CelError as exc:
        return Status.WARN, f"cannot evaluate the provider's mapping or condition locally: {exc}"
    if attributes.get("attribute.aws_role") != role:
        return (
            Status.FAIL,
            f"the mapping gives attribute.aws_role {attributes.get('attribute.aws_role')!r}, "
            f"not {role}",
        )
    subject = str(attributes.get("google.subject") or "")
    size = len(subject.encode("utf-8"))
    if not subject or size > keyless.SUBJECT_MAX_BYTES:
        return (
            Status.FAIL,
            f"the mapping gives a task session a google.subject of {size} bytes, which Google STS "
            f"refuses (1 to {keyless.SUBJECT_MAX_BYTES}); run gcpfargate bootstrap to restore "
            "gcpfargate's mapping",
        )
    if not admitted:
        return Status.FAIL, f"the attribute condition rejects {session['arn']}"
    facts.extra["aws_role"] = role
    return (
        Status.OK,
        f"an ECS session of {role.rsplit('/', 1)[-1]} maps to attribute.aws_role and a "
        f"{size}-byte google.subject and passes the condition",
    )


def _apis(ctx: Context, facts: Facts) -> Result:
    project = ctx.settings.gcp.project
    disabled, unreadable = services.disabled_or_unreadable(ctx)
    if unreadable:
        return Status.WARN, f"cannot read Service Usage: {unreadable}"
    if disabled:
        return (
            Status.FAIL,
            f"{services.problem(project, disabled)}; {services.enable_command(project, disabled)}",
        )
    return Status.OK, f"{' and '.join(services.REQUIRED_APIS)} enabled in project {project}"


def _task_role(ctx: Context, facts: Facts) -> Result:
    name = keyless.task_role_name(ctx.settings.family)
    role = roles.get_role(ctx, name)
    if role is None:
        return Status.FAIL, f"task role {name} does not exist; run gcpfargate bootstrap"
    if not policy.trusts(role.get("AssumeRolePolicyDocument", {}), policy.ECS_TASKS_PRINCIPAL):
        return Status.FAIL, f"task role {name} does not trust ecs-tasks.amazonaws.com"
    return Status.OK, str(role["Arn"])


def _binding(ctx: Context, facts: Facts) -> Result:
    if facts.account is None or "project_number" not in facts.extra:
        raise Skip("needs the service account and the pool")
    member = keyless.principal_set(
        facts.extra["project_number"],
        keyless.role_session_prefix(
            ctx.aws.partition(), ctx.aws.account_id, keyless.task_role_name(ctx.settings.family)
        ),
    )
    current = ctx.iam.get_iam_policy(facts.account.email)
    if any(
        b.role == keyless.WORKLOAD_IDENTITY_USER and member in b.members for b in current.bindings
    ):
        return Status.OK, f"{keyless.WORKLOAD_IDENTITY_USER} for the task role's principal set"
    return Status.FAIL, (
        f"{facts.account.email} does not grant {keyless.WORKLOAD_IDENTITY_USER} to {member}; "
        "run gcpfargate bootstrap"
    )


def _wired(ctx: Context, facts: Facts) -> Result:
    revision = latest_revision(ctx, facts)
    if revision is None:
        raise Skip("no registered revision")
    settings = ctx.settings
    family, env_name = settings.family, settings.task.credentials_env
    where = f"{family}:{revision.get('revision')}"
    if not str(revision.get("taskRoleArn", "")).endswith(f":role/{keyless.task_role_name(family)}"):
        return (
            Status.FAIL,
            f"{where} has taskRoleArn {revision.get('taskRoleArn')!r}, not the task role",
        )
    containers = revision.get("containerDefinitions", [])
    shim = next((c for c in containers if c.get("name") == shim_image.CONTAINER_NAME), None)
    if shim is None:
        return (
            Status.FAIL,
            f"{where} has no {shim_image.CONTAINER_NAME} container; run gcpfargate register-task",
        )
    if (
        "@sha256:" not in str(shim.get("image"))
        or shim.get("essential", True)
        or not shim.get("healthCheck")
    ):
        return (
            Status.FAIL,
            f"{where}: the shim must be digest-pinned, non-essential and health-checked",
        )
    wired = [
        c for c in containers if any(e.get("name") == env_name for e in c.get("environment") or [])
    ]
    if not wired:
        return Status.FAIL, f"{where}: no container receives the credential config ({env_name})"
    for container in wired:
        name = container.get("name")
        environment = {e.get("name"): e.get("value") for e in container.get("environment") or []}
        waits = {"containerName": shim_image.CONTAINER_NAME, "condition": "HEALTHY"}
        if waits not in (container.get("dependsOn") or []):
            return (
                Status.FAIL,
                f"{where}: container {name} does not wait for the shim (dependsOn HEALTHY)",
            )
        if any(s.get("name") == env_name for s in container.get("secrets") or []):
            return Status.FAIL, f"{where}: container {name} still gets {env_name} from a secret"
        try:
            config = json.loads(str(environment.get(env_name)))
        except ValueError:
            return Status.FAIL, f"{where}: {env_name} of container {name} is not JSON"
        if config.get("type") != "external_account" or not str(config.get("audience", "")).endswith(
            f"/providers/{keyless.provider_id(ctx.aws.account_id)}"
        ):
            return (
                Status.FAIL,
                f"{where}: {env_name} of container {name} is not the config for this provider",
            )
        if not environment.get("GOOGLE_CLOUD_PROJECT"):
            return Status.FAIL, f"{where}: container {name} has no GOOGLE_CLOUD_PROJECT"
    return Status.OK, f"{where}: task role, pinned shim, config for {len(wired)} container(s)"


def _no_key(ctx: Context, facts: Facts) -> Result:
    revision = latest_revision(ctx, facts) or {}
    for container in revision.get("containerDefinitions", []):
        for item in container.get("environment") or []:
            value = str(item.get("value", ""))
            if "PRIVATE KEY-----" in value or looks_like_key(value.encode("utf-8", "replace")):
                return (
                    Status.FAIL,
                    f"container {container.get('name')} environment {item.get('name')} holds key "
                    "text",
                )
    leftovers = []
    if facts.account is not None:
        keys = ctx.iam.list_user_keys(facts.account.email)
        if keys:
            leftovers.append(f"{len(keys)} user-managed key(s) of {facts.account.email}")
    name = ctx.settings.secret_name
    described = ctx.aws.find(
        "secretsmanager",
        "describe_secret",
        "ResourceNotFoundException",
        f"read secret {name}",
        SecretId=name,
    )
    if described is not None and not described.get(
        "DeletedDate"
    ):  # scheduled for deletion: retired
        leftovers.append(f"secret {name}")
    if leftovers:
        return Status.WARN, (
            f"left from key mode: {', '.join(leftovers)}; retire them: gcpfargate bootstrap "
            '--retire-keys (README "Keyless")'
        )
    return Status.OK, "no key, no key secret"


CHECKS = [
    ("Google APIs for keyless are enabled", "workload identity", _apis),
    ("workload identity pool is ACTIVE", "workload identity", _pool),
    ("AWS provider trusts this account", "workload identity", _provider),
    ("mapping and condition admit the task role", "workload identity", _admits),
    ("task role trusts ecs-tasks.amazonaws.com", "task role", _task_role),
    ("workloadIdentityUser binding", "workload identity", _binding),
    ("task definition is wired for keyless", "task definition", _wired),
    ("no key material", "keys", _no_key),
]


def checks() -> list[tuple[str, str, str, Callable[[Context, Facts], Result]]]:
    """Keyless mode's links, with ids from their names (no secret and no key to check)."""
    return [
        ("keyless." + re.sub(r"[^a-z]+", "_", name.lower()).strip("_"), name, group, check)
        for name, group, check in CHECKS
    ]
