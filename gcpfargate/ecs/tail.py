"""`gcpfargate logs`: the family's awslogs streams interleaved by time, each with its container.

The latest ACTIVE revision says where each container logs (`awslogs-group`, `-stream-prefix`);
a task's stream is `<prefix>/<container>/<task id>` (ECS developer guide, "Using the awslogs log
driver"). FilterLogEvents over the stream prefix `<prefix>/<container>/` returns every task's
lines in time order; the lines of all containers are merged by time. `--job NAME` keeps the tasks
of ECS group `job:<name>`: the ones the run history holds and the ones running now. `--follow`
asks again every `FOLLOW_SECONDS` from the newest line seen, skipping lines already shown.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from gcpfargate.core.context import Context
from gcpfargate.ecs import cluster as ecs
from gcpfargate.ecs import history
from gcpfargate.errors import AwsError, UsageError

FOLLOW_SECONDS = 2.0
JOB_REFRESH_POLLS = 5  # --job --follow: look up the job's tasks again every 5 polls (10 s)
STREAMS_PER_CALL = 100  # FilterLogEvents: at most 100 logStreamNames
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_since(text: str) -> float:
    """`10m`, `2h`, `1d`, `90s`, `1w` → seconds."""
    match = re.fullmatch(r"\s*(\d+)\s*([smhdw])\s*", text or "")
    if not match or int(match.group(1)) == 0:
        raise UsageError(
            f"--since {text!r} is not a duration", "Use a number and a unit: 30s, 10m, 2h, 1d, 1w"
        )
    return int(match.group(1)) * _UNITS[match.group(2)]


@dataclass(frozen=True)
class Source:
    container: str
    group: str
    prefix: str  # "<awslogs-stream-prefix>/<container>/"


@dataclass(frozen=True)
class Line:
    timestamp: int  # epoch milliseconds
    container: str
    task_id: str
    message: str
    event_id: str

    def text(self) -> str:
        when = datetime.fromtimestamp(self.timestamp / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")
        return f"{when[:-3]}Z {self.container}/{self.task_id[:8]} {self.message}"

    def to_json(self) -> dict[str, Any]:
        return {
            "timestamp": datetime.fromtimestamp(self.timestamp / 1000, UTC).isoformat(
                timespec="milliseconds"
            ),
            "container": self.container,
            "task_id": self.task_id,
            "message": self.message,
        }


def sources(ctx: Context, definition: dict[str, Any]) -> list[Source]:
    found = []
    for container in definition.get("containerDefinitions", []):
        config = container.get("logConfiguration") or {}
        options = config.get("options") or {}
        if config.get("logDriver") != "awslogs" or not options.get("awslogs-group"):
            continue
        region = options.get("awslogs-region")
        if region and region != ctx.aws.region:
            ctx.reporter.warn(
                f"container {container['name']} logs to {region}, not {ctx.aws.region}: "
                f"run with --region {region} to read it"
            )
            continue
        prefix = options.get("awslogs-stream-prefix")
        if not prefix:
            ctx.reporter.warn(
                f"container {container['name']} has no awslogs-stream-prefix: its streams "
                "cannot be told apart by task"
            )
            continue
        found.append(
            Source(container["name"], options["awslogs-group"], f"{prefix}/{container['name']}/")
        )
    return found


def job_task_ids(ctx: Context, job: str) -> set[str]:
    """Tasks of ECS group `job:<job>`: stopped ones from the run history, running ones from ECS."""
    family, group = ctx.settings.family, f"job:{job}"
    ids = {
        run.task_arn.rsplit("/", 1)[-1]
        for run in history.read_runs(ctx, family) or []
        if run.group == group
    }
    cluster = ctx.settings.run.cluster
    arns = ctx.aws.find(
        "ecs",
        "list_tasks",
        "ClusterNotFoundException",
        "list the running tasks",
        cluster=cluster,
        family=family,
    )
    running = list((arns or {}).get("taskArns") or [])
    for start in range(0, len(running), 100):
        described = ctx.aws.call(
            "ecs",
            "describe_tasks",
            "read the running tasks",
            cluster=cluster,
            tasks=running[start : start + 100],
        )
        ids |= {
            str(t["taskArn"]).rsplit("/", 1)[-1]
            for t in described.get("tasks") or []
            if t.get("group") == group
        }
    return ids


def _read(ctx: Context, source: Source, start_ms: int, task_ids: set[str] | None) -> Iterator[Line]:
    params: dict[str, Any] = {"logGroupName": source.group, "startTime": start_ms}
    batches: list[dict[str, Any]] = []
    if task_ids is None:
        batches.append({**params, "logStreamNamePrefix": source.prefix})
    else:
        names = sorted(f"{source.prefix}{task_id}" for task_id in task_ids)
        for first in range(0, len(names), STREAMS_PER_CALL):
            batches.append({**params, "logStreamNames": names[first : first + STREAMS_PER_CALL]})
    for batch in batches:
        try:
            events = ctx.aws.paginate(
                "logs", "filter_log_events", "events", f"read log group {source.group}", **batch
            )
        except AwsError as exc:
            if exc.code == "ResourceNotFoundException":
                return  # no group yet, or none of the streams exists yet
            raise
        for event in events:
            stream = str(event.get("logStreamName", ""))
            yield Line(
                int(event.get("timestamp", 0)),
                source.container,
                stream.rsplit("/", 1)[-1],
                str(event.get("message", "")).rstrip("\n"),
                str(event.get("eventId") or f"{stream}/{event.get('timestamp')}"),
            )


class Tail:
    """Lines of every source since a moment, each shown once, in time order."""

    def __init__(self, ctx: Context, job: str | None, since_s: float) -> None:
        ctx.settings.require("task.family")
        self.ctx, self.job = ctx, job
        definition = ecs.require_task_definition(ctx, ctx.settings.family)
        self.sources = sources(ctx, definition)
        if not self.sources:
            raise UsageError(
                f"no container of {definition['taskDefinitionArn'].rsplit('/', 1)[-1]} logs to "
                "CloudWatch Logs (awslogs) with a stream prefix: there are no logs to read",
                'Give the containers "logConfiguration" with the awslogs driver in the template',
            )
        self.start_ms = int((time.time() - since_s) * 1000)
        self.seen: set[str] = set()
        self.polls = 0
        self.task_ids: set[str] | None = None

    def poll(self) -> list[Line]:
        # The job's tasks are looked up again every few polls (a run that starts meanwhile joins
        # within seconds), not on every one: that takes the history and ECS three reads.
        if self.job and self.polls % JOB_REFRESH_POLLS == 0:
            self.task_ids = job_task_ids(self.ctx, self.job)
        self.polls += 1
        task_ids = self.task_ids if self.job else None
        if task_ids is not None and not task_ids:
            return []
        lines = [
            line
            for source in self.sources
            for line in _read(self.ctx, source, self.start_ms, task_ids)
            if line.event_id not in self.seen
        ]
        lines.sort(key=lambda line: (line.timestamp, line.container))
        for line in lines:
            self.seen.add(line.event_id)
        if lines:
            # Lines of the newest millisecond may still arrive: read from it again next time.
            self.start_ms = max(self.start_ms, lines[-1].timestamp)
        return lines


def follow(
    tail: Tail,
    emit: Callable[[Line], None],
    sleep: Callable[[float], None] = time.sleep,
    interval: float = FOLLOW_SECONDS,
) -> None:
    """Show new lines until interrupted (the caller turns Ctrl-C into a clean stop)."""
    while True:
        for line in tail.poll():
            emit(line)
        sleep(interval)
