"""Scheduled jobs: one EventBridge Scheduler schedule per `[jobs.<name>]` table.

Every job runs the family's task definition (the family ARN, so one `deploy` updates what every
job runs) with its own command, environment and task size as the target's overrides, in the
family's schedule group `gcpfargate-<family>` under the job's name. Its tasks carry the ECS task
group `job:<name>`, which is how run history, `logs --job` and failure alerts tell jobs apart.

Decisions worth knowing:
- **Plan first.** Each job is create / update / unchanged, an update with the fields that differ
  (old -> new); a job whose schedule already matches costs no write.
- **The group is gcpfargate's.** Schedules in it that no job names any more are listed; `--prune`
  deletes them after a confirmation. A schedule without the ownership mark is never updated or
  deleted, even in this group: exit 2 for a job's name, "left alone" in the prune list.
- **One scheduler role** (`ecs.schedule.ensure_role`) serves `[schedule]` and every job: it may
  run the family on every cluster a job (or `[run]`) names.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from gcpfargate.awsspec import cron
from gcpfargate.core import plan as planning
from gcpfargate.core.context import Context
from gcpfargate.core.plan import Change
from gcpfargate.core.results import plan_json
from gcpfargate.ecs import cluster as ecs
from gcpfargate.ecs import schedule as single
from gcpfargate.ecs.overrides import TaskOverrides, ecs_overrides
from gcpfargate.errors import UsageError
from gcpfargate.settings import JOB_RUN_KEYS, JobSettings, Settings


def group_name(family: str) -> str:
    """`gcpfargate-<family>`; longer than 64: its first 55 characters, "-" and 8 hex digits of the
    family's SHA-256, so long families sharing a prefix still get different groups."""
    from gcpfargate.ecs.history import short_name

    return short_name(f"gcpfargate-{family}", family)


def settings_for(settings: Settings, job: JobSettings) -> Settings:
    """The settings with the job's own `[run]` values over `[run]`; a flag still wins."""
    flags = tuple(key for key in JOB_RUN_KEYS if settings.sources.get(f"run.{key}") == "flag")
    return dataclasses.replace(settings, run=job.run_settings(settings.run, keep=flags))


def overrides_for(job: JobSettings, given: TaskOverrides | None = None) -> TaskOverrides:
    """The job's overrides, with flags given on the command line over them (env merged by name)."""
    given = given or TaskOverrides()
    return TaskOverrides(
        command=given.command if given.command is not None else job.argv,
        environment={**job.env, **given.environment},
        cpu=given.cpu or job.cpu or None,
        memory=given.memory or job.memory or None,
    )


def find(settings: Settings, name: str) -> JobSettings:
    job = settings.jobs.get(name)
    if job is None:
        known = ", ".join(settings.jobs) or "none"
        raise UsageError(
            f"no job {name!r} in {settings.config_path or 'the config'} (jobs: {known})",
            f"Add a [jobs.{name}] table, or pick one of those",
        )
    return job


@dataclass
class JobPlan:
    name: str
    action: str  # create, update, unchanged
    expression: str
    timezone: str
    state: str
    changes: list[str] = field(default_factory=list)  # "field: old -> new"
    schedule_arn: str | None = None
    next_runs: list[str] = field(default_factory=list)
    written: str = ""

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "name": self.name,
            "action": self.action,
            "expression": self.expression,
            "timezone": self.timezone,
            "state": self.state,
            "schedule_arn": self.schedule_arn,
            "next_runs": self.next_runs,
        }
        if self.written:
            data["written"] = self.written
        if self.changes:
            data["changes"] = self.changes
        return data


@dataclass
class JobsResult:
    group: str
    jobs: list[JobPlan]
    stale: list[str] = field(default_factory=list)  # gcpfargate's schedules no job names
    foreign: list[str] = field(default_factory=list)  # in the group, without the mark: left alone
    pruned: list[str] = field(default_factory=list)
    role_arn: str = ""
    plan: list[Change] = field(default_factory=list)
    changed: bool = False
    preview: bool = False  # nothing was written: the JSON shows the plan
    schedule: single.ScheduleResult | None = None  # [schedule], applied with the jobs

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "group": self.group,
            "jobs": [job.to_json() for job in self.jobs],
            "stale": self.stale,
            "pruned": self.pruned,
            "changed": self.changed,
        }
        if self.foreign:
            data["foreign"] = self.foreign
        if self.schedule is not None:
            data["schedule"] = self.schedule.to_json()
        if self.preview:
            data["plan"] = plan_json(self.plan)
        return data


