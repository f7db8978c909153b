"""ECS task timestamps: when a task was created, started and stopped, as DescribeTasks says it.

moto's tasks carry no timestamps at all: its DescribeTasks has no `createdAt`, no `startedAt`, no
`stoppedAt`. Real ECS returns them for every task (ECS API reference, data type Task:
https://docs.aws.amazon.com/AmazonECS/latest/APIReference/API_Task.html, and the example answers of
https://docs.aws.amazon.com/AmazonECS/latest/APIReference/API_DescribeTasks.html):

- `createdAt`: "the time when the task entered the PENDING state";
- `connectivityAt`, `pullStartedAt`, `pullStoppedAt`: network attached, image pull begun and done;
- `startedAt`: "the time when the task transitioned from the PENDING state to the RUNNING state";
- `stoppingAt`, `executionStoppedAt`, `stoppedAt`: when it began to stop, its containers exited,
  and it reached STOPPED.

gcpfargate judges which running tasks read a secret before its current version by `startedAt`
(doctor's key.previous, `rotate-key --revoke-previous`), so the stack must give each task its own.
The layer remembers, per task ARN, the first moment it showed the task in each state and writes
those moments into RunTask, DescribeTasks and StopTask answers, in epoch seconds with milliseconds
as ECS sends them. moto answers RunTask with the task RUNNING already, so here PENDING lasts no time:
createdAt, the pull times and startedAt are the same instant, the RunTask call's.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from tests.stack.proxybase import Answer, Call
from tests.stack.strict.layer import StrictLayer, StrictRule

# lastStatus values from RUNNING on (ECS developer guide, "Amazon ECS task lifecycle").
_STARTED = {"RUNNING", "DEACTIVATING", "STOPPING", "DEPROVISIONING", "STOPPED", "DELETED"}
_STOPPING = {"DEACTIVATING", "STOPPING", "DEPROVISIONING", "STOPPED", "DELETED"}


@dataclass
class TaskTimes:
    created: float
    started: float | None = None
    stopping: float | None = None
    stopped: float | None = None


def _times(layer: StrictLayer) -> dict[str, TaskTimes]:
    return layer.state.setdefault("task_times", {})


def _stamp(times: TaskTimes, task: dict[str, Any], now: float) -> None:
    status = str(task.get("lastStatus", ""))
    if status in _STARTED and times.started is None:
        times.started = now
    if (status in _STOPPING or task.get("desiredStatus") == "STOPPED") and times.stopping is None:
        times.stopping = now
    if status in ("STOPPED", "DELETED") and times.stopped is None:
        times.stopped = now
    task["createdAt"] = times.created
    if times.started is not None:
        for name in ("connectivityAt", "pullStartedAt", "pullStoppedAt", "startedAt"):
            task[name] = times.started
    if times.stopping is not None:
        task["stoppingAt"] = times.stopping
    if times.stopped is not None:
        task["executionStoppedAt"] = task["stoppedAt"] = times.stopped


def stamp(layer: StrictLayer, call: Call, answer: Answer) -> Answer:
    payload = answer.json()
    tasks = payload.get("tasks") or ([payload["task"]] if payload.get("task") else [])
    now = round(time.time(), 3)
    with layer.state_lock:
        known = _times(layer)
        for task in tasks:
            arn = str(task.get("taskArn", ""))
            if not arn:
                continue
            # A task first seen here (started past the layer, e.g. on moto directly) counts from now.
            _stamp(known.setdefault(arn, TaskTimes(now)), task, now)
    return answer.with_json(payload)


RULES = [
    StrictRule(
        "ecs.task_timestamps",
        "ecs",
        ("RunTask", "StartTask", "DescribeTasks", "StopTask"),
        after=stamp,
    ),
]
