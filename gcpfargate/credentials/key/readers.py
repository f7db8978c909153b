"""Who reads a secret: the task-definition families tagged on it at register time, the ECS services
running those families, and the running tasks that hold a key in their file.

rotate-key lists all of them, rolls the services it can reach (core/service.py's roll_services)
and names the ones it cannot; `--revoke-previous` names the running tasks started
before the new version, which lose access when the previous key is disabled.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from gcpfargate.core.context import Context
from gcpfargate.errors import GcpfargateError


@dataclass(frozen=True)
class Reader:
    family: str
    cluster: str
    service: str  # "" for a family no service runs

    def label(self) -> str:
        return (
            f"service {self.service} ({self.family}, cluster {self.cluster})"
            if self.service
            else f"family {self.family} (no service)"
        )


def families(ctx: Context, tagged: list[str]) -> list[str]:
    """The families that read the secret: those tagged on it, and the configured one (which reads it
    by construction, also where a secret made before the tag existed carries none)."""
    return sorted({*tagged, ctx.settings.family} - {""})


def _clusters(ctx: Context) -> list[str]:
    return [
        str(arn)
        for arn in ctx.aws.paginate("ecs", "list_clusters", "clusterArns", "list the ECS clusters")
    ]


def _family_of(task_definition_arn: str) -> str:
    # arn:aws:ecs:region:account:task-definition/FAMILY:REVISION
    return task_definition_arn.rsplit("/", 1)[-1].rsplit(":", 1)[0]


def readers(ctx: Context, families: list[str]) -> list[Reader]:
    """Every service (on any cluster of the region) whose task definition is one of `families`,
    plus each family no service runs (scheduled or one-off tasks)."""
    if not families:
        return []
    found: list[Reader] = []
    for cluster in _clusters(ctx):
        arns = ctx.aws.paginate(
            "ecs", "list_services", "serviceArns", "list the services", cluster=cluster
        )
        for start in range(0, len(arns), 10):  # DescribeServices takes at most 10
            described = ctx.aws.call(
                "ecs",
                "describe_services",
                "describe the services",
                cluster=cluster,
                services=arns[start : start + 10],
            )
            for service in described.get("services", []):
                family = _family_of(str(service.get("taskDefinition", "")))
                if family in families and service.get("status") == "ACTIVE":
                    found.append(
                        Reader(family, cluster.rsplit("/", 1)[-1], str(service["serviceName"]))
                    )
    served = {reader.family for reader in found}
    return found + [Reader(family, "", "") for family in families if family not in served]


def roll(ctx: Context, services: list[Reader]) -> tuple[list[str], list[str]]:
    """Force a new deployment of each service and wait for it: (rolled, could not roll with why).
    A service that cannot be rolled is named and the others still roll."""
    from gcpfargate.ecs.service import ServiceRef, roll_services

    rolled, failed = [], []
    for reader in services:
        try:
            roll_services(ctx, [ServiceRef(reader.cluster, reader.service)])
            rolled.append(reader.label())
        except GcpfargateError as exc:
            failed.append(f"{reader.label()}: {exc.message}")
    return rolled, failed


@dataclass(frozen=True)
class HeldTask:
    """A running task that read the secret before some moment: its file holds the key of then."""

    task_id: str  # the short id, the last part of the task ARN
    family: str
    cluster: str
    started: datetime

    def label(self) -> str:
        return f"{self.task_id} ({self.family}, started {self.started:%Y-%m-%d %H:%M:%S %Z})"


def tasks_started_before(ctx: Context, families: list[str], moment: datetime) -> list[HeldTask]:
    """Running tasks of `families` (on any cluster of the region) started before `moment`.

    ECS fills the secret into the container while the task is PENDING, so a task that started
    (PENDING -> RUNNING, `startedAt`) before a new version holds the value from before it; one
    still PENDING is judged by `createdAt`, when it entered PENDING.
    """
    if not families:
        return []
    found: list[HeldTask] = []
    for cluster in _clusters(ctx):
        short = cluster.rsplit("/", 1)[-1]
        for family in families:
            arns = ctx.aws.paginate(
                "ecs",
                "list_tasks",
                "taskArns",
                "list running tasks",
                cluster=cluster,
                family=family,
                desiredStatus="RUNNING",
            )
            for start in range(0, len(arns), 100):  # DescribeTasks takes at most 100
                described = ctx.aws.call(
                    "ecs",
                    "describe_tasks",
                    "describe running tasks",
                    cluster=cluster,
                    tasks=arns[start : start + 100],
                )
                for task in described.get("tasks", []):
                    started = task.get("startedAt") or task.get("createdAt")
                    if isinstance(started, datetime) and started < moment:
                        found.append(
                            HeldTask(
                                str(task["taskArn"]).rsplit("/", 1)[-1], family, short, started
                            )
                        )
    return found
