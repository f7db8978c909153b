"""Run history: every stopped task of the family, kept in CloudWatch Logs by an EventBridge rule.

ECS forgets a stopped task after about an hour, so `jobs` cannot ask ECS how last night's run
ended. deploy makes sure of three things (each read first; nothing is written when they are in
place):

- the log group `/gcpfargate/<family>/runs` with the retention `task.log_retention_days`;
- the Logs resource policy `gcpfargate-events-to-logs` (one per region, for every
  `/gcpfargate/*/runs` group): EventBridge delivers to a log group only when a resource policy
  lets `events.amazonaws.com` create streams and put events there (EventBridge user guide,
  "Amazon CloudWatch Logs permissions"); without it the rule matches and nothing arrives;
- the rule `gcpfargate-<family>-runs` on the default bus: source `aws.ecs`, detail-type
  "ECS Task State Change", `lastStatus` STOPPED, a task definition of this family, targeting the
  group. Each log event is the event as EventBridge delivers it.

Ownership: the rule's description ends with `(managed by gcpfargate)` and it is tagged
`managed-by=gcpfargate`. A rule of that name without the mark is another team's: deploy warns and
leaves it alone.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from gcpfargate.core import plan as planning
from gcpfargate.core.context import Context
from gcpfargate.core.plan import Change
from gcpfargate.core.results import plan_json
from gcpfargate.ecs.logs import describe_log_group
from gcpfargate.errors import AwsError

OWNED_MARK = "(managed by gcpfargate)"  # as ecs.schedule.OWNED_MARK
TAGS = [{"Key": "managed-by", "Value": "gcpfargate"}]
POLICY_NAME = "gcpfargate-events-to-logs"
TARGET_ID = "gcpfargate-run-history"
EVENTS_PRINCIPAL = "events.amazonaws.com"
NAME_LIMIT = 64  # EventBridge rule names and Scheduler group names: 1-64 characters


def short_name(name: str, family: str) -> str:
    """`name` within 64 characters: the first 55 and 8 hex digits of the family's SHA-256."""
    if len(name) <= NAME_LIMIT:
        return name
    return f"{name[:55]}-{hashlib.sha256(family.encode()).hexdigest()[:8]}"


def rule_name(family: str, purpose: str = "runs") -> str:
    return short_name(f"gcpfargate-{family}-{purpose}", family)


def log_group(family: str) -> str:
    return f"/gcpfargate/{family}/runs"


def family_prefix(task_definition_arn: str, family: str) -> str:
    """`arn:aws:ecs:<region>:<account>:task-definition/<family>:`: any revision, no other family."""
    base = task_definition_arn.split(":task-definition/", 1)[0]
    return f"{base}:task-definition/{family}:"


def stopped_pattern(task_definition_arn: str, family: str) -> dict[str, Any]:
    return {
        "source": ["aws.ecs"],
        "detail-type": ["ECS Task State Change"],
        "detail": {
            "lastStatus": ["STOPPED"],
            "taskDefinitionArn": [{"prefix": family_prefix(task_definition_arn, family)}],
        },
    }


def _arn_parts(task_definition_arn: str) -> tuple[str, str, str]:
    _, partition, _, region, account, _ = task_definition_arn.split(":", 5)
    return partition, region, account


def policy_document(partition: str, region: str, account: str) -> dict[str, Any]:
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "EventBridgeWritesRunHistory",
                "Effect": "Allow",
                "Principal": {"Service": [EVENTS_PRINCIPAL]},
                "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
                "Resource": f"arn:{partition}:logs:{region}:{account}:log-group:/gcpfargate/*:*",
            }
        ],
    }


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def policy_allows(document: dict[str, Any], group_arn: str) -> bool:
    """Whether a Logs resource policy lets EventBridge put events into streams of `group_arn`."""
    import fnmatch

    stream = f"{group_arn}:log-stream:x"
    for statement in _as_list(document.get("Statement") or []):
        principal = statement.get("Principal") or {}
        services = _as_list(principal.get("Service", [])) if isinstance(principal, dict) else []
        actions = _as_list(statement.get("Action") or [])
        resources = _as_list(statement.get("Resource") or [])
        if (
            statement.get("Effect") == "Allow"
            and (principal == "*" or EVENTS_PRINCIPAL in services)
            and any(a in ("logs:PutLogEvents", "logs:*", "*") for a in actions)
            and any(fnmatch.fnmatchcase(stream, str(r)) for r in resources)
        ):
            return True
    return False


@dataclass
class HistoryResult:
    log_group: str
    rule: str
    changed: bool = False
    plan: list[Change] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "changed": self.changed,
            "log_group": self.log_group,
            "rule": self.rule,
        }
        if self.plan:
            data["plan"] = plan_json(self.plan)
        return data


# -- ensuring ------------------------------------------------------------------------------------


def describe_rule(ctx: Context, name: str) -> dict[str, Any] | None:
    found = ctx.aws.find(
        "events", "describe_rule", "ResourceNotFoundException", f"read rule {name}", Name=name
    )
    return None if found is None else dict(found)


