"""CloudWatch Logs for the task's awslogs containers: the groups a definition names, creating the
missing ones at registration, and following a running task's streams."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any, Protocol

from gcpfargate.core import plan as planning
from gcpfargate.core.context import Context
from gcpfargate.errors import AwsError

DRAIN_PAUSE_SECONDS = 1.5
DRAIN_BUDGET_SECONDS = 30.0


def log_groups(definition: dict[str, Any]) -> list[tuple[str, str]]:
    """(group, region) of every awslogs container, region "" when the definition names none."""
    found: list[tuple[str, str]] = []
    for container in definition.get("containerDefinitions") or []:
        config = container.get("logConfiguration") or {}
        options = config.get("options") or {}
        if config.get("logDriver") == "awslogs" and options.get("awslogs-group"):
            entry = (str(options["awslogs-group"]), str(options.get("awslogs-region", "")))
            if entry not in found:
                found.append(entry)
    return found


def ensure_log_groups(ctx: Context, definition: dict[str, Any]) -> list[str]:
    """Create the awslogs groups the definition names and that do not exist (recorded on
    `ctx.plan`; a preview creates none). Returns the groups this run created."""
    created: list[str] = []
    for group, region in log_groups(definition):
        if region and region != ctx.aws.region:
            ctx.reporter.warn(
                f"log group {group} is in {region}, not {ctx.aws.region}: not checked; create it "
                "there if it is missing"
            )
            continue
        if log_group_exists(ctx, group):
            continue
        days = ctx.settings.task.log_retention_days
        change = planning.create(
            "CloudWatch log group",
            group,
            f"create CloudWatch log group {group}" + (f" (retention {days} days)" if days else ""),
            after={"retentionInDays": days} if days else None,
        )
        if ctx.plan.change(change, partial(_create, ctx, group, days)):
            created.append(group)
    return created


def _create(ctx: Context, group: str, days: int) -> bool:
    """Create `group` with its retention; False when someone else created it meanwhile."""
    with ctx.reporter.step(f"Creating log group {group}"):
        try:
            ctx.aws.call(
                "logs", "create_log_group", f"create log group {group}", logGroupName=group
            )
        except AwsError as exc:
            if exc.code == "ResourceAlreadyExistsException":
                # created meanwhile by someone else: not our change (nor its retention)
                return False
            if not log_group_exists(ctx, group):
                raise
            # The create landed but its answer was lost: the group is this run's, and a rerun
            # would skip it, so its retention is set now.
        if days:
            _set_retention(ctx, group, days)
    return True


def _set_retention(ctx: Context, group: str, days: int) -> None:
    """A new group keeps logs forever (and bills for them) until a retention is set. If setting it
    fails, the group this run just made (empty: nothing has run yet) goes again: a rerun skips
    groups that exist, so it would otherwise never get its retention."""
    try:
        ctx.aws.call(
            "logs",
            "put_retention_policy",
            f"set the retention of log group {group}",
            logGroupName=group,
            retentionInDays=days,
        )
    except AwsError:
        try:
            ctx.aws.call(
                "logs", "delete_log_group", f"delete log group {group}", logGroupName=group
            )
        except AwsError as cleanup:
            ctx.reporter.warn(
                f"log group {group} has no retention and could not be removed ({cleanup.message}): "
                f"aws logs put-retention-policy --log-group-name {group} --retention-in-days {days}"
            )
        raise


def log_group_exists(ctx: Context, group: str) -> bool:
    return describe_log_group(ctx, group) is not None


def describe_log_group(ctx: Context, group: str) -> dict[str, Any] | None:
    """The log group named `group` as DescribeLogGroups shows it, or None."""
    # A prefix lists every group below it: page through all of them, not just the first 50.
    found = ctx.aws.paginate(
        "logs",
        "describe_log_groups",
        "logGroups",
        f"look up log group {group}",
        logGroupNamePrefix=group,
    )
    return next((item for item in found if item.get("logGroupName") == group), None)


def read_ahead(ctx: Context, definition: dict[str, Any], region: str) -> None:
    """Send `ensure_log_groups`' reads ahead (AwsClients.read_ahead) for the awslogs groups of
    `definition` that are in `region` (what the definition says `{{ region }}` is) or name no
    region."""
    for group, in_region in log_groups(definition):
        if in_region in ("", region):
            ctx.aws.paginate_ahead(
                "logs", "describe_log_groups", "logGroups", logGroupNamePrefix=group
            )


class LogFollower:
    """Follows one container's awslogs stream; tolerates the stream not existing yet."""

    def __init__(self, ctx: Context, logs: Any, group: str, stream: str, label: str) -> None:
        self.ctx, self.logs, self.group, self.stream, self.label = ctx, logs, group, stream, label
        self.token: str | None = None
        self.broken = False

    def poll(self) -> int:
        """Print the events that arrived since the last poll; how many there were."""
        shown = 0
        if self.broken:
            return shown
        while True:
            params: dict[str, Any] = {
                "logGroupName": self.group,
                "logStreamName": self.stream,
                "startFromHead": True,
            }
            if self.token:
                params["nextToken"] = self.token
            try:
                page = self.logs.find(
                    "logs",
                    "get_log_events",
                    "ResourceNotFoundException",
                    f"read log stream {self.stream}",
                    **params,
                )
            except AwsError as exc:
                # Logs are a convenience: say why they stopped, keep waiting for the task.
                self.broken = True
                self.ctx.reporter.warn(
                    f"cannot follow log stream {self.group}/{self.stream}: {exc.message}"
                )
                return shown
            if page is None:
                return shown  # the container has not written anything yet
            for event in page.get("events", []):
                message = str(event.get("message", "")).rstrip("\n")
                self.ctx.reporter.log(f"[{self.label}] {message}" if self.label else message)
                shown += 1
            token = page.get("nextForwardToken")
            if not page.get("events") or token == self.token:
                self.token = token or self.token
                return shown
            self.token = token


