"""`rollback` and `deregister`: the family's revisions, as a service runs them.

- rollback moves the configured service to the previous ACTIVE revision (older than the one it
  runs) or to `--revision N`, and waits like deploy; `--deregister` then deregisters the revision
  it left (unless a schedule pins it).
- deregister keeps the newest `keep_last` ACTIVE revisions, the latest, every revision a
  deployment of the configured service uses, and the revision the configured schedule pins; it
  deregisters the rest. `images` also deletes the registry images that only deregistered
  revisions referenced (by digest), unless anything else pins the digest (taskdef/pins.py: an
  ACTIVE revision of any family, a service deployment, a running task, a schedule). The
  credential-shim repository, which every keyless family shares, is never a candidate.
  `--dry-run` returns exactly the list a confirmed run deletes: both use `plan_deregister`, and
  each deletion is a change on `ctx.plan` (a preview records them and deletes nothing).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from gcpfargate.core import plan as planning
from gcpfargate.core.context import Context
from gcpfargate.ecs import service as svc
from gcpfargate.errors import OperationError, UsageError
from gcpfargate.image.images import held, split_image
from gcpfargate.taskdef import pins


def rollback(
    ctx: Context,
    revision: int | None = None,
    deregister: bool = False,
    wait: bool | None = None,
    sleep: svc.Sleep = time.sleep,
    clock: svc.Clock = time.monotonic,
) -> svc.ServiceResult:
    ref = svc.require_configured(ctx)
    with ctx.reporter.step(f"Reading ECS service {ref.name} and its revisions"):
        service = svc.describe(ctx, ref)
        svc.require_active(service, ref)
        current = str(service.get("taskDefinition") or "")
        family = svc.family_of(current)
        active = svc.active_revisions(ctx, family)
    if revision is not None:
        target = next((arn for arn in active if svc.revision_of(arn) == revision), "")
        if not target:
            raise OperationError(
                f"{family}:{revision} is not an ACTIVE revision (deregistered, or never "
                "registered)",
                f"Pick one of: {', '.join(str(svc.revision_of(a)) for a in active) or 'none'}",
            )
    else:
        older = [arn for arn in active if svc.revision_of(arn) < svc.revision_of(current)]
        if not older:
            raise OperationError(
                f"service {ref.name} runs {svc.short(current)} and {family} has no older ACTIVE "
                "revision to roll back to",
                "Pass --revision N to choose one",
            )
        target = older[0]
    result = svc.ServiceResult(
        ref.name, ref.cluster, str(service.get("serviceArn", "")), target, current
    )
    if svc.same_revision(current, target):
        result.task_definition_arn, result.status = current, "UNCHANGED"
        ctx.reporter.info(f"service {ref.name} already runs {svc.short(current)}")
        return result
    mark = ctx.plan.mark()
    pins = pinned_by_schedule(ctx, family) if deregister else {}
    for pinned, why in pins.items():
        if deregister and svc.same_revision(current, pinned):
            ctx.reporter.warn(f"not deregistering {svc.short(current)}: {why}")
            deregister = False
    move = planning.update(
        "ECS service",
        f"{ref.cluster}/{ref.name}",
        f"update service {ref.name} on cluster {ref.cluster}: {svc.short(current)} → "
        f"{svc.short(target)}",
        before=svc.short(current),
        after=svc.short(target),
    )
    moved = ctx.plan.change(
        move,
        lambda: svc.move(ctx, ref, service, target, result, wait=wait, sleep=sleep, clock=clock),
    )
    if deregister:
        ctx.plan.change(_deregister_change(current), lambda: _deregister(ctx, current))
        if moved is not None:
            result.deregistered.append(current)
    if moved is None:  # known after apply
        result.changed, result.status = True, "PLANNED"
    result.plan = ctx.plan.shown(mark)
    return result


def pinned_by_schedule(ctx: Context, family: str) -> dict[str, str]:
    """{revision ARN: why} for the revision the configured schedule's target pins (none when it
    names the family, which runs the latest, or when there is no schedule)."""
    from gcpfargate.ecs.schedule import get_schedule, schedule_name

    name, group = schedule_name(ctx), ctx.settings.schedule.group
    found = get_schedule(ctx, name, group)
    arn = str(
        ((found or {}).get("Target") or {}).get("EcsParameters", {}).get("TaskDefinitionArn", "")
    )
    if arn and svc.family_of(arn) == family and svc.revision_of(arn):
        return {arn: f"schedule {name} pins it"}
    return {}


def _deregister_change(arn: str) -> planning.Change:
    return planning.delete("task definition", svc.short(arn), f"deregister {svc.short(arn)}")


def _deregister(ctx: Context, arn: str) -> bool:
    with ctx.reporter.step(f"Deregistering {svc.short(arn)}"):
        ctx.aws.call(
            "ecs", "deregister_task_definition", f"deregister {svc.short(arn)}", taskDefinition=arn
        )
    return True


# -- deregister
# -------------------------------------------------------------------------------------


@dataclass
class DeregisterResult:
    family: str
    kept: list[str]  # ARNs that stay, newest first
    reasons: dict[str, str]  # ARN -> why it stays
    deregister: list[str]  # ARNs deregistered (or, in a preview, to deregister), newest first
    images: list[str] = field(default_factory=list)  # repository@digest deleted (or to delete)
    image_pins: dict[str, list[str]] | None = None  # kept candidates -> what pins them (--images)
    preview: bool = False  # computed by a preview (JSON: "dry_run")
    done: bool = False  # the deregistering happened

    def to_json(self) -> dict[str, Any]:
        return {
            "family": self.family,
            "dry_run": self.preview,
            "changed": self.done and bool(self.deregister),
            "kept": [
                {"revision": svc.revision_of(a), "reason": self.reasons[a]} for a in self.kept
            ],
            "deregistered": [svc.revision_of(a) for a in self.deregister],
            "images": self.images,
            **(
                {"images_kept": [{"image": i, "pinned_by": p} for i, p in self.image_pins.items()]}
                if self.image_pins is not None
                else {}
            ),
        }


def plan_deregister(ctx: Context, keep_last: int, images: bool) -> DeregisterResult:
    """What `deregister` removes, computed once for --dry-run and for the real run alike."""
    if keep_last < 1:
        raise UsageError("--keep-last must be at least 1 (the latest revision always stays)")
    family = ctx.settings.family
    ctx.settings.require("task.family")
    with ctx.reporter.step(f"Reading the ACTIVE revisions of {family}"):
        active = svc.active_revisions(ctx, family)
        reasons = {arn: f"one of the last {keep_last}" for arn in active[:keep_last]}
        if active:
            reasons[active[0]] = "the latest"
        ref = svc.configured(ctx)
        if ref is not None:
            for deployment in svc.describe(ctx, ref).get("deployments") or []:
                used = str(deployment.get("taskDefinition") or "")
                match = next((arn for arn in active if svc.same_revision(arn, used)), "")
                if match:
                    reasons[match] = (
                        f"service {ref.name} runs it ({deployment.get('status', '').lower()})"
                    )
        for arn, why in pinned_by_schedule(ctx, family).items():
            match = next((a for a in active if svc.same_revision(a, arn)), "")
            if match:
                reasons[match] = why
    result = DeregisterResult(
        family,
        [a for a in active if a in reasons],
        reasons,
        [a for a in active if a not in reasons],
        preview=not ctx.plan.apply,
    )
    if images and result.deregister:
        with ctx.reporter.step("Finding the images only those revisions use"):
            candidates = _candidates(ctx, result.deregister)
            found = pins.image_pins(ctx, candidates, set(result.deregister)) if candidates else {}
            result.images = sorted(c for c in candidates if c not in found)
            result.image_pins = dict(sorted(found.items()))
    return result


def deregister(
    ctx: Context,
    keep_last: int,
    images: bool = False,
    confirm: Callable[[DeregisterResult], bool] = lambda plan: False,
) -> DeregisterResult:
    """Deregister what `plan_deregister` lists, each revision and image a change on `ctx.plan`;
    `confirm(plan)` is asked before the first write (so never in a preview, which writes
    nothing)."""
    plan = plan_deregister(ctx, keep_last, images)
    asked: list[bool] = []

    def confirmed(write: Callable[[], bool]) -> Callable[[], bool]:
        def run() -> bool:
            if not asked:
                asked.append(True)
                if not confirm(plan):
                    raise OperationError(
                        "deregister was not confirmed; nothing was deregistered or deleted"
                    )
            return write()

        return run

    for arn in plan.deregister:
        ctx.plan.change(
            _deregister_change(arn), confirmed(functools.partial(_deregister, ctx, arn))
        )
    for image in plan.images:
        repository, _, digest = image.partition("@")
        ctx.plan.change(
            planning.delete("ECR image", image, f"delete image {image}"),
            confirmed(functools.partial(_delete_image, ctx, repository, digest)),
        )
    plan.done = bool(asked)
    return plan


def _delete_image(ctx: Context, repository: str, digest: str) -> bool:
    with ctx.reporter.step(f"Deleting image {repository}@{digest[:19]}…"):
        ctx.registry.delete(repository, digest)
    return True


def _candidates(ctx: Context, leaving: list[str]) -> set[str]:
    """repository@digest of our registry's images that `leaving` revisions name, the credential-shim
    repository left out (every keyless family runs its image)."""
    from gcpfargate.image.shim_push import REPOSITORY as SHIM_REPOSITORY

    found: set[str] = set()
    for arn in leaving:
        definition = ctx.aws.call(
            "ecs", "describe_task_definition", f"read {svc.short(arn)}", taskDefinition=arn
        )["taskDefinition"]
        for container in definition.get("containerDefinitions") or []:
            host, repository, _, digest = split_image(str(container.get("image", "")))
            if host != ctx.registry.host or repository == SHIM_REPOSITORY:
                continue  # not ours to delete
            if not digest:  # named by tag: the image the tag points at now
                image = held(ctx, str(container.get("image", "")))
                digest = image.digest if image is not None else ""
            if digest:
                found.add(f"{repository}@{digest}")
    return found
