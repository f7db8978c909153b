"""doctor's checks of the configured ECS service (SKIP when `service.name` is empty).

Each returns (status, detail) with status "OK", "WARN", "FAIL" or "SKIP"; `memo` carries what the
first check read to the second. A service behind the latest revision, or tasks that started
before the current secret version, still work today: WARN, not FAIL.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from gcpfargate.core.context import Context
from gcpfargate.credentials.key import secret
from gcpfargate.ecs import service as svc

NO_SERVICE = "no service configured (service.name)"


def runs_latest(
    ctx: Context, revision: dict[str, Any] | None, memo: dict[str, Any]
) -> tuple[str, str]:
    ref = svc.configured(ctx)
    if ref is None:
        return "SKIP", NO_SERVICE
    try:
        service = svc.describe(ctx, ref)
    except svc.ServiceNotFound as exc:
        return "FAIL", exc.message
    if service.get("status") != "ACTIVE":
        return (
            "FAIL",
            f"service {ref.name} in cluster {ref.cluster} is {service.get('status')}, not ACTIVE",
        )
    memo["service"] = service
    current = str(service.get("taskDefinition") or "")
    if revision is None:
        return (
            "WARN",
            f"service {ref.name} runs {svc.short(current)}; "
            "the family has no ACTIVE revision to compare",
        )
    latest = str(revision.get("taskDefinitionArn", ""))
    if not svc.same_revision(current, latest):
        return "WARN", (
            f"service {ref.name} runs {svc.short(current)}, not the latest {svc.short(latest)} "
            "(gcpfargate deploy rolls it)"
        )
    rolling = " (rollout in progress)" if len(service.get("deployments") or []) > 1 else ""
    return "OK", f"{ref.name} on {ref.cluster} runs {svc.short(current)}{rolling}"


def tasks_hold_current_key(ctx: Context, secret_arn: str, memo: dict[str, Any]) -> tuple[str, str]:
    ref = svc.configured(ctx)
    if ref is None:
        return "SKIP", NO_SERVICE
    if "service" not in memo:
        return "SKIP", "the service was not found"
    if not secret_arn:
        return "SKIP", "the secret does not exist"
    created = secret.current_version_created(ctx, secret_arn)
    if created is None:
        return "SKIP", "the secret has no AWSCURRENT version"
    tasks = _running_task_starts(ctx, ref)
    if not tasks:
        return "OK", f"service {ref.name} has no running tasks"
    started = [when for when in tasks if when is not None]
    if not started:
        return "SKIP", f"ECS gave no start time for the {len(tasks)} running tasks"
    stale = [when for when in started if when < created]
    if stale:
        return "WARN", (
            f"{len(stale)} of {len(started)} running tasks started before the current secret "
            f"version ({created.isoformat(timespec='seconds')}): tasks still hold the previous key "
            "(force a new deployment: aws ecs update-service "
            f"--cluster {ref.cluster} --service {ref.name} --force-new-deployment)"
        )
    return "OK", f"all {len(started)} running tasks started after the current secret version"


def _running_task_starts(ctx: Context, ref: svc.ServiceRef) -> list[datetime | None]:
    """When each running task of the service started (None where ECS does not say)."""
    arns = ctx.aws.paginate(
        "ecs",
        "list_tasks",
        "taskArns",
        f"list the tasks of service {ref.name}",
        cluster=ref.cluster,
        serviceName=ref.name,
        desiredStatus="RUNNING",
    )
    starts: list[datetime | None] = []
    for first in range(0, len(arns), 100):  # DescribeTasks takes at most 100 tasks
        answer = ctx.aws.call(
            "ecs",
            "describe_tasks",
            f"read the tasks of service {ref.name}",
            cluster=ref.cluster,
            tasks=arns[first : first + 100],
        )
        for task in answer.get("tasks") or []:
            when = task.get("startedAt") or task.get("createdAt")
            starts.append(None if when is None else secret.aware(when))
    return starts
