"""`gcpfargate run`: start the task on Fargate, follow it to STOPPED, and report how it ended.

The task runs the family's latest ACTIVE revision (or `revision`) with the `[run]` network
settings. While waiting, the containers' awslogs streams (`<prefix>/<container>/<task id>`) are
followed and each new event goes to `ctx.reporter.log`. The result carries the essential
container's exit code, which the CLI passes on as its own exit code, so `gcpfargate run` can sit
in a CI job or a shell script like the program itself would.

A task that never ran its program (Fargate's `TaskFailedToStart`, or no exit code at all) is an
error with the stop reason and a hint: nearly always the execution role cannot read the secret or
pull the image, or the subnets cannot reach AWS. RunTask's `failures` are errors as well.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from gcpfargate.config import Settings
from gcpfargate.core import plan as planning
from gcpfargate.core.context import Context
from gcpfargate.ecs import cluster as ecs
from gcpfargate.ecs import logs
from gcpfargate.ecs.overrides import TaskOverrides, ecs_overrides
from gcpfargate.errors import AwsError, OperationError
from gcpfargate.iam import propagation

STARTED_BY = "gcpfargate"
FIRST_POLL_SECONDS = 1.0  # tasks take tens of seconds to start: begin briskly, then back off


@dataclass
class RunResult:
    task_arn: str | None
    exit_code: int | None
    stopped_reason: str = ""
    task_definition_arn: str = ""
    request: dict[str, Any] | None = None  # the RunTask request (a preview shows it)
    warnings: list[str] = field(default_factory=list)

    @property
    def task_id(self) -> str:
        return (self.task_arn or "").rsplit("/", 1)[-1]

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"task_arn": self.task_arn, "exit_code": self.exit_code}
        if self.task_arn is None and self.request is not None:
            data["request"] = self.request
        return data


def build_run_request(
    settings: Settings,
    task_definition_arn: str,
    overrides: dict[str, Any] | None = None,
    group: str = "",
) -> dict[str, Any]:
    """Exactly the RunTask parameters `gcpfargate run` sends (and `--dry-run` prints)."""
    request: dict[str, Any] = {
        "cluster": settings.run.cluster,
        "taskDefinition": task_definition_arn,
        "launchType": "FARGATE",
        "platformVersion": settings.run.platform_version,
        "count": 1,
        "startedBy": STARTED_BY,
        "networkConfiguration": ecs.network_configuration(settings),
    }
    if overrides:
        request["overrides"] = overrides
    if group:
        request["group"] = group  # a job's tasks: `job:<name>`, as its schedule starts them
    return request


def run(
    ctx: Context,
    revision: int | None = None,
    wait: bool = True,
    overrides: TaskOverrides | None = None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
    job: str | None = None,
) -> RunResult:
    """Start the task (with `job`: that `[jobs.<name>]`'s overrides and `[run]` values, flags
    over them, in its task group) and follow it to the end."""
    group = ""
    if job is not None:
        from gcpfargate.ecs import jobs

        found = jobs.find(ctx.settings, job)
        ctx.settings = jobs.settings_for(ctx.settings, found)
        overrides = jobs.overrides_for(found, overrides)
        group = found.group
    settings = ctx.settings
    settings.require("task.family")
    # Config first: a missing subnet list should not cost an AWS round trip.
    ecs.network_configuration(settings)
    with ctx.reporter.step(f"Reading task definition {settings.family}"):
        definition = ecs.runnable_task_definition(ctx, settings.family, revision)
    definition_arn = str(definition["taskDefinitionArn"])
    request = build_run_request(
        settings, definition_arn, ecs_overrides(overrides or TaskOverrides(), definition), group
    )
    cluster = settings.run.cluster
    shown = definition_arn.rsplit("/", 1)[-1]

    def start() -> dict[str, Any]:
        with ctx.reporter.step(f"Starting {shown} on cluster {cluster}"):
            return _start(ctx, request, cluster)

    task = ctx.plan.change(
        planning.create("ECS task", shown, f"run {shown} on cluster {cluster}"), start
    )
    if task is None:  # a preview: the task is known only after apply; show the request instead
        return RunResult(
            task_arn=None, exit_code=None, task_definition_arn=definition_arn, request=request
        )
    task_arn = str(task["taskArn"])
    ctx.reporter.info(f"started task {task_arn}")
    if not wait:
        return RunResult(task_arn=task_arn, exit_code=None, task_definition_arn=definition_arn)

    followers = logs.log_followers(ctx, definition, task_arn)
    stopped = wait_until_stopped(ctx, cluster, task_arn, followers, sleep=sleep, clock=clock)
    return outcome(stopped, definition)


def _start(ctx: Context, request: dict[str, Any], cluster: str) -> dict[str, Any]:
    try:
        # Right after a deploy changed the execution role, ECS may not be able to assume it yet.
        response = propagation.retry_while(
            lambda: ctx.aws.call("ecs", "run_task", "start the task", **request),
            propagation.assume_role_refused,
            ctx.reporter,
            "start the task",
        )
    except AwsError as exc:
        if exc.code == "ClusterNotFoundException":
            raise AwsError(
                f"failed to start the task: ECS cluster {cluster} does not exist", ecs.CLUSTER_HINT
            ).with_code(exc.code) from None
        raise
    failures = response.get("failures") or []
    tasks = response.get("tasks") or []
    if failures or not tasks:
        reasons = (
            "; ".join(
                f"{f.get('reason', 'unknown')}" + (f" ({f['detail']})" if f.get("detail") else "")
                for f in failures
            )
            or "no task and no failure returned"
        )
        raise AwsError(
            f"ECS did not start the task on cluster {cluster}: {reasons}",
            "See "
            "https://docs.aws.amazon.com/AmazonECS/latest/developerguide/api_failures_messages.html",
        ).with_code("RunTaskFailure")
    return dict(tasks[0])


# -- waiting and the outcome ---------------------------------------------------------------------


def wait_until_stopped(
    ctx: Context,
    cluster: str,
    task_arn: str,
    followers: list[logs.LogFollower],
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> dict[str, Any]:
    """Poll DescribeTasks with backoff until STOPPED, streaming logs; the stopped task
    description."""
    timeout = max(1, ctx.settings.run.wait_timeout)
    longest = max(1.0, float(ctx.settings.run.poll_interval))
    task_id = task_arn.rsplit("/", 1)[-1]
    deadline = clock() + timeout
    interval = min(FIRST_POLL_SECONDS, longest)
    status = ""
    try:
        with ctx.reporter.step(f"Waiting for task {task_id} to stop"):
            while True:
                task = _describe(ctx, cluster, task_arn)
                if task.get("lastStatus") != status:
                    status = str(task.get("lastStatus"))
                    ctx.reporter.detail(f"task {task_id} is {status}")
                for follower in followers:
                    follower.poll()
                if status == "STOPPED":
                    logs.drain(followers, sleep=sleep, clock=clock)
                    return task
                remaining = deadline - clock()
                if remaining <= 0:
                    raise OperationError(
                        f"task {task_id} did not stop within run.wait_timeout = {timeout} s (it is "
                        f"{status})",
                        f"It keeps running; stop it with `aws ecs stop-task --cluster {cluster} "
                        f"--task {task_id}` "
                        "or raise run.wait_timeout",
                    )
                sleep(min(interval, remaining))
                interval = min(interval * 1.5, longest)
    except KeyboardInterrupt:
        ctx.reporter.warn(
            f"stopped waiting; task {task_id} keeps running on cluster {cluster} "
            f"(`aws ecs stop-task --cluster {cluster} --task {task_id}` stops it)"
        )
        raise


def _describe(ctx: Context, cluster: str, task_arn: str) -> dict[str, Any]:
    response = ctx.aws.call(
        "ecs", "describe_tasks", "read the task's status", cluster=cluster, tasks=[task_arn]
    )
    tasks = response.get("tasks") or []
    if not tasks:
        reason = (
            "; ".join(str(f.get("reason")) for f in response.get("failures") or []) or "not found"
        )
        raise AwsError(
            f"failed to read task {task_arn}: {reason}",
            "ECS forgets stopped tasks after about an hour; look in the ECS console",
        ).with_code("MISSING")
    return dict(tasks[0])


def outcome(task: dict[str, Any], definition: dict[str, Any]) -> RunResult:
    """The exit code of the essential container(s); an error when the program never ran."""
    task_arn = str(task["taskArn"])
    task_id = task_arn.rsplit("/", 1)[-1]
    reason = str(task.get("stoppedReason") or "")
    essential = {
        c["name"] for c in definition.get("containerDefinitions", []) if c.get("essential", True)
    }
    containers = [c for c in task.get("containers", []) if c.get("name") in essential] or task.get(
        "containers", []
    )
    codes = [c.get("exitCode") for c in containers]
    if (
        task.get("stopCode") == "TaskFailedToStart"
        or not codes
        or all(code is None for code in codes)
    ):
        details = [f"{c['name']}: {c['reason']}" for c in containers if c.get("reason")]
        why = "; ".join([reason or str(task.get("stopCode") or "no stop reason given"), *details])
        raise OperationError(f"task {task_id} failed to start: {why}", start_failure_hint(why))
    warnings = [
        f"container {c.get('name')} has no exit code ({c.get('reason') or 'it did not run'})"
        for c in containers
        if c.get("exitCode") is None
    ]
    exit_code = next((int(code) for code in codes if code not in (None, 0)), 0)
    return RunResult(
        task_arn=task_arn,
        exit_code=exit_code,
        stopped_reason=reason,
        task_definition_arn=str(definition.get("taskDefinitionArn", "")),
        warnings=warnings,
    )


def start_failure_hint(reason: str) -> str:
    """What to do about the usual reasons a Fargate task never starts."""
    text = reason.lower()
    if any(
        word in text for word in ("retrieve secret", "secretsmanager", "from asm", "ssm", "kms")
    ):
        return (
            "The execution role probably cannot read the secret (or decrypt it); run `gcpfargate "
            "doctor`, then `gcpfargate bootstrap --grant`"
        )
    if (
        "cannotpullcontainer" in text
        or "registry auth" in text
        or "pull image" in text
        or "ecr" in text
    ):
        return (
            "The image could not be pulled: check it exists (`gcpfargate push-image`), the "
            "execution role's ECR permissions, and that the subnets reach ECR (a public IP via "
            "run.assign_public_ip, a NAT gateway or VPC endpoints); run `gcpfargate doctor`"
        )
    if "timeout" in text or "deadline exceeded" in text:
        return (
            "The task could not reach AWS endpoints: use a public subnet with run.assign_public_ip "
            "= true, or a NAT gateway / VPC endpoints"
        )
    if "log" in text:
        return (
            "Check that the awslogs group exists and the execution role may write to it; "
            "run `gcpfargate doctor`"
        )
    return "Run `gcpfargate doctor` to check the secret, the execution role and the image"
