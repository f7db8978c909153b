"""`doctor`: verify every link between the GCP key and a Fargate task start, before a night run does.

Each check answers OK / WARN / FAIL / SKIP with a one-line reason, in a fixed order. Checks that
depend on an earlier one (the key's state needs the secret) SKIP when it failed, so one broken
link shows as exactly one FAIL. The execution role is judged from *its own* policies (the role
the task runs with, not the caller), with IAM's policy simulator where the endpoint has it.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from gcpfargate.core.checks import Check, DoctorReport, Facts, Skip, Status, latest_revision
from gcpfargate.core.context import Context
from gcpfargate.credentials.key import secret
from gcpfargate.credentials.wiring import is_exact_wrapper, unwrap
from gcpfargate.doctor import service as service_checks
from gcpfargate.ecs import logs
from gcpfargate.errors import AwsConfigError, AwsError, GcpConfigError, GcpfargateError
from gcpfargate.iam import execution_role, policy, roles
from gcpfargate.image import images
from gcpfargate.keymaterial.keyscan import key_paths, key_text
from gcpfargate.taskdef import fargate_rules


def run_doctor(ctx: Context, get_secret: bool = True) -> DoctorReport:
    from gcpfargate.credentials.key import (
        doctor as keys,
    )  # it builds on this module's Status and Facts

    facts = Facts()
    checks: list[Check] = []
    plan: list[tuple[str, str, str, Callable[[Context, Facts], tuple[Status, str]]]] = [
        ("config.valid", "config valid", "config", _config),
        ("aws.identity", "AWS identity", "aws", _aws_identity),
        ("gcp.service_account", "service account exists and is enabled", "gcp", _account),
        (
            "secret.readable",
            "secret holds a key of the account",
            "secret",
            lambda c, f: keys.secret_holds_key(c, f, get_secret),
        ),
        ("key.enabled", "key exists and is enabled in GCP", "key", keys.key_state),
        ("key.age", "key age", "key", keys.key_age),
        ("key.count", "user-managed key count", "key", keys.key_count),
        (
            "key.referenced",
            "every live key is in a secret version",
            "key",
            lambda c, f: keys.unreferenced_live(c, f, get_secret),
        ),
        (
            "key.previous",
            "running tasks can still use the previous key",
            "key",
            lambda c, f: keys.previous_key_in_use(c, f, get_secret),
        ),
        (
            "role.trust",
            "execution role trusts ecs-tasks.amazonaws.com",
            "execution role",
            _role_trust,
        ),
        ("role.reads_secret", "execution role may read the secret", "execution role", _role_access),
        ("task.wiring", "task definition delivers the key safely", "task definition", _wiring),
        ("image.exists", "image exists and matches runtimePlatform", "image", _image),
        ("logs.group", "awslogs group exists", "logs", _log_group),
        (
            "service.latest",
            "ECS service runs the latest revision",
            "service",
            lambda c, f: _verdict(service_checks.runs_latest(c, latest_revision(c, f), f.extra)),
        ),
        (
            "service.current_key",
            "ECS service tasks hold the current key",
            "service",
            lambda c, f: _verdict(
                service_checks.tasks_hold_current_key(
                    c, str(f.extra.get("secret_arn", "")), f.extra
                )
            ),
        ),
    ]
    if ctx.settings.gcp.auth == "keyless":
        from gcpfargate.credentials.keyless.doctor import CHECKS

        # No secret, no key: the keyless links instead, with ids from their names.
        keyless = [
            ("keyless." + re.sub(r"[^a-z]+", "_", name.lower()).strip("_"), name, group, check)
            for name, group, check in CHECKS
        ]
        # The image and its log group are checked the same way; the service checks judge key delivery.
        shared = [entry for entry in plan if entry[0] in ("image.exists", "logs.group")]
        plan = [*plan[:3], *keyless, *shared]
    # A setup that cannot be read at all (no AWS credentials or region, no Google credentials) is one
    # root cause: the first check that meets it FAILs with the fix; every later check that needs the
    # same system SKIPs with "could not read", instead of FAILing with advice that does not apply.
    unreadable: dict[type, str] = facts.extra.setdefault("unreadable", {})
    for check_id, name, group, check in plan:
        hint = ""
        try:
            status, detail = check(ctx, facts)
        except Skip as skip:
            status, detail = Status.SKIP, str(skip)
        except (AwsConfigError, GcpConfigError) as exc:
            kind = type(exc)
            if kind in unreadable:
                status, detail = Status.SKIP, f"could not read: {unreadable[kind]}"
            else:
                unreadable[kind] = _cause(exc)
                status, detail, hint = Status.FAIL, exc.message, exc.hint
        except GcpfargateError as exc:
            status, detail, hint = (
                Status.FAIL,
                exc.message,
                exc.hint if check_id == "config.valid" else "",
            )
        checks.append(Check(check_id, name, group, status, detail, hint))
        if check_id == "config.valid" and status is Status.FAIL:
            break
    return DoctorReport(checks)


def _verdict(found: tuple[str, str]) -> tuple[Status, str]:
    if found[0] == "SKIP":
        raise Skip(found[1])
    return Status(found[0]), found[1]


def _cause(exc: GcpfargateError) -> str:
    """ "no AWS credentials", "no AWS region", …: the short form later checks repeat."""
    text = exc.message.split(": ", 1)[-1] if exc.message.startswith("failed to ") else exc.message
    return text.replace(" found", "").replace(" is set", "").replace(" for the IAM API", "")


def _config(ctx: Context, facts: Facts) -> tuple[Status, str]:
    ctx.settings.require("gcp.project", "gcp.service_account", "task.family")
    where = ctx.settings.config_path or "environment"
    return Status.OK, f"settings from {where}"


def _aws_identity(ctx: Context, facts: Facts) -> tuple[Status, str]:
    identity = ctx.aws.call("sts", "get_caller_identity", "read the AWS identity")
    return Status.OK, f"{identity['Arn']} in {ctx.aws.region}"


def _account(ctx: Context, facts: Facts) -> tuple[Status, str]:
    settings = ctx.settings
    account = ctx.iam.get_service_account(settings.gcp.project, settings.gcp.service_account)
    if account is None:
        return (
            Status.FAIL,
            f"{settings.service_account_email} does not exist in project {settings.gcp.project}",
        )
    facts.account = account
    if account.disabled:
        return Status.FAIL, f"{account.email} is disabled"
    return Status.OK, account.email


def _role(ctx: Context, facts: Facts) -> str:
    if not facts.role_arn:
        revision = latest_revision(ctx, facts)
        facts.role_arn = (revision or {}).get("executionRoleArn") or roles.execution_role_arn(ctx)
    return facts.role_arn


def _role_trust(ctx: Context, facts: Facts) -> tuple[Status, str]:
    arn = _role(ctx, facts)
    name = roles.role_name_from_arn(arn)
    role = roles.get_role(ctx, name)
    if role is None:
        facts.extra["role_missing"] = True
        return Status.FAIL, f"execution role {name} does not exist (run gcpfargate bootstrap)"
    if not policy.trusts(role.get("AssumeRolePolicyDocument", {}), policy.ECS_TASKS_PRINCIPAL):
        return Status.FAIL, f"{name} does not trust ecs-tasks.amazonaws.com"
    return Status.OK, name


def _role_access(ctx: Context, facts: Facts) -> tuple[Status, str]:
    if facts.extra.get("role_missing"):
        raise Skip("the execution role does not exist")
    secret_arn = facts.extra.get("secret_arn")
    if not secret_arn:
        unread = facts.extra.get("unreadable", {}).get(AwsConfigError)
        raise Skip(f"could not read: {unread}" if unread else "the secret does not exist")
    try:
        kms_arn = secret.kms_key_arn(ctx, str(facts.extra.get("kms_key_id", "")))
    except AwsError as exc:
        return Status.WARN, f"cannot resolve KMS key {facts.extra.get('kms_key_id')}: {exc.message}"
    simulated = _simulate(ctx, facts.role_arn, secret_arn, kms_arn)
    verdict = simulated or execution_role.judge_secret_access(
        ctx, facts.role_arn, secret_arn, kms_arn
    )
    how = "IAM policy simulator" if simulated else "the role's own policies"
    if verdict.allowed:
        return Status.OK, f"{verdict.reason} (judged by {how})"
    if verdict.decision is policy.Decision.CONDITIONAL:
        return Status.WARN, f"{verdict.reason} (judged by {how})"
    return (
        Status.FAIL,
        f"{verdict.reason}: tasks will fail to start (bootstrap --grant) (judged by {how})",
    )


def _simulate(
    ctx: Context, role_arn: str, secret_arn: str, kms_arn: str
) -> policy.Judgement | None:
    """IAM's own simulator when the endpoint implements it; None means "judge locally"."""
    actions = [("secretsmanager:GetSecretValue", secret_arn)] + (
        [("kms:Decrypt", kms_arn)] if kms_arn else []
    )
    try:
        for action, resource in actions:
            result = ctx.aws.call(
                "iam",
                "simulate_principal_policy",
                "simulate the execution role's policy",
                probe=True,
                PolicySourceArn=role_arn,
                ActionNames=[action],
                ResourceArns=[resource],
            )
            decision = result["EvaluationResults"][0]["EvalDecision"]
            if decision != "allowed":
                kind = (
                    policy.Decision.DENIED
                    if decision == "explicitDeny"
                    else policy.Decision.NOT_ALLOWED
                )
                return policy.Judgement(kind, f"{action} on {resource} is {decision}")
    except AwsError as exc:
        # The simulator is a nicety: an endpoint without it (moto, some partitions) or a caller
        # without iam:SimulatePrincipalPolicy falls back to the local judgement, never to a FAIL.
        ctx.reporter.detail(
            f"policy simulator unavailable ({exc.code}); judging the role's policies locally"
        )
        return None
    return policy.Judgement(policy.Decision.ALLOWED, "secretsmanager:GetSecretValue is allowed")


