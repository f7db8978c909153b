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
as ECS sends them. moto answers RunTask with the task RUNNING already, so here PENDING lasts no
time: createdAt, the pull times and startedAt are the same instant, the RunTask call's.
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


@dataclass(frozen=True)
class Outcome:
    """How a task ends, set by a test before it stops (moto models no exit codes)."""

    exit_code: int | None = 0
    stop_code: str = "EssentialContainerExited"
    reason: str = "Essential container in task exited"


def _apply_outcome(layer: StrictLayer, task: dict[str, Any], operation: str) -> None:
    """A STOPPED task carries the outcome a test set for it; without one, a StopTask stop reads
    as ECS writes it (stopCode UserInitiated, ECS API reference, data type Task, `stopCode`)."""
    if task.get("lastStatus") != "STOPPED":
        return
    outcome = layer.state.get("task_outcomes", {}).get(task.get("taskArn"))
    if outcome is None:
        if operation == "StopTask" or task.get("stopCode"):
            task.setdefault("stopCode", "UserInitiated")
        return
    task["stopCode"] = outcome.stop_code
    task["stoppedReason"] = outcome.reason
    for container in task.get("containers") or []:
        container["lastStatus"] = "STOPPED"
        container.pop("exitCode", None)
        if outcome.exit_code is not None:
            container["exitCode"] = outcome.exit_code
        elif outcome.stop_code == "TaskFailedToStart":
            container["reason"] = outcome.reason


def stamp(layer: StrictLayer, call: Call, answer: Answer) -> Answer:
    payload = answer.json()
    tasks = payload.get("tasks") or ([payload["task"]] if payload.get("task") else [])
    now = round(time.time(), 3)
    stopped_now: list[dict[str, Any]] = []
    with layer.state_lock:
        known = _times(layer)
        for task in tasks:
            arn = str(task.get("taskArn", ""))
            if not arn:
                continue
            # A task first seen here (started past the layer, e.g. on moto directly) counts from
            # now.
            times = known.setdefault(arn, TaskTimes(now))
            first_stop = times.stopped is None
            _stamp(times, task, now)
            _apply_outcome(layer, task, call.operation)
            if first_stop and times.stopped is not None:
                stopped_now.append(dict(task))
    # ECS sends its "ECS Task State Change" event when the task reaches STOPPED (events.py).
    for task in stopped_now:
        layer.emit_task_event(task)
    return answer.with_json(payload)


RULES = [
    StrictRule(
        "ecs.task_timestamps",
        "ecs",
        ("RunTask", "StartTask", "DescribeTasks", "StopTask"),
        after=stamp,
    ),
]
