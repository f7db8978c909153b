"""What pins an image: whatever in the account and region could start a container from it.

A repository is often shared by several families, and a digest one family no longer names may be
what another family's latest revision, a service deployment, a running task or a schedule runs.
So before `deregister --images` deletes a digest, every ACTIVE task definition of every family,
every service deployment and running task of every cluster, and every schedule that runs an ECS
task is read, and each digest is kept with the list of what pins it. An image named by tag counts
as the digest the tag points at now.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from gcpfargate.core.context import Context
from gcpfargate.ecs import service as svc
from gcpfargate.image.images import held, split_image

Pins = dict[str, list[str]]  # repository@digest -> what pins it


class _Scan:
    def __init__(self, ctx: Context, wanted: set[str]) -> None:
        self.ctx, self.wanted = ctx, wanted
        self.pins: Pins = {}
        self._definitions: dict[str, dict[str, Any]] = {}
        self._resolved: dict[str, str] = {}

    def definition(self, reference: str) -> dict[str, Any]:
        if reference not in self._definitions:
            found = self.ctx.aws.find(
                "ecs",
                "describe_task_definition",
                "ClientException",
                f"read task definition {svc.short(reference)}",
                taskDefinition=reference,
            )
            self._definitions[reference] = dict((found or {}).get("taskDefinition") or {})
        return self._definitions[reference]

    def digest_of(self, image: str) -> str:
        """repository@digest of an image of our registry ("" for another registry's)."""
        if image not in self._resolved:
            host, repository, _, digest = split_image(image)
            if host != self.ctx.registry.host:
                self._resolved[image] = ""
            else:
                if not digest:
                    found = held(self.ctx, image)
                    digest = found.digest if found is not None else ""
                self._resolved[image] = f"{repository}@{digest}" if digest else ""
        return self._resolved[image]

    def pin(self, images: Iterable[str], why: str) -> None:
        for image in images:
            key = self.digest_of(image)
            if key in self.wanted:
                self.pins.setdefault(key, []).append(why)

    def pin_definition(self, reference: str, why: str) -> None:
        definition = self.definition(reference)
        images = [str(c.get("image", "")) for c in definition.get("containerDefinitions") or []]
        self.pin(images, why)


def image_pins(ctx: Context, wanted: set[str], leaving: set[str]) -> Pins:
    """For each of `wanted` (repository@digest) that something pins: what pins it. Revisions in
    `leaving` (being deregistered) pin nothing."""
    scan = _Scan(ctx, wanted)
    for source in (_revisions, _clusters, _schedules):
        source(ctx, scan, leaving)
    return scan.pins


def _revisions(ctx: Context, scan: _Scan, leaving: set[str]) -> None:
    arns = ctx.aws.paginate(
        "ecs",
        "list_task_definitions",
        "taskDefinitionArns",
        "list the ACTIVE task definitions of the account",
        status="ACTIVE",
    )
    for arn in arns:
        if arn in leaving:
            continue
        if scan.definition(arn).get("status", "ACTIVE") == "ACTIVE":
            scan.pin_definition(arn, f"ACTIVE revision {svc.short(arn)}")


def _chunks(items: list[str], size: int) -> Iterable[list[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _clusters(ctx: Context, scan: _Scan, leaving: set[str]) -> None:
    for cluster in ctx.aws.paginate("ecs", "list_clusters", "clusterArns", "list the clusters"):
        name = str(cluster).rsplit("/", 1)[-1]
        services = ctx.aws.paginate(
            "ecs", "list_services", "serviceArns", f"list the services of {name}", cluster=cluster
        )
        for batch in _chunks(list(services), 10):  # DescribeServices takes at most 10
            described = ctx.aws.call(
                "ecs",
                "describe_services",
                f"read the services of {name}",
                cluster=cluster,
                services=batch,
            )
            for service in described.get("services") or []:
                for deployment in service.get("deployments") or []:
                    used = str(deployment.get("taskDefinition") or "")
                    status = str(deployment.get("status", "")).lower()
                    why = (
                        f"service {service.get('serviceName')} on {name} "
                        f"({status} deployment, {svc.short(used)})"
                    )
                    if used:
                        scan.pin_definition(used, why)
        tasks = ctx.aws.paginate(
            "ecs",
            "list_tasks",
            "taskArns",
            f"list the running tasks of {name}",
            cluster=cluster,
            desiredStatus="RUNNING",
        )
        for batch in _chunks(list(tasks), 100):  # DescribeTasks takes at most 100
            described = ctx.aws.call(
                "ecs", "describe_tasks", f"read the tasks of {name}", cluster=cluster, tasks=batch
            )
            for task in described.get("tasks") or []:
                why = f"running task {str(task.get('taskArn', '')).rsplit('/', 1)[-1]} on {name}"
                images = [
                    _with_digest(str(c.get("image", "")), str(c.get("imageDigest") or ""))
                    for c in task.get("containers") or []
                ]
                scan.pin([image for image in images if image], why)
                if task.get("taskDefinitionArn"):
                    scan.pin_definition(str(task["taskDefinitionArn"]), why)


def _with_digest(image: str, digest: str) -> str:
    if not digest or "@" in image:
        return image
    host, repository, _, _ = split_image(image)
    return f"{host}/{repository}@{digest}" if host else f"{repository}@{digest}"


def _schedules(ctx: Context, scan: _Scan, leaving: set[str]) -> None:
    listed = ctx.aws.paginate(
        "scheduler", "list_schedules", "Schedules", "list the schedules of the account"
    )
    for item in listed:
        target = str((item.get("Target") or {}).get("Arn") or "")
        if ":ecs:" not in target:
            continue
        found = ctx.aws.find(
            "scheduler",
            "get_schedule",
            "ResourceNotFoundException",
            f"read schedule {item.get('Name')}",
            Name=item["Name"],
            GroupName=item.get("GroupName") or "default",
        )
        ecs = ((found or {}).get("Target") or {}).get("EcsParameters") or {}
        arn = str(ecs.get("TaskDefinitionArn") or "")
        if not arn:
            continue
        # A family ARN without a revision runs the family's latest ACTIVE revision.
        reference = arn if svc.revision_of(arn) else svc.family_of(arn)
        scan.pin_definition(reference, f"schedule {item.get('Name')} ({svc.short(arn)})")