def desired_schedule(
    settings: Settings,
    job: JobSettings,
    group: str,
    target_cluster: str,
    role_arn: str,
    definition: dict[str, Any],
    pin_revision: bool = False,
) -> dict[str, Any]:
    """The CreateSchedule/UpdateSchedule request for `job`."""
    run = settings_for(settings, job)
    revision_arn = str(definition["taskDefinitionArn"])
    cluster_name = target_cluster.rsplit("/", 1)[-1]
    about = (
        job.description or f"Runs job {job.name} of ECS task {settings.family} on {cluster_name}"
    )
    desired: dict[str, Any] = {
        "Name": job.name,
        "GroupName": group,
        "ScheduleExpression": job.expression,
        "ScheduleExpressionTimezone": job.timezone,
        "FlexibleTimeWindow": {"Mode": "OFF"},
        "State": "ENABLED" if job.enabled else "DISABLED",
        "Description": f"{about} {single.OWNED_MARK}",
        "Target": {
            "Arn": target_cluster,
            "RoleArn": role_arn,
            "RetryPolicy": dict(single.RETRY_POLICY),
            "EcsParameters": {
                "TaskDefinitionArn": revision_arn
                if pin_revision
                else revision_arn.rsplit(":", 1)[0],
                "LaunchType": "FARGATE",
                "PlatformVersion": run.run.platform_version,
                "TaskCount": 1,
                "Group": job.group,
                "NetworkConfiguration": ecs.network_configuration(run, key_case="upper"),
            },
        },
    }
    task_overrides = ecs_overrides(overrides_for(job), definition)
    if task_overrides:
        # Scheduler hands a templated ECS target's Input to RunTask as its overrides.
        desired["Target"]["Input"] = json.dumps(task_overrides, sort_keys=True)
    return desired


def _changes(current: dict[str, Any], desired: dict[str, Any]) -> list[str]:
    have, want = single.comparable(current), single.comparable(desired)
    return [f"{key}: {have[key]!r} -> {want[key]!r}" for key in want if have[key] != want[key]]


def _list_group(ctx: Context, group: str) -> list[str]:
    found = ctx.aws.paginate(
        "scheduler",
        "list_schedules",
        "Schedules",
        f"list the schedules of group {group}",
        GroupName=group,
    )
    return [str(schedule["Name"]) for schedule in found]


