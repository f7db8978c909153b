"""`gcpfargate schedule`: an EventBridge Scheduler schedule that runs the task on Fargate.

The schedule (`schedule.name`, default `gcpfargate-<family>`, in `schedule.group`) targets the
`run.cluster` with the `[run]` network settings, in the time zone `schedule.timezone`.

Decisions worth knowing:
- **Which revision runs.** The target names the task-definition *family* ARN without a revision,
  so every invocation runs the newest ACTIVE revision: `gcpfargate deploy` alone updates what the
  schedule runs (RunTask resolves a family to its latest ACTIVE revision). `pin_revision=True`
  (`--pin-revision`) targets the current latest revision's ARN instead.
- **The scheduler role** `gcpfargate-<family>-scheduler` (unless `schedule.role_arn` is given)
  trusts scheduler.amazonaws.com for this account only and may `ecs:RunTask` the family (any
  revision) on this cluster and `iam:PassRole` the execution and task roles of the latest
  revision to ECS tasks. Rerun `gcpfargate schedule` when a new revision changes those roles.
- **Idempotent.** The desired schedule is compared with `GetSchedule`; when they agree nothing
  is written (`changed: false`). UpdateSchedule replaces the whole schedule, so an update also
  resets fields set by hand outside gcpfargate.
- **Sticky expression and time zone.** When no expression is configured (no flag, variable or
  file value) an existing schedule keeps its expression, so `gcpfargate schedule --disable` just
  disables it; likewise an unconfigured time zone is kept, so `--rate "1 hour"` keeps Asia/Tokyo.
- **Ownership.** A schedule gcpfargate writes carries the mark `(managed by gcpfargate)` at the end
  of its description. One without it (another team's, one made by hand, a typo in schedule.name)
  is never updated or deleted: exit 2, naming it; `--adopt` takes it over deliberately (the update
  writes the mark).
- **Delete** removes the schedule only; the scheduler role stays (it may serve other schedules).
- **Next runs** are computed locally (`gcpfargate.awsspec.cron`); rate schedules count from the
  schedule's start date or its last modification, as EventBridge Scheduler does.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from gcpfargate.awsspec import cron
from gcpfargate.core import plan as planning
from gcpfargate.core.context import Context
from gcpfargate.core.plan import Change
from gcpfargate.core.results import plan_json
from gcpfargate.ecs import cluster as ecs
from gcpfargate.ecs.overrides import TaskOverrides, ecs_overrides
from gcpfargate.errors import AwsError, ConfigError, UsageError
from gcpfargate.iam import policy, propagation, roles
from gcpfargate.settings import own_role_name

SCHEDULER_PRINCIPAL = "scheduler.amazonaws.com"
# The role is global, the family and cluster it may run are regional: one policy per region, so a
# schedule in another region adds its grant instead of replacing this one. The single policy of
# older versions keeps its name and is removed once it grants nothing outside this region.
ROLE_POLICY_NAME = "gcpfargate-run-task"


def role_policy_name(region: str) -> str:
    return f"{ROLE_POLICY_NAME}-{region}"


# Retry a failed invocation (throttled RunTask, no capacity) for up to an hour, a few times.
RETRY_POLICY = {"MaximumEventAgeInSeconds": 3600, "MaximumRetryAttempts": 3}
DEFAULT_NEXT = 5
OWNED_MARK = "(managed by gcpfargate)"  # ends the description of every schedule gcpfargate writes


def owned(schedule: dict[str, Any]) -> bool:
    return str(schedule.get("Description") or "").endswith(OWNED_MARK)


def refuse_foreign(schedule: dict[str, Any] | None, verb: str, adopt: bool) -> None:
    """Stop before changing a schedule gcpfargate did not create, unless adopting it is asked."""
    if schedule is None or adopt or owned(schedule):
        return
    name, group = schedule.get("Name"), schedule.get("GroupName") or "default"
    raise UsageError(
        f"schedule {name} in group {group} was not created by gcpfargate (its description lacks "
        f"the mark {OWNED_MARK!r}); refusing to {verb} it",
        "Set schedule.name (--name) to a schedule of your own, or pass --adopt to take this one "
        "over deliberately",
    )


@dataclass
class ScheduleResult:
    schedule_arn: str | None
    expression: str
    timezone: str
    state: str  # ENABLED, DISABLED, or DELETED / ABSENT after --delete
    changed: bool
    next_runs: list[str] = field(default_factory=list)
    name: str = ""
    group: str = ""
    role_arn: str = ""
    task_definition_arn: str = ""
    plan: list[Change] = field(default_factory=list)
    request: dict[str, Any] | None = None  # what a preview would send
    read_only: bool = False  # --show: nothing could change, so no `changed` is reported
    written: str = ""  # the expression as typed when it was converted (`@daily`, five-field cron)

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "schedule_arn": self.schedule_arn,
            "expression": self.expression,
            "timezone": self.timezone,
            "state": self.state,
            "changed": self.changed,
            "next_runs": self.next_runs,
        }
        if self.read_only:
            data.pop("changed")
        if self.written:
            data["written"] = self.written
        if self.request is not None:
            data["plan"] = plan_json(self.plan)
            data["request"] = self.request
        return data


def schedule_name(ctx: Context) -> str:
    name = ctx.settings.schedule.name or f"gcpfargate-{ctx.settings.family}"
    if len(name) > 64:
        raise ConfigError(
            f"the default schedule name {name} is longer than 64 characters",
            "Set schedule.name (GCPFARGATE_SCHEDULE_NAME)",
        )
    return name


def scheduler_role_name(ctx: Context) -> str:
    return own_role_name(ctx.settings.family, "scheduler")


# -- reading ------------------------------------------------------------------------------------


def get_schedule(ctx: Context, name: str, group: str) -> dict[str, Any] | None:
    found = ctx.aws.find(
        "scheduler",
        "get_schedule",
        "ResourceNotFoundException",
        f"read schedule {name}",
        Name=name,
        GroupName=group,
    )
    return None if found is None else dict(found)


def upcoming(
    expression: cron.Expression,
    timezone: str,
    count: int,
    schedule: dict[str, Any] | None = None,
    now: datetime | None = None,
) -> list[str]:
    now = now or datetime.now(UTC)
    anchor = None
    if expression.kind == "rate" and schedule:
        anchor = (
            schedule.get("StartDate")
            or schedule.get("LastModificationDate")
            or schedule.get("CreationDate")
        )
        if isinstance(anchor, str):
            anchor = datetime.fromisoformat(anchor)
    runs = cron.next_runs(expression, cron.zone(timezone), count, now, anchor=anchor)
    return [when.isoformat(timespec="seconds") for when in runs]


def show(ctx: Context, count: int = DEFAULT_NEXT) -> ScheduleResult:
    """The current schedule and its next runs; changes nothing."""
    ctx.settings.require("task.family")
    name, group = schedule_name(ctx), ctx.settings.schedule.group
    current = get_schedule(ctx, name, group)
    if current is None:
        raise AwsError(
            f"schedule {name} does not exist in group {group}",
            'Create it with `gcpfargate schedule --cron "0 3 * * ? *"` (or --rate, --expression)',
        ).with_code("ResourceNotFoundException")
    result = _result_from(current, changed=False, count=count)
    result.read_only = True
    return result


def _result_from(
    schedule: dict[str, Any],
    changed: bool,
    count: int,
    plan: list[Change] | None = None,
    request: dict[str, Any] | None = None,
) -> ScheduleResult:
    timezone = str(schedule.get("ScheduleExpressionTimezone") or "UTC")
    text = str(schedule["ScheduleExpression"])
    try:
        expression = cron.parse(text)
        runs = (
            upcoming(expression, timezone, count, schedule)
            if schedule.get("State") != "DISABLED"
            else []
        )
    except cron.ExpressionError:
        runs = []  # a form this evaluator does not know: still show the schedule
    target = schedule.get("Target", {})
    return ScheduleResult(
        schedule_arn=schedule.get("Arn"),
        expression=text,
        timezone=timezone,
        state=str(schedule.get("State")),
        changed=changed,
        next_runs=runs,
        name=str(schedule.get("Name", "")),
        group=str(schedule.get("GroupName", "")),
        role_arn=str(target.get("RoleArn", "")),
        task_definition_arn=str(target.get("EcsParameters", {}).get("TaskDefinitionArn", "")),
        plan=plan or [],
        request=request,
    )


# -- the scheduler role ------------------------------------------------------------------------


def trust_policy(account_id: str) -> dict[str, Any]:
    # SourceAccount keeps other accounts' schedules from using this role (confused deputy).
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Service": SCHEDULER_PRINCIPAL},
                "Action": "sts:AssumeRole",
                "Condition": {"StringEquals": {"aws:SourceAccount": account_id}},
            }
        ],
    }


def run_task_policy(
    family_arn: str, cluster: str | list[str], pass_roles: list[str]
) -> dict[str, Any]:
    """RunTask on this family (any revision) on this cluster (or these: scheduled jobs may name
    their own); PassRole of the task's roles to ECS tasks."""
    if isinstance(cluster, list) and len(cluster) == 1:
        cluster = cluster[0]
    statements: list[dict[str, Any]] = [
        {
            "Sid": "RunTaskDefinition",
            "Effect": "Allow",
            "Action": "ecs:RunTask",
            "Resource": [family_arn, f"{family_arn}:*"],
            "Condition": {"ArnEquals": {"ecs:cluster": cluster}},
        }
    ]
    if pass_roles:
        statements.append(
            {
                "Sid": "PassTaskRoles",
                "Effect": "Allow",
                "Action": "iam:PassRole",
                "Resource": pass_roles,
                "Condition": {"StringEquals": {"iam:PassedToService": policy.ECS_TASKS_PRINCIPAL}},
            }
        )
    return {"Version": "2012-10-17", "Statement": statements}


