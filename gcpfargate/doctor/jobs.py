"""doctor's checks of scheduled jobs: for each `[jobs.<name>]`, that its schedule exists in the
family's group, carries gcpfargate's mark, runs this family, matches the config, and that its role
may start the task (trusts Scheduler, may RunTask the family and pass the task's roles)."""

from __future__ import annotations

from functools import partial
from typing import Any

from gcpfargate.core.checks import DoctorEntry, Facts, Status
from gcpfargate.core.context import Context
from gcpfargate.ecs import jobs
from gcpfargate.ecs import schedule as single
from gcpfargate.ecs.cluster import latest_revision
from gcpfargate.iam import policy, roles

FIX = "run `gcpfargate schedule`"


def entries(ctx: Context) -> list[DoctorEntry]:
    return [
        (
            f"jobs.{name}",
            f"job {name}: schedule exists, runs the family, its role may run the task",
            "jobs",
            partial(_check, name),
        )
        for name in ctx.settings.jobs
    ]


def _check(name: str, ctx: Context, facts: Facts) -> tuple[Status, str]:
    settings = ctx.settings
    job = settings.jobs[name]
    group = jobs.group_name(settings.family)
    found = single.get_schedule(ctx, name, group)
    if found is None:
        return Status.FAIL, f"schedule {name} does not exist in group {group}; {FIX}"
    if not single.owned(found):
        return (
            Status.FAIL,
            f"schedule {name} in group {group} was not created by gcpfargate (no "
            f"{single.OWNED_MARK!r} in its description); rename the job or remove that schedule",
        )
    target = found.get("Target") or {}
    definition_arn = str((target.get("EcsParameters") or {}).get("TaskDefinitionArn") or "")
    family = definition_arn.rsplit("/", 1)[-1].split(":", 1)[0]
    if family != settings.family:
        return (
            Status.FAIL,
            f"schedule {name} runs task family {family or '(none)'}, not {settings.family}; {FIX}",
        )
    role_problem = _role_problem(ctx, facts, str(target.get("RoleArn") or ""))
    if role_problem:
        return Status.FAIL, role_problem
    state = str(found.get("State") or "ENABLED")
    expression = str(found.get("ScheduleExpression"))
    zone = str(found.get("ScheduleExpressionTimezone") or "UTC")
    described = f"{expression} ({zone}), {state}"
    if (expression, zone, state == "ENABLED") != (job.expression, job.timezone, job.enabled):
        return (
            Status.WARN,
            f"schedule {name} is {described}, the config says {job.expression} "
            f"({job.timezone}), {'ENABLED' if job.enabled else 'DISABLED'}; {FIX}",
        )
    return Status.OK, f"{described}, runs {settings.family}, its role may run it"


def _role_problem(ctx: Context, facts: Facts, role_arn: str) -> str:
    """Why the schedule's role cannot start the family's task, or ""."""
    if not role_arn:
        return f"the schedule has no role; {FIX}"
    name = roles.role_name_from_arn(role_arn)
    role = roles.get_role(ctx, name)
    if role is None:
        return f"its role {name} does not exist; {FIX}"
    if not policy.trusts(role.get("AssumeRolePolicyDocument", {}), single.SCHEDULER_PRINCIPAL):
        return f"its role {name} does not trust {single.SCHEDULER_PRINCIPAL}"
    revision: dict[str, Any] | None = latest_revision(ctx, facts)
    if revision is None:
        return ""  # no revision to judge against: the task-definition checks say so
    documents = _documents(ctx, facts, name)
    arn = str(revision["taskDefinitionArn"])
    # The role's own statements carry conditions (cluster, PassedToService): either kind allows.
    allows = (policy.Decision.ALLOWED, policy.Decision.CONDITIONAL)
    if policy.judge(documents, "ecs:RunTask", arn).decision not in allows:
        return f"its role {name} may not ecs:RunTask {arn}; {FIX}"
    for passed in (revision.get("executionRoleArn"), revision.get("taskRoleArn")):
        if passed and policy.judge(documents, "iam:PassRole", str(passed)).decision not in allows:
            return f"its role {name} may not pass {passed} to the task; {FIX}"
    return ""


def _documents(ctx: Context, facts: Facts, name: str) -> list[Any]:
    """A role's policies, read once per doctor run (every job usually shares the one role)."""
    cache: dict[str, list[Any]] = facts.extra.setdefault("job_role_documents", {})
    if name not in cache:
        cache[name] = roles.role_documents(ctx, name)
    return cache[name]