class Follower(Protocol):
    def poll(self) -> int: ...


def drain(
    followers: Sequence[Follower],
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> None:
    """After the task stopped: keep polling until two polls in a row bring nothing.

    CloudWatch Logs delivers a container's last lines seconds after ECS reports STOPPED, so one
    last poll misses them. Bounded by `DRAIN_BUDGET_SECONDS` for a stream that keeps growing."""
    if not followers:
        return
    deadline = clock() + DRAIN_BUDGET_SECONDS
    quiet = 0
    while quiet < 2:
        quiet = quiet + 1 if sum(follower.poll() for follower in followers) == 0 else 0
        if quiet >= 2 or clock() + DRAIN_PAUSE_SECONDS > deadline:
            return
        sleep(DRAIN_PAUSE_SECONDS)


def log_followers(ctx: Context, definition: dict[str, Any], task_arn: str) -> list[LogFollower]:
    task_id = task_arn.rsplit("/", 1)[-1]
    containers = definition.get("containerDefinitions", [])
    followers: list[LogFollower] = []
    for container in containers:
        config = container.get("logConfiguration") or {}
        options = config.get("options") or {}
        if config.get("logDriver") != "awslogs" or not options.get("awslogs-group"):
            continue
        prefix = options.get("awslogs-stream-prefix")
        if not prefix:
            ctx.reporter.detail(
                f"container {container['name']} has no awslogs-stream-prefix; not following its "
                "logs"
            )
            continue
        logs = ctx.aws
        region = options.get("awslogs-region")
        if region and region != ctx.aws.region:
            from gcpfargate.clients.aws import AwsClients

            logs = AwsClients(region=region, profile=ctx.settings.aws.profile)
        label = container["name"] if len(containers) > 1 else ""
        followers.append(
            LogFollower(
                ctx,
                logs,
                options["awslogs-group"],
                f"{prefix}/{container['name']}/{task_id}",
                label,
            )
        )
    if not followers:
        ctx.reporter.detail("no container uses the awslogs driver; there are no logs to follow")
    return followers
