"""`doctor`: verify every link between the GCP key and a Fargate task start, before a night run
does.

Each check answers OK / WARN / FAIL / SKIP with a one-line reason, in a fixed order. Checks that
depend on an earlier one (the key's state needs the secret) SKIP when it failed, so one broken
link shows as exactly one FAIL. The execution role is judged from *its own* policies (the role
the task runs with, not the caller), with IAM's policy simulator where the endpoint has it.
"""

from __future__ import annotations

from collections.abc import Callable

from gcpfargate.core.checks import Check, DoctorReport, Facts, Skip, Status
from gcpfargate.core.checks import DoctorEntry as Entry
from gcpfargate.core.context import Context
from gcpfargate.credentials import wiring
from gcpfargate.credentials.mode import mode_for
from gcpfargate.doctor.jobs import entries as job_checks
from gcpfargate.doctor.runs import runs_checks
from gcpfargate.ecs import logs
from gcpfargate.ecs.cluster import latest_revision
from gcpfargate.errors import AwsConfigError, ConfigError, GcpConfigError, GcpfargateError
from gcpfargate.image import images

CONFIG_CHECK = ("config.valid", "config valid", "config")


def doctor(make_context: Callable[[], Context], get_secret: bool = True) -> DoctorReport:
    """The report for the settings `make_context` loads; settings that do not load (a bad value, an
    unknown key) are a failing config check like any other problem, not a bare usage error."""
    try:
        ctx = make_context()
    except ConfigError as exc:
        return DoctorReport([Check(*CONFIG_CHECK, Status.FAIL, exc.message, exc.hint)])
    return run_doctor(ctx, get_secret)


def run_doctor(ctx: Context, get_secret: bool = True) -> DoctorReport:
    facts = Facts()
    checks: list[Check] = []
    # The configured credential mode brings its own links (the key, its secret and its delivery; or
    # the federation); the config, the identities, the image and its log group are checked alike.
    own_before, own_after = mode_for(ctx.settings).doctor_checks(get_secret)
    plan: list[Entry] = [
        (*CONFIG_CHECK, _config),
        ("aws.identity", "AWS identity", "aws", _aws_identity),
        ("gcp.service_account", "service account exists and is enabled", "gcp", _account),
        *own_before,
        ("image.exists", "image exists and matches runtimePlatform", "image", _image),
        ("logs.group", "awslogs group exists", "logs", _log_group),
        *own_after,
        *job_checks(ctx),
        *runs_checks(),
    ]
    # A setup that cannot be read at all (no AWS credentials or region, no Google credentials) is
    # one root cause: the first check that meets it FAILs with the fix; every later check that needs
    # the same system SKIPs with "could not read", instead of FAILing with advice that does not
    # apply.
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


def _cause(exc: GcpfargateError) -> str:
    """ "no AWS credentials", "no AWS region", …: the short form later checks repeat."""
    text = exc.message.split(": ", 1)[-1] if exc.message.startswith("failed to ") else exc.message
    return text.replace(" found", "").replace(" is set", "").replace(" for the IAM API", "")


def _config(ctx: Context, facts: Facts) -> tuple[Status, str]:
    ctx.settings.require("gcp.project", "gcp.service_account", "task.family")
    where = ctx.settings.config_path or "environment"
    chosen = f", environment {ctx.settings.environment}" if ctx.settings.environment else ""
    return Status.OK, f"settings from {where}{chosen}"


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


def _image(ctx: Context, facts: Facts) -> tuple[Status, str]:
    revision = latest_revision(ctx, facts)
    if revision is None:
        raise Skip("no registered revision")
    containers = wiring.app_containers(revision)
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