def _essential(revision: dict[str, Any]) -> list[dict[str, Any]]:
    return [c for c in revision.get("containerDefinitions", []) if c.get("essential", True)]


def _wiring(ctx: Context, facts: Facts) -> tuple[Status, str]:
    revision = latest_revision(ctx, facts)
    if revision is None:
        return (
            Status.FAIL,
            f"no ACTIVE revision of family {ctx.settings.family} (run gcpfargate register-task)",
        )
    settings = ctx.settings
    env_name, path = settings.task.credentials_env, settings.task.credentials_path
    wanted = settings.task.containers or [c["name"] for c in _essential(revision)]
    secret_arn = str(facts.extra.get("secret_arn", ""))
    # Key text anywhere in the revision (command, labels, log options, …), not only in environment.
    found = key_paths(revision, is_key=key_text)
    problems: list[str] = [f"key text at {', '.join(found[:5])}"] if found else []
    if why := fargate_rules.missing_execution_role(revision, lambda: ctx.registry.host):
        problems.append(
            f"revision {revision.get('revision')} has no executionRoleArn, but {why}: ECS cannot start "
            "it (register-task adds the execution role)"
        )
    for container in revision.get("containerDefinitions", []):
        name = container.get("name", "?")
        if name not in wanted:
            continue
        secrets = {s.get("name"): s.get("valueFrom", "") for s in container.get("secrets", [])}
        if env_name not in secrets:
            problems.append(f"{name}: no secrets entry {env_name}")
        elif secret_arn and not _same_secret(secrets[env_name], secret_arn):
            problems.append(f"{name}: {env_name} comes from {secrets[env_name]}, not {secret_arn}")
        environment = {e.get("name"): e.get("value") for e in container.get("environment", [])}
        google_path = environment.get("GOOGLE_APPLICATION_CREDENTIALS")
        wrapped = unwrap(container)
        if wrapped is not None:
            if not is_exact_wrapper(container):
                problems.append(
                    f"{name}: the entryPoint's wrapper is not the script gcpfargate writes (edited by "
                    "hand?); run gcpfargate register-task"
                )
            # gcpfargate's own wrapper: it must write the variable ECS fills to the path the app reads.
            if wrapped.credentials_env != env_name:
                problems.append(
                    f"{name}: the wrapper writes ${wrapped.credentials_env}, but the key arrives "
                    f"in {env_name}"
                )
            if google_path != wrapped.credentials_path:
                problems.append(
                    f"{name}: GOOGLE_APPLICATION_CREDENTIALS is {google_path!r}, but the wrapper "
                    f"writes {wrapped.credentials_path!r}"
                )
        else:
            # wire_credentials = false: the template wires it; at least the file must be written somewhere.
            start = (
                " ".join(container.get("entryPoint") or [])
                + " "
                + " ".join(container.get("command") or [])
            )
            if google_path != path:
                problems.append(
                    f"{name}: GOOGLE_APPLICATION_CREDENTIALS is {google_path!r}, not {path!r}"
                )
            elif path not in start:
                problems.append(f"{name}: no start-up step writes {path}")
    if problems:
        return Status.FAIL, "; ".join(problems)
    return (
        Status.OK,
        f"revision {revision.get('revision')} delivers {env_name} → {path} (mode 0600)",
    )