def owned(rule: dict[str, Any]) -> bool:
    return str(rule.get("Description") or "").endswith(OWNED_MARK)


def ensure_rule(
    ctx: Context,
    name: str,
    pattern: dict[str, Any],
    description: str,
    target: dict[str, Any],
) -> bool:
    """The rule with exactly this pattern and target; False (and a warning) when a rule of that
    name is not gcpfargate's. Records (and, applying, writes) only what differs."""
    current = describe_rule(ctx, name)
    if current is not None and not owned(current):
        ctx.reporter.warn(
            f"EventBridge rule {name} was not created by gcpfargate (its description lacks "
            f"{OWNED_MARK!r}); leaving it alone"
        )
        return False
    text = json.dumps(pattern, sort_keys=True)
    described = f"{description} {OWNED_MARK}"
    had = (
        None
        if current is None
        else {
            "pattern": json.loads(str(current.get("EventPattern") or "{}")),
            "state": current.get("State"),
        }
    )
    wanted = {"pattern": pattern, "state": "ENABLED"}
    same = current is not None and had == wanted and current.get("Description") == described
    if not same:
        params: dict[str, Any] = {
            "Name": name,
            "EventPattern": text,
            "State": "ENABLED",
            "Description": described,
        }
        if current is None:
            params["Tags"] = TAGS
        change = (
            planning.create("EventBridge rule", name, f"create EventBridge rule {name}", wanted)
            if current is None
            else planning.update(
                "EventBridge rule", name, f"update EventBridge rule {name}", had, wanted
            )
        )
        ctx.plan.change(
            change,
            lambda: ctx.aws.call("events", "put_rule", f"write rule {name}", **params),
        )
    targets = []
    if current is not None:
        targets = ctx.aws.paginate(
            "events", "list_targets_by_rule", "Targets", f"read targets of {name}", Rule=name
        )
    existing = next((t for t in targets if t.get("Id") == target["Id"]), None)
    if existing != target:
        ctx.plan.change(
            planning.Change(
                "create" if existing is None else "update",
                "EventBridge target",
                f"{name}/{target['Id']}",
                f"point rule {name} at {target['Arn']}",
                before=None if existing is None else existing.get("Arn"),
                after=target["Arn"],
            ),
            lambda: _put_target(ctx, name, target),
        )
    return True


def _put_target(ctx: Context, name: str, target: dict[str, Any]) -> None:
    answer = ctx.aws.call(
        "events", "put_targets", f"set the target of {name}", Rule=name, Targets=[target]
    )
    if answer.get("FailedEntryCount"):
        entry = answer["FailedEntries"][0]
        raise AwsError(
            f"failed to set the target of rule {name}: {entry.get('ErrorMessage')}",
            "Check events:PutTargets permissions",
        ).with_code(str(entry.get("ErrorCode")))


def _ensure_group(ctx: Context, group: str) -> None:
    days = ctx.settings.task.log_retention_days
    current = describe_log_group(ctx, group)
    if current is None:
        kept = f"retention {days} days" if days else "no retention"
        ctx.plan.change(
            planning.create(
                "CloudWatch log group",
                group,
                f"create CloudWatch log group {group} ({kept})",
                after={"retentionInDays": days} if days else None,
            ),
            lambda: _create_group(ctx, group, days),
        )
    elif days and current.get("retentionInDays") != days:
        ctx.plan.change(
            planning.update(
                "CloudWatch log group",
                group,
                f"set the retention of {group} to {days} days",
                before={"retentionInDays": current.get("retentionInDays")},
                after={"retentionInDays": days},
            ),
            lambda: _set_retention(ctx, group, days),
        )


def _create_group(ctx: Context, group: str, days: int) -> None:
    try:
        ctx.aws.call(
            "logs",
            "create_log_group",
            f"create log group {group}",
            logGroupName=group,
            tags={"managed-by": "gcpfargate"},
        )
    except AwsError as exc:
        if exc.code != "ResourceAlreadyExistsException":
            raise
    if days:
        _set_retention(ctx, group, days)


def _set_retention(ctx: Context, group: str, days: int) -> None:
    ctx.aws.call(
        "logs",
        "put_retention_policy",
        f"set the retention of log group {group}",
        logGroupName=group,
        retentionInDays=days,
    )


def _ensure_policy(ctx: Context, document: dict[str, Any]) -> None:
    policies = ctx.aws.call(
        "logs", "describe_resource_policies", "read the CloudWatch Logs resource policies"
    ).get("resourcePolicies", [])
    current = next((p for p in policies if p.get("policyName") == POLICY_NAME), None)
    if current is not None and json.loads(str(current.get("policyDocument"))) == document:
        return
    ctx.plan.change(
        planning.Change(
            "create" if current is None else "update",
            "Logs resource policy",
            POLICY_NAME,
            f"let EventBridge write to /gcpfargate/*/runs (Logs resource policy {POLICY_NAME})",
        ),
        lambda: ctx.aws.call(
            "logs",
            "put_resource_policy",
            f"write the Logs resource policy {POLICY_NAME}",
            policyName=POLICY_NAME,
            policyDocument=json.dumps(document),
        ),
    )