def ensure_role(
    ctx: Context, family_arn: str, cluster: str | list[str], pass_roles: list[str]
) -> roles.RoleOutcome:
    """gcpfargate's scheduler role, created or corrected; or the configured role, checked."""
    configured = ctx.settings.schedule.role_arn
    if configured:
        role = roles.require_given(
            ctx,
            configured,
            "schedule.role_arn",
            "Fix the ARN, or leave it empty so gcpfargate creates its own scheduler role",
        )
        if not policy.trusts(role.get("AssumeRolePolicyDocument", {}), SCHEDULER_PRINCIPAL):
            ctx.reporter.warn(
                f"role {role['RoleName']} does not trust {SCHEDULER_PRINCIPAL}; the schedule will "
                "fail to run the task"
            )
        return roles.RoleOutcome(configured, created=False, changed=False)
    name = scheduler_role_name(ctx)
    trust = trust_policy(ctx.aws.account_id)
    inline_name = role_policy_name(ctx.aws.region)
    outcome = roles.ensure_own(
        ctx,
        roles.OwnRole(
            name=name,
            description="Lets EventBridge Scheduler run the ECS task; managed by gcpfargate",
            summary=f"trusts {SCHEDULER_PRINCIPAL}; may run {family_arn} and pass "
            f"{', '.join(pass_roles) or 'no roles'}",
            trust=trust,
            trusted=lambda document: roles.same_statements(document, trust),
            inline_name=inline_name,
            inline=run_task_policy(family_arn, cluster, pass_roles),
            inline_action=f"set policy {inline_name} of role {name}",
        ),
    )
    if outcome.changed and not outcome.created:
        _retire_single_policy(ctx, name)
    return outcome