def _same_secret(value_from: str, secret_arn: str) -> bool:
    # valueFrom may carry the `:json-key:version-stage:version-id` suffix.
    return value_from == secret_arn or value_from.startswith(secret_arn + ":")


def _image(ctx: Context, facts: Facts) -> tuple[Status, str]:
    revision = latest_revision(ctx, facts)
    if revision is None:
        raise Skip("no registered revision")
    containers = _essential(revision)
    if not containers:
        raise Skip("no essential container")
    image = str(containers[0].get("image", ""))
    if not images.in_registry(ctx, image):
        return Status.WARN, f"{image} is not in registry {ctx.registry.host}; not checked"
    repository = images.split_image(image)[1]
    platform_arch = (revision.get("runtimePlatform") or {}).get("cpuArchitecture", "X86_64")
    arch = images.ecs_arch(platform_arch)
    found = images.held(ctx, image, f"linux/{arch}")
    if found is None:
        return Status.FAIL, f"{image} is not in the registry"
    if found.config.get("architecture") != arch:
        return Status.FAIL, f"{image} is {found.platform}, but runtimePlatform is {platform_arch}"
    return Status.OK, f"{repository}@{found.digest[:19]}… ({found.platform})"


def _log_group(ctx: Context, facts: Facts) -> tuple[Status, str]:
    revision = latest_revision(ctx, facts)
    if revision is None:
        raise Skip("no registered revision")
    groups = {group for group, _ in logs.log_groups(revision)}
    if not groups:
        return Status.WARN, "no container logs to awslogs; `run` cannot stream logs"
    missing = []
    for group in sorted(groups):
        if not logs.log_group_exists(ctx, group):
            missing.append(group)
    if missing:
        return (
            Status.FAIL,
            f"log group {', '.join(missing)} does not exist (register-task creates it)",
        )
    return Status.OK, ", ".join(sorted(groups))