def apply(
    ctx: Context,
    only: str | None = None,
    prune: bool = False,
    confirm: Callable[[list[str]], bool] = lambda names: False,
    pin_revision: bool = False,
    count: int = 3,
    sleep: Callable[[float], None] = time.sleep,
) -> JobsResult:
    """Create or update every job's schedule (or `only` that one); with `prune`, delete the
    gcpfargate schedules of the group no job names, once `confirm` agrees."""
    settings = ctx.settings
    settings.require("task.family")
    jobs = [find(settings, only)] if only else list(settings.jobs.values())
    if not jobs and not prune:  # the last job removed: --prune still clears its schedule
        raise UsageError(
            f"no [jobs.*] tables in {settings.config_path or 'the config'}",
            'Add one, for example [jobs.nightly] with cron = "0 3 * * *"',
        )
    group = group_name(settings.family)
    for job in jobs:
        ecs.network_configuration(settings_for(settings, job))  # fails early on missing subnets

    with ctx.reporter.step(f"Reading the schedules of group {group} and the task"):
        definition = ecs.runnable_task_definition(ctx, settings.family)
        clusters = {
            name: ecs.cluster_arn(ctx, name)
            for name in sorted(
                {
                    settings.run.cluster,
                    *(j.run_settings(settings.run).cluster for j in settings.jobs.values()),
                }
            )
        }
        exists = single.group_exists(ctx, group)
        current = {
            job.name: single.get_schedule(ctx, job.name, group) if exists else None for job in jobs
        }
        for job in jobs:
            found = current[job.name]
            if found is not None and not single.owned(found):
                raise UsageError(
                    f"schedule {job.name} in group {group} was not created by gcpfargate (its "
                    f"description lacks the mark {single.OWNED_MARK!r}); refusing to update it",
                    f"Rename job {job.name}, or delete that schedule by hand if it is not needed",
                )
        stale: list[str] = []
        foreign: list[str] = []
        if not only and exists:
            for name in _list_group(ctx, group):
                if name in settings.jobs:
                    continue
                found = single.get_schedule(ctx, name, group)
                if found is not None:
                    (stale if single.owned(found) else foreign).append(name)

    revision_arn = str(definition["taskDefinitionArn"])
    pass_roles = [
        arn for arn in (definition.get("executionRoleArn"), definition.get("taskRoleArn")) if arn
    ]
    mark = ctx.plan.mark()
    with ctx.reporter.step("Checking the scheduler role"):
        role = single.ensure_role(
            ctx, revision_arn.rsplit(":", 1)[0], sorted(clusters.values()), pass_roles
        )
    result = JobsResult(
        group=group,
        jobs=[],
        stale=stale,
        foreign=foreign,
        role_arn=role.arn,
        preview=not ctx.plan.apply,
    )
    writes: list[tuple[Change, dict[str, Any]]] = []
    for job in jobs:
        target = clusters[job.run_settings(settings.run).cluster]
        desired = desired_schedule(settings, job, group, target, role.arn, definition, pin_revision)
        found = current[job.name]
        changes = _changes(found, desired) if found is not None else []
        action = "create" if found is None else "update" if changes else "unchanged"
        state = str(desired["State"])
        if action == "create":
            writes.append(
                (
                    planning.create(
                        "schedule",
                        f"{group}/{job.name}",
                        f"create schedule {job.name} in group {group}: {job.expression} "
                        f"({job.timezone}), {state}",
                        after={"expression": job.expression, "timezone": job.timezone},
                    ),
                    desired,
                )
            )
        elif action == "update":
            writes.append(
                (
                    planning.update(
                        "schedule",
                        f"{group}/{job.name}",
                        f"update schedule {job.name}: " + "; ".join(changes),
                    ),
                    desired,
                )
            )
        expression = cron.parse(job.expression)
        runs = (
            single.upcoming(expression, job.timezone, count, found) if job.enabled and count else []
        )
        result.jobs.append(
            JobPlan(
                name=job.name,
                action=action,
                expression=job.expression,
                timezone=job.timezone,
                state=state,
                changes=changes,
                schedule_arn=(found or {}).get("Arn"),
                next_runs=runs,
                written=job.written,
            )
        )

    # The changes in the order they are made: the group, then each job's schedule, then the
    # schedules no job names (once confirmed; a preview's confirm agrees, as it deletes nothing).
    if writes:
        single.ensure_group(ctx, group, exists)
    sent = [
        ctx.plan.change(
            change,
            partial(_send, ctx, change.action, desired, role.changed, sleep),
        )
        for change, desired in writes
    ]
    if any(arn is not None for arn in sent):
        arns = {
            name: (single.get_schedule(ctx, name, group) or {}).get("Arn")
            for name in {str(desired["Name"]) for _, desired in writes}
        }
        for planned in result.jobs:
            planned.schedule_arn = arns.get(planned.name, planned.schedule_arn)
    deleted: list[str] = []
    if stale and prune:
        if confirm(stale):
            for name in stale:
                deleted.append(name)
                if ctx.plan.change(
                    planning.delete(
                        "schedule",
                        f"{group}/{name}",
                        f"delete schedule {name} in group {group} (no job names it)",
                    ),
                    partial(_delete, ctx, name, group),
                ):
                    result.pruned.append(name)
        else:
            ctx.reporter.info("kept them (not confirmed)")
    elif stale:
        ctx.reporter.warn(
            f"schedule{'s' if len(stale) > 1 else ''} {', '.join(stale)} in group {group}: "
            "no job names "
            f"{'them' if len(stale) > 1 else 'it'} any more; `gcpfargate schedule --prune` "
            "deletes what no job names"
        )
    if foreign:
        ctx.reporter.info(
            f"left alone in group {group} (not created by gcpfargate): {', '.join(foreign)}"
        )
    result.plan = ctx.plan.shown(mark)
    result.changed = role.changed or bool(writes) or bool(deleted)
    return result


def _send(
    ctx: Context,
    action: str,
    desired: dict[str, Any],
    role_changed: bool,
    sleep: Callable[[float], None],
) -> bool:
    operation = f"{action}_schedule"
    verb = "Creating" if action == "create" else "Updating"
    with ctx.reporter.step(f"{verb} schedule {desired['Name']}"):
        single.write(ctx, operation, desired, role_changed=role_changed, sleep=sleep)
    return True


def _delete(ctx: Context, name: str, group: str) -> bool:
    with ctx.reporter.step(f"Deleting schedule {name}"):
        ctx.aws.call(
            "scheduler",
            "delete_schedule",
            f"delete schedule {name}",
            Name=name,
            GroupName=group,
        )
    return True