def _retire_single_policy(ctx: Context, role: str) -> None:
    """Remove the older single run-task policy when everything it grants is in this region."""
    document = roles.get_inline_policy(ctx, role, ROLE_POLICY_NAME)
    if document is None:
        return
    resources = [
        str(arn)
        for statement in policy.statements([document])
        for arn in (
            [statement.get("Resource")]
            if isinstance(statement.get("Resource"), str)
            else statement.get("Resource") or []
        )
        if ":ecs:" in str(arn)
    ]
    if all(arn.split(":")[3] == ctx.aws.region for arn in resources):
        ctx.plan.change(
            planning.delete(
                "IAM role policy",
                f"{role}/{ROLE_POLICY_NAME}",
                f"remove policy {ROLE_POLICY_NAME} of role {role}",
            ),
            lambda: ctx.aws.call(
                "iam",
                "delete_role_policy",
                f"remove policy {ROLE_POLICY_NAME} of role {role}",
                RoleName=role,
                PolicyName=ROLE_POLICY_NAME,
            ),
        )


# -- the schedule ----------------------------------------------------------------------------


def _comparable(schedule: dict[str, Any]) -> dict[str, Any]:
    """The fields gcpfargate manages, normalised so a GetSchedule answer and a request compare
    equal."""
    target = schedule.get("Target") or {}
    ecs = target.get("EcsParameters") or {}
    network = (ecs.get("NetworkConfiguration") or {}).get("awsvpcConfiguration") or {}
    return {
        "expression": schedule.get("ScheduleExpression"),
        "timezone": schedule.get("ScheduleExpressionTimezone") or "UTC",
        "state": schedule.get("State") or "ENABLED",
        "flexible time window": schedule.get("FlexibleTimeWindow"),
        "description": schedule.get("Description") or "",
        "target": target.get("Arn"),
        "role": target.get("RoleArn"),
        "retry policy": target.get("RetryPolicy"),
        "task definition": ecs.get("TaskDefinitionArn"),
        "launch type": ecs.get("LaunchType"),
        "platform version": ecs.get("PlatformVersion"),
        "task count": ecs.get("TaskCount", 1),
        "subnets": sorted(network.get("Subnets") or []),
        "security groups": sorted(network.get("SecurityGroups") or []),
        "public ip": network.get("AssignPublicIp") or "DISABLED",
        "overrides": target.get("Input") or "",
        "task group": ecs.get("Group") or "",
    }


