"""`gcpfargate jobs`: each job's schedule, its next runs and its last runs from the run history.

The jobs are the `[jobs.<name>]` tables of the config when it has any, else the schedules in the
family's schedule group (`gcpfargate-<family>`). Expression and time zone come from the config
(as `schedule` would write them) or from the schedule; the state is the schedule's (ABSENT when
`schedule` has not created it yet). Last runs are the run history's (`ecs.history`): the tasks of
ECS group `job:<name>`, newest first.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from gcpfargate.awsspec import cron
from gcpfargate.core.context import Context
from gcpfargate.ecs import history, jobs
from gcpfargate.ecs.schedule import upcoming

DEFAULT_NEXT = 3
DEFAULT_LAST = 5


@dataclass
class JobStatus:
    name: str
    expression: str
    timezone: str
    state: str  # ENABLED, DISABLED, ABSENT (no schedule yet)
    next_runs: list[str]
    last_runs: list[history.Run]

    @property
    def last_failed(self) -> bool:
        return bool(self.last_runs) and self.last_runs[0].failed

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "expression": self.expression,
            "timezone": self.timezone,
            "state": self.state,
            "next_runs": self.next_runs,
            "last_runs": [run.to_json() for run in self.last_runs],
        }


@dataclass
class JobStatusResult:
    family: str
    schedule_group: str
    history_group: str
    jobs: list[JobStatus] = field(default_factory=list)
    history_missing: bool = False  # no run-history group: deploy has not made it yet
    other_runs: list[history.Run] = field(default_factory=list)  # runs outside any job

    def to_json(self) -> dict[str, Any]:
        return {
            "family": self.family,
            "schedule_group": self.schedule_group,
            "history_group": self.history_group,
            "history_missing": self.history_missing,
            "jobs": [job.to_json() for job in self.jobs],
            "other_runs": [run.to_json() for run in self.other_runs],
        }


def _configured_expression(job: Any) -> str:
    given = cron.from_flags(
        cron=getattr(job, "cron", "") or None, rate=getattr(job, "rate", "") or None
    )
    return cron.parse(given).text if given else ""


def _next(expression: str, timezone: str, state: str, count: int, schedule: Any) -> list[str]:
    if state != "ENABLED" or not expression or count <= 0:
        return []
    try:
        return upcoming(cron.parse(expression), timezone, count, schedule)
    except cron.ExpressionError:
        return []


def schedules_in_group(ctx: Context, group: str) -> list[dict[str, Any]]:
    """Every schedule of the group, each read in full (its expression and time zone)."""
    listed = ctx.aws.find(
        "scheduler",
        "get_schedule_group",
        "ResourceNotFoundException",
        f"read schedule group {group}",
        Name=group,
    )
    if listed is None:
        return []
    summaries = ctx.aws.paginate(
        "scheduler",
        "list_schedules",
        "Schedules",
        f"list the schedules of {group}",
        GroupName=group,
    )
    found = []
    for summary in summaries:
        schedule = ctx.aws.find(
            "scheduler",
            "get_schedule",
            "ResourceNotFoundException",
            f"read schedule {summary['Name']}",
            Name=summary["Name"],
            GroupName=group,
        )
        if schedule is not None:
            found.append(dict(schedule))
    return found


def status(
    ctx: Context, only: str | None = None, next_count: int = DEFAULT_NEXT, last: int = DEFAULT_LAST
) -> JobStatusResult:
    ctx.settings.require("task.family")
    family = ctx.settings.family
    group = jobs.group_name(family)
    result = JobStatusResult(family, group, history.log_group(family))
    with ctx.reporter.step(f"Reading the jobs of {family}"):
        schedules = {str(s["Name"]): s for s in schedules_in_group(ctx, group)}
        configured = ctx.settings.jobs
        runs = history.read_runs(ctx, family)
    result.history_missing = runs is None
    by_job: dict[str, list[history.Run]] = {}
    for run in runs or []:
        by_job.setdefault(run.job, []).append(run)
    names = list(configured) if configured else sorted(schedules)
    for name in names:
        if only and name != only:
            continue
        schedule = schedules.get(name)
        job = configured.get(name)
        if job is not None:
            expression = _configured_expression(job)
            timezone = str(getattr(job, "timezone", "") or "UTC")
        else:
            expression = str((schedule or {}).get("ScheduleExpression", ""))
            timezone = str((schedule or {}).get("ScheduleExpressionTimezone") or "UTC")
        state = str(schedule.get("State")) if schedule else "ABSENT"
        result.jobs.append(
            JobStatus(
                name,
                expression,
                timezone,
                state,
                _next(expression, timezone, state, next_count, schedule),
                by_job.get(name, [])[:last],
            )
        )
    if only is None:
        result.other_runs = [r for r in runs or [] if r.job not in names][:last]
    return result