def read_ahead(ctx: Context) -> None:
    """Send `ensure`'s EventBridge reads ahead (AwsClients.read_ahead): deploy checks the run
    history last, so they are answered while the steps before it run. Its Logs reads are not: a
    first deploy creates the task's awslogs group just before, and a write to Logs makes every Logs
    answer sent ahead stale (asked again: an extra request each)."""
    name = rule_name(ctx.settings.family)
    ctx.aws.read_ahead(
        "events",
        "describe_rule",
        # Only a rule that exists has targets to read.
        then=lambda rule: ctx.aws.paginate_ahead(
            "events", "list_targets_by_rule", "Targets", Rule=name
        ),
        Name=name,
    )


def ensure(ctx: Context, task_definition_arn: str) -> HistoryResult:
    """The run-history group, its resource policy and the rule; writes only what is missing."""
    family = ctx.settings.family
    group, name = log_group(family), rule_name(family)
    partition, region, account = _arn_parts(task_definition_arn)
    mark = ctx.plan.mark()
    with ctx.reporter.step("Checking the run history"):
        _ensure_group(ctx, group)
        _ensure_policy(ctx, policy_document(partition, region, account))
        target = {
            "Id": TARGET_ID,
            "Arn": f"arn:{partition}:logs:{region}:{account}:log-group:{group}",
        }
        ensure_rule(
            ctx,
            name,
            stopped_pattern(task_definition_arn, family),
            f"Keeps every stopped task of {family} in {group}",
            target,
        )
    changed = ctx.plan.apply and bool(ctx.plan.since(mark))  # a preview changes nothing
    return HistoryResult(group, name, changed=changed, plan=ctx.plan.shown(mark))


# -- reading -------------------------------------------------------------------------------------


@dataclass
class Run:
    task_arn: str
    group: str
    started: str | None
    stopped: str | None
    exit_code: int | None
    stop_code: str
    reason: str
    duration_s: float | None
    task_definition_arn: str
    started_by: str = ""
    # The stop time as the event gives it (milliseconds), for the order: `stopped` is shown to
    # the second, and two runs often stop within one.
    stopped_at: datetime | None = field(default=None, repr=False, compare=False)

    @property
    def job(self) -> str:
        return self.group.removeprefix("job:") if self.group.startswith("job:") else ""

    @property
    def failed(self) -> bool:
        return self.stop_code == "TaskFailedToStart" or self.exit_code not in (0, None)

    def to_json(self) -> dict[str, Any]:
        return {
            "task_arn": self.task_arn,
            "group": self.group,
            "started": self.started,
            "stopped": self.stopped,
            "exit_code": self.exit_code,
            "stop_code": self.stop_code,
            "stop_reason": self.reason,
            "duration_s": self.duration_s,
            "failed": self.failed,
        }


def _when(text: Any) -> datetime | None:
    if not text:
        return None
    try:
        return datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    except ValueError:
        return None


def run_from_event(event: dict[str, Any]) -> Run | None:
    detail = event.get("detail")
    if not isinstance(detail, dict) or not detail.get("taskArn"):
        return None
    codes = [c.get("exitCode") for c in detail.get("containers") or []]
    known = [int(code) for code in codes if isinstance(code, int)]
    exit_code = next((code for code in known if code != 0), 0) if known else None
    started, stopped = _when(detail.get("startedAt")), _when(detail.get("stoppedAt"))
    duration = (stopped - started).total_seconds() if started and stopped else None
    return Run(
        task_arn=str(detail["taskArn"]),
        group=str(detail.get("group") or ""),
        started=started.isoformat(timespec="seconds") if started else None,
        stopped=stopped.isoformat(timespec="seconds") if stopped else None,
        exit_code=exit_code,
        stop_code=str(detail.get("stopCode") or ""),
        reason=str(detail.get("stoppedReason") or ""),
        duration_s=round(duration, 3) if duration is not None else None,
        task_definition_arn=str(detail.get("taskDefinitionArn") or ""),
        started_by=str(detail.get("startedBy") or ""),
        stopped_at=stopped,
    )


def read_runs(ctx: Context, family: str, days: int = 35) -> list[Run] | None:
    """Every run the history group holds from the last `days` days, newest first; None when the
    group does not exist (no deploy has made it yet)."""
    group = log_group(family)
    since = int((time.time() - days * 86400) * 1000)
    try:
        events = ctx.aws.paginate(
            "logs",
            "filter_log_events",
            "events",
            f"read the run history {group}",
            logGroupName=group,
            startTime=since,
        )
    except AwsError as exc:
        if exc.code == "ResourceNotFoundException":
            return None
        raise
    runs: dict[str, Run] = {}
    for event in events:
        try:
            body = json.loads(str(event.get("message", "")))
        except ValueError:
            continue
        run = run_from_event(body) if isinstance(body, dict) else None
        if run is not None:
            runs[run.task_arn] = run  # a task stops once; a repeated delivery is the same run
    epoch = datetime.min.replace(tzinfo=UTC)
    return sorted(runs.values(), key=lambda r: r.stopped_at or epoch, reverse=True)