comparable = _comparable


def differences(current: dict[str, Any], desired: dict[str, Any]) -> list[str]:
    have, want = _comparable(current), _comparable(desired)
    return [key for key in want if have[key] != want[key]]


def apply(
    ctx: Context,
    disable: bool = False,
    pin_revision: bool = False,
    count: int = DEFAULT_NEXT,
    sleep: Callable[[float], None] = time.sleep,
    overrides: TaskOverrides | None = None,
    adopt: bool = False,
) -> ScheduleResult:
    """Create or update the schedule so it matches the settings; no write when it already does.
    A schedule without gcpfargate's mark is refused unless `adopt`."""
    settings = ctx.settings
    settings.require("task.family")
    name, group = schedule_name(ctx), settings.schedule.group
    configured = settings.schedule.expression
    expression = cron.parse(configured) if configured else None
    if expression is not None and expression.converted:
        ctx.reporter.info(
            f"{expression.written} is {expression.text} in EventBridge's six-field form"
        )
    timezone = settings.schedule.timezone or "UTC"
    cron.zone(timezone)
    network = ecs.network_configuration(
        settings, key_case="upper"
    )  # fails early on missing subnets

    mark = ctx.plan.mark()
    with ctx.reporter.step(f"Reading schedule {name} and the task"):
        current = get_schedule(ctx, name, group)
        refuse_foreign(current, "update", adopt)
        if expression is None:
            if current is None:
                settings.require("schedule.expression")
            assert current is not None
            expression = cron.parse(str(current["ScheduleExpression"]))
        if current is not None and settings.sources.get("schedule.timezone") == "default":
            # What is not given is kept: `--rate "1 hour"` changes the expression, not the time
            # zone.
            timezone = str(current.get("ScheduleExpressionTimezone") or "UTC")
        definition = ecs.runnable_task_definition(ctx, settings.family)
        target_cluster = ecs.cluster_arn(ctx, settings.run.cluster)

    revision_arn = str(definition["taskDefinitionArn"])
    family_arn = revision_arn.rsplit(":", 1)[0]
    pass_roles = [
        arn for arn in (definition.get("executionRoleArn"), definition.get("taskRoleArn")) if arn
    ]
    with ctx.reporter.step("Checking the scheduler role"):
        role = ensure_role(
            ctx, family_arn, role_clusters(ctx, target_cluster, settings.run.cluster), pass_roles
        )

    cluster_name = target_cluster.rsplit("/", 1)[-1]
    desired: dict[str, Any] = {
        "Name": name,
        "GroupName": group,
        "ScheduleExpression": expression.text,
        "ScheduleExpressionTimezone": timezone,
        "FlexibleTimeWindow": {"Mode": "OFF"},
        "State": "DISABLED" if disable else "ENABLED",
        "Description": f"Runs ECS task {settings.family} on {cluster_name} {OWNED_MARK}",
        "Target": {
            "Arn": target_cluster,
            "RoleArn": role.arn,
            "RetryPolicy": dict(RETRY_POLICY),
            "EcsParameters": {
                "TaskDefinitionArn": revision_arn if pin_revision else family_arn,
                "LaunchType": "FARGATE",
                "PlatformVersion": settings.run.platform_version,
                "TaskCount": 1,
                "NetworkConfiguration": network,
            },
        },
    }
    if overrides:
        # Scheduler hands a templated ECS target's Input to RunTask as its overrides.
        desired["Target"]["Input"] = json.dumps(
            ecs_overrides(overrides, definition), sort_keys=True
        )
    elif current is not None and (current.get("Target") or {}).get("Input"):
        desired["Target"]["Input"] = current["Target"][
            "Input"
        ]  # not given: kept, like the time zone
    change = schedule_change(current, desired)
    if change is not None:
        if current is None and group != "default":
            ensure_group(ctx, group)
        verb = "Creating" if current is None else "Updating"
        operation = "create_schedule" if current is None else "update_schedule"

        def send() -> dict[str, Any] | None:
            with ctx.reporter.step(f"{verb} schedule {name}"):
                write(ctx, operation, desired, role_changed=role.changed, sleep=sleep)
            return get_schedule(ctx, name, group)

        current = ctx.plan.change(change, send)
    if not ctx.plan.apply:
        # A preview shows the request an apply sends, over what exists; nothing to read back.
        planned = _planned(desired, current, count, ctx.plan.shown(mark))
        return _converted(planned, expression)
    assert current is not None  # just written, or found and unchanged (no change)
    changed = role.changed or change is not None
    result = _converted(_result_from(current, changed=changed, count=count), expression)
    if expression.kind == "cron" and desired["State"] == "ENABLED" and not result.next_runs:
        ctx.reporter.warn(f"{expression.text} never fires after now; the task will not run")
    return result


def schedule_change(current: dict[str, Any] | None, desired: dict[str, Any]) -> Change | None:
    """The change that makes `current` (None: no schedule yet) the `desired` schedule; None when
    they agree. Before and after name the fields that differ (not the overrides' values, which may
    carry the job's environment)."""
    name, group = desired["Name"], desired["GroupName"]
    if current is None:
        return planning.create(
            "schedule",
            f"{group}/{name}",
            f"create schedule {name} in group {group}: {desired['ScheduleExpression']} "
            f"({desired['ScheduleExpressionTimezone']}), {desired['State']}",
            after={
                "expression": desired["ScheduleExpression"],
                "timezone": desired["ScheduleExpressionTimezone"],
                "state": desired["State"],
            },
        )
    changes = differences(current, desired)
    if not changes:
        return None
    have, want = _comparable(current), _comparable(desired)
    shown = [key for key in changes if key != "overrides"]
    return planning.update(
        "schedule",
        f"{group}/{name}",
        f"update schedule {name}: {', '.join(changes)}",
        before={key: have[key] for key in shown} or None,
        after={key: want[key] for key in shown} or None,
    )


def role_clusters(ctx: Context, target_cluster: str, name: str) -> str | list[str]:
    """The clusters the shared scheduler role must allow: this schedule's, and every job's (the
    role has one policy per region, so a job on another cluster is not dropped from it)."""
    settings = ctx.settings
    names = {job.run_settings(settings.run).cluster for job in settings.jobs.values()} - {name}
    if not names:
        return target_cluster
    return sorted({target_cluster, *(ecs.cluster_arn(ctx, other) for other in names)})


def _converted(result: ScheduleResult, expression: cron.Expression) -> ScheduleResult:
    if expression.converted:
        result.written = expression.written
    return result


def _planned(
    desired: dict[str, Any], current: dict[str, Any] | None, count: int, plan: list[Change]
) -> ScheduleResult:
    shown = {**(current or {}), **desired, "Arn": (current or {}).get("Arn")}
    return _result_from(shown, changed=bool(plan), count=count, plan=plan, request=desired)


def group_exists(ctx: Context, group: str) -> bool:
    found = ctx.aws.find(
        "scheduler",
        "get_schedule_group",
        "ResourceNotFoundException",
        f"read schedule group {group}",
        Name=group,
    )
    return found is not None


def ensure_group(ctx: Context, group: str, exists: bool | None = None) -> None:
    """The schedule group, recorded as a change when it is missing (`exists`: already read)."""
    if exists if exists is not None else group_exists(ctx, group):
        return

    def create() -> None:
        ctx.aws.call(
            "scheduler",
            "create_schedule_group",
            f"create schedule group {group}",
            Name=group,
            Tags=[{"Key": "managed-by", "Value": "gcpfargate"}],
        )
        ctx.reporter.info(f"created schedule group {group}")

    ctx.plan.change(
        planning.create("schedule group", group, f"create schedule group {group}"), create
    )


def write(
    ctx: Context,
    operation: str,
    params: dict[str, Any],
    role_changed: bool,
    sleep: Callable[[float], None],
) -> None:
    verb = "create" if operation == "create_schedule" else "update"

    def send() -> None:
        ctx.aws.call("scheduler", operation, f"{verb} schedule {params['Name']}", **params)

    if not role_changed:
        send()
        return
    # A role IAM has just created, or whose trust policy just changed, is not visible to Scheduler
    # for a while: its validation refuses the role until then.
    propagation.retry_while(
        send,
        propagation.scheduler_role_refused,
        ctx.reporter,
        f"{verb} schedule {params['Name']}",
        sleep=sleep,
    )


def delete(ctx: Context, adopt: bool = False) -> ScheduleResult:
    """Delete the schedule (not the scheduler role); no write when it does not exist. A schedule
    without gcpfargate's mark is refused unless `adopt`."""
    ctx.settings.require("task.family")
    name, group = schedule_name(ctx), ctx.settings.schedule.group
    current = get_schedule(ctx, name, group)
    refuse_foreign(current, "delete", adopt)
    if current is None:
        ctx.reporter.info(f"schedule {name} does not exist in group {group}; nothing to delete")
        return ScheduleResult(
            schedule_arn=None,
            expression="",
            timezone="",
            state="ABSENT",
            changed=False,
            name=name,
            group=group,
        )
    result = _result_from(current, changed=True, count=0)
    request: dict[str, Any] = {"Name": name, "GroupName": group}

    def send() -> bool:
        with ctx.reporter.step(f"Deleting schedule {name}"):
            ctx.aws.call("scheduler", "delete_schedule", f"delete schedule {name}", **request)
        return True

    mark = ctx.plan.mark()
    gone = ctx.plan.change(
        planning.delete(
            "schedule",
            f"{group}/{name}",
            f"delete schedule {name} in group {group}",
            before={"expression": result.expression, "state": result.state},
        ),
        send,
    )
    if gone is None:  # a preview: the request an apply sends
        result.plan, result.request = ctx.plan.shown(mark), request
    result.state, result.next_runs = "DELETED", []
    if not ctx.settings.schedule.role_arn:
        ctx.reporter.info(
            f"kept IAM role {scheduler_role_name(ctx)} (other schedules may use it; delete it by "
            "hand if not)"
        )
    return result
