"""ECS services: move a service to a revision and wait until the rollout is stable; roll it back.

A rollout is followed with DescribeServices by the id of the deployment UpdateService started.
It is stable when that deployment is the service's only one and ECS reports it COMPLETED (or,
where ECS reports no rolloutState, when runningCount == desiredCount). It has failed when
- ECS marks it FAILED (the deployment circuit breaker),
- as many of its tasks stopped as the circuit breaker's own threshold (half the desired count,
  at least 3, at most 200: AWS's formula), even where the service has no circuit breaker (where
  its rollback is on, ECS's own verdict and rollback are awaited instead),
- another deployment (a circuit-breaker rollback, someone else's deploy) replaced it.
When `service.wait_timeout` passes first, the rollout has not failed: ECS carries on, and the
error says so with the deployment's state (RolloutUnfinished), not with a way back.
A failure is one error that carries the service events that explain it and the exact command
that rolls back, unless the service is already back on the revision it came from (the circuit
breaker's rollback): then there is nothing to roll back. `roll_services` is the entry point for
rotate-key (see its docstring).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any

from gcpfargate.core import plan as planning
from gcpfargate.core.context import Context
from gcpfargate.core.plan import Change
from gcpfargate.core.report import duration
from gcpfargate.core.results import plan_json
from gcpfargate.errors import AwsError, ConfigError, OperationError, UsageError

POLL_FIRST_SECONDS = 2.0
POLL_LONGEST_SECONDS = 10.0
EVENTS_IN_ERRORS = 5

Sleep = Callable[[float], None]
Clock = Callable[[], float]


class ServiceNotFound(OperationError):
    """The configured service does not exist (or is no longer ACTIVE)."""


class RolloutFailed(OperationError):
    """A deployment did not become stable; the message has the events, the hint the way back."""

    still_running = False


class RolloutUnfinished(RolloutFailed):
    """The wait ended before the deployment did: ECS carries on with it."""

    still_running = True


@dataclass(frozen=True)
class ServiceRef:
    cluster: str
    name: str


def configured(ctx: Context) -> ServiceRef | None:
    """The `[service]` of the settings; None when `service.name` is empty (no service)."""
    name = ctx.settings.service.name
    return ServiceRef(ctx.settings.service.cluster or "default", name) if name else None


def require_configured(ctx: Context) -> ServiceRef:
    ref = configured(ctx)
    if ref is None:
        ctx.settings.require("service.name")
        raise ConfigError("service.name is not set")  # unreachable: require raised
    return ref


@dataclass
class ServiceResult:
    service: str
    cluster: str
    service_arn: str = ""
    task_definition_arn: str = ""  # what the service runs now (or would, in a preview)
    previous_task_definition_arn: str = ""  # what it ran before this command
    changed: bool = False
    # COMPLETED (stable), IN_PROGRESS (not waited for), UNCHANGED (already there), PLANNED (preview)
    status: str = ""
    deployment_id: str = ""
    deregistered: list[str] = field(default_factory=list)
    plan: list[Change] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "service": self.service,
            "cluster": self.cluster,
            "service_arn": self.service_arn,
            "task_definition_arn": self.task_definition_arn,
            "previous_task_definition_arn": self.previous_task_definition_arn,
            "changed": self.changed,
            "status": self.status,
            "deployment_id": self.deployment_id or None,
        }
        if self.deregistered:
            data["deregistered"] = self.deregistered
        if self.plan and self.status == "PLANNED":  # what a preview would do
            data["plan"] = plan_json(self.plan)
        return data


# -- names ----------------------------------------------------------------------------------------


def short(arn: str) -> str:
    """`arn:…:task-definition/family:7` → `family:7`."""
    return arn.rsplit("/", 1)[-1]


def family_of(arn: str) -> str:
    return short(arn).rsplit(":", 1)[0]


def revision_of(arn: str) -> int:
    tail = short(arn).rsplit(":", 1)[-1]
    return int(tail) if tail.isdigit() else 0


def same_revision(a: str, b: str) -> bool:
    # ECS answers full ARNs; compare family:revision so a name given either way matches.
    return bool(a) and bool(b) and short(a) == short(b)


# -- reading and writing
# ----------------------------------------------------------------------------


def describe(ctx: Context, ref: ServiceRef) -> dict[str, Any]:
    """The service's description; ServiceNotFound when ECS does not know it."""
    try:
        answer = ctx.aws.call(
            "ecs",
            "describe_services",
            f"read ECS service {ref.name}",
            cluster=ref.cluster,
            services=[ref.name],
        )
    except AwsError as exc:
        if exc.code == "ClusterNotFoundException":
            raise AwsError(
                f"ECS cluster {ref.cluster} of service {ref.name} does not exist",
                "Set service.cluster (GCPFARGATE_SERVICE_CLUSTER, --cluster) to the service's "
                "cluster",
            ).with_code(exc.code) from None
        raise
    found = answer.get("services") or []
    if not found:
        raise ServiceNotFound(
            f"ECS service {ref.name} does not exist in cluster {ref.cluster}",
            "Create the service (aws ecs create-service), or fix service.name / service.cluster",
        )
    return dict(found[0])


def require_active(service: dict[str, Any], ref: ServiceRef) -> None:
    status = service.get("status")
    if status != "ACTIVE":
        raise ServiceNotFound(
            f"ECS service {ref.name} in cluster {ref.cluster} is {status}, not ACTIVE",
            "ECS deploys only to an ACTIVE service: recreate it, or fix service.name",
        )


# What ECS accepts instead of UpdateService(taskDefinition / forceNewDeployment) for a service under
# another deployment controller (API_UpdateService: "only the desired count, …" can be updated).
_CONTROLLER_WAY = {
    "CODE_DEPLOY": "deploy it with AWS CodeDeploy (aws deploy create-deployment)",
    "EXTERNAL": "deploy it with a new task set (aws ecs create-task-set)",
}


def controller_refusal(service: dict[str, Any], ref: ServiceRef) -> str:
    """Why gcpfargate cannot move this service to a new revision ("" when it can)."""
    controller = str((service.get("deploymentController") or {}).get("type") or "ECS")
    if controller == "ECS":
        return ""
    way = _CONTROLLER_WAY.get(controller, "use its own deployment tooling")
    return (
        f"ECS service {ref.name} in cluster {ref.cluster} uses the {controller} deployment "
        f"controller, so ECS refuses to give it a new task definition through UpdateService; {way}"
    )


def require_ecs_controller(service: dict[str, Any], ref: ServiceRef) -> None:
    why = controller_refusal(service, ref)
    if why:
        raise UsageError(
            why, "Or set [service] to a service that uses the ECS deployment controller"
        )


def preflight(ctx: Context) -> dict[str, Any] | None:
    """deploy's look at the configured service before anything is created or registered: it must
    exist, be ACTIVE and be deployable by UpdateService. Its description travels on to roll_out."""
    ref = configured(ctx)
    if ref is None:
        return None
    with ctx.reporter.step(f"Reading ECS service {ref.name}"):
        service = describe(ctx, ref)
    require_ecs_controller(service, ref)
    return service


def update(ctx: Context, ref: ServiceRef, **params: Any) -> dict[str, Any]:
    answer = ctx.aws.call(
        "ecs",
        "update_service",
        f"update ECS service {ref.name}",
        cluster=ref.cluster,
        service=ref.name,
        **params,
    )
    return dict(answer["service"])


def primary(service: dict[str, Any]) -> dict[str, Any]:
    return next((d for d in service.get("deployments") or [] if d.get("status") == "PRIMARY"), {})


def active_revisions(ctx: Context, family: str) -> list[str]:
    """ARNs of the family's ACTIVE revisions, newest first."""
    arns = ctx.aws.paginate(
        "ecs",
        "list_task_definitions",
        "taskDefinitionArns",
        f"list the revisions of task definition family {family}",
        familyPrefix=family,
        status="ACTIVE",
        sort="DESC",
    )
    # familyPrefix is a prefix ("batch" lists "batch-nightly" too): keep the family itself.
    return sorted((arn for arn in arns if family_of(arn) == family), key=revision_of, reverse=True)


# -- judging a rollout
# ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Rollout:
    state: str  # "stable", "in_progress" or "failed"
    desired: int = 0
    running: int = 0
    pending: int = 0
    failed_tasks: int = 0
    reason: str = ""

    def counts(self) -> str:
        failed = f", {self.failed_tasks} failed" if self.failed_tasks else ""
        return f"{self.running}/{self.desired} running, {self.pending} pending{failed}"


def failure_threshold(desired: int) -> int:
    """The deployment circuit breaker's threshold: 0.5 × desired count, at least 3, at most 200
    (https://docs.aws.amazon.com/AmazonECS/latest/developerguide/deployment-circuit-breaker.html)."""
    return min(200, max(3, math.ceil(desired * 0.5)))


def judge(service: dict[str, Any], deployment_id: str) -> Rollout:
    """Where the deployment `deployment_id` of `service` stands; pure, for the wait loop and its
    tests."""
    deployments = list(service.get("deployments") or [])
    ours = next((d for d in deployments if d.get("id") == deployment_id), None)
    if service.get("status") != "ACTIVE":
        return Rollout("failed", reason=f"the service is {service.get('status')}")
    if ours is None:
        lead = primary(service)
        return Rollout(
            "failed",
            reason=f"deployment {deployment_id} was replaced by deployment {lead.get('id')} "
            f"({short(str(lead.get('taskDefinition', '?')))})",
        )
    now = Rollout(
        "in_progress",
        desired=int(ours.get("desiredCount") or 0),
        running=int(ours.get("runningCount") or 0),
        pending=int(ours.get("pendingCount") or 0),
        failed_tasks=int(ours.get("failedTasks") or 0),
    )
    state = ours.get("rolloutState")
    if state == "FAILED":
        why = str(ours.get("rolloutStateReason") or "ECS marked the deployment FAILED")
        return replace(now, state="failed", reason=why)
    if ours.get("status") != "PRIMARY":
        lead = primary(service)
        return replace(
            now,
            state="failed",
            reason=f"deployment {deployment_id} was replaced by deployment "
            f"{lead.get('id')} ({short(str(lead.get('taskDefinition', '?')))})",
        )
    threshold = failure_threshold(now.desired)
    breaker = (service.get("deploymentConfiguration") or {}).get("deploymentCircuitBreaker") or {}
    # With the circuit breaker's rollback on, ECS itself fails the deployment at this threshold
    # and rolls back: wait for that, so the error can say where the service is.
    ecs_rolls_back = bool(breaker.get("enable") and breaker.get("rollback"))
    if now.failed_tasks >= threshold and not ecs_rolls_back:
        return replace(
            now,
            state="failed",
            reason=f"{now.failed_tasks} of its tasks stopped (the circuit "
            f"breaker's threshold for {now.desired} tasks is {threshold})",
        )
    steady = state == "COMPLETED" if state else now.running == now.desired
    return replace(now, state="stable") if steady and len(deployments) == 1 else now


# -- moving and waiting
# -----------------------------------------------------------------------------


def rollback_command(ref: ServiceRef, revision: int) -> str:
    return f"gcpfargate rollback --service {ref.name} --cluster {ref.cluster} --revision {revision}"


def move(
    ctx: Context,
    ref: ServiceRef,
    service: dict[str, Any],
    target_arn: str,
    result: ServiceResult,
    wait: bool | None = None,
    force: bool = False,
    sleep: Sleep = time.sleep,
    clock: Clock = time.monotonic,
) -> ServiceResult:
    """UpdateService to `target_arn` (a forced new deployment when `force`), then wait unless told
    not to."""
    params: dict[str, Any] = (
        {"forceNewDeployment": True} if force else {"taskDefinition": target_arn}
    )
    seen = {str(event.get("id")) for event in service.get("events") or []}
    title = (
        f"Forcing a new deployment of service {ref.name}"
        if force
        else f"Updating service {ref.name} to {short(target_arn)}"
    )
    with ctx.reporter.step(title):
        updated = update(ctx, ref, **params)
    result.changed, result.task_definition_arn = True, target_arn
    result.deployment_id = str(primary(updated).get("id") or "")
    if not (ctx.settings.service.wait if wait is None else wait):
        result.status = "IN_PROGRESS"
        ctx.reporter.info(f"service {ref.name} is rolling out {short(target_arn)} (not waiting)")
        return result
    # A forced deployment has no other revision to go back to.
    previous = 0 if force else revision_of(result.previous_task_definition_arn)
    wait_stable(
        ctx, ref, result.deployment_id, target_arn, seen, previous, sleep=sleep, clock=clock
    )
    result.status = "COMPLETED"
    return result


def wait_stable(
    ctx: Context,
    ref: ServiceRef,
    deployment_id: str,
    target_arn: str,
    seen: set[str],
    previous_revision: int,
    sleep: Sleep = time.sleep,
    clock: Clock = time.monotonic,
) -> Rollout:
    """Poll DescribeServices with backoff until the deployment is stable; RolloutFailed otherwise.

    Each change of the counts and each new service event is reported as it happens (a live step on
    a terminal, plain lines otherwise)."""
    timeout = max(1, ctx.settings.service.wait_timeout)
    started = clock()
    deadline = started + timeout
    interval = POLL_FIRST_SECONDS
    events: list[str] = []
    shown = ""
    try:
        with ctx.reporter.step(f"Waiting for service {ref.name} to run {short(target_arn)} stably"):
            while True:
                service = describe(ctx, ref)
                for event in reversed(service.get("events") or []):  # ECS lists the newest first
                    if str(event.get("id")) not in seen:
                        seen.add(str(event.get("id")))
                        events.append(str(event.get("message", "")))
                        ctx.reporter.info(f"  {ref.name}: {events[-1]}")
                rollout = judge(service, deployment_id)
                if rollout.counts() != shown:
                    shown = rollout.counts()
                    ctx.reporter.info(f"  {ref.name} {short(target_arn)}: {shown}")
                took = duration(clock() - started)
                if rollout.state == "stable":
                    ctx.reporter.info(
                        f"service {ref.name} runs {short(target_arn)} ({shown}) after {took}"
                    )
                    return rollout
                remaining = deadline - clock()
                if rollout.state == "in_progress" and remaining <= 0:
                    raise _unfinished(
                        ref, target_arn, service, deployment_id, timeout, shown, events
                    )
                if rollout.state == "failed":
                    explaining = events or [
                        str(e.get("message", "")) for e in (service.get("events") or [])[:3]
                    ]
                    raise _failure(ref, target_arn, rollout, explaining, previous_revision, service)
                sleep(min(interval, remaining))
                interval = min(interval * 1.5, POLL_LONGEST_SECONDS)
    except KeyboardInterrupt:
        ctx.reporter.warn(
            f"stopped waiting; ECS keeps rolling out {short(target_arn)} on service {ref.name}"
        )
        raise


def _failure(
    ref: ServiceRef,
    target_arn: str,
    rollout: Rollout,
    events: list[str],
    previous_revision: int,
    service: dict[str, Any] | None = None,
) -> RolloutFailed:
    told = " | ".join(events[-EVENTS_IN_ERRORS:])
    message = (
        f"service {ref.name} did not become stable on {short(target_arn)}: "
        f"{rollout.reason.rstrip('.')}"
    )
    back = rolled_back(service or {}, target_arn, previous_revision)
    if back:
        message += f"; {back}"
    if told:
        message += f"; service events: {told}"
    if back:
        hint = "Nothing to roll back: fix what the events say, then deploy again"
    elif previous_revision:
        hint = f"Roll back with `{rollback_command(ref, previous_revision)}`"
    else:
        hint = f"See `aws ecs describe-services --cluster {ref.cluster} --services {ref.name}`"
    return RolloutFailed(message, hint)


def rolled_back(service: dict[str, Any], target_arn: str, previous_revision: int) -> str:
    """How the service is back on the revision it came from ("" when it is not): the deployment
    circuit breaker's rollback (rollback = true), or a deployment of that revision that replaced
    ours. Advising a rollback then would only start another deployment of the same revision."""
    breaker = (service.get("deploymentConfiguration") or {}).get("deploymentCircuitBreaker") or {}
    lead = primary(service)
    arn = str(lead.get("taskDefinition") or "")
    back_on_previous = (
        bool(previous_revision)
        and family_of(arn) == family_of(target_arn)
        and revision_of(arn) == previous_revision
    )
    if back_on_previous:
        by = (
            "ECS's deployment circuit breaker rolled"
            if breaker.get("rollback")
            else "a deployment moved"
        )
        return f"{by} the service back to {short(arn)}"
    if breaker.get("enable") and breaker.get("rollback") and lead.get("rolloutState") == "FAILED":
        return "ECS's deployment circuit breaker is rolling the service back"
    return ""


def _unfinished(
    ref: ServiceRef,
    target_arn: str,
    service: dict[str, Any],
    deployment_id: str,
    timeout: int,
    counts: str,
    events: list[str],
) -> RolloutUnfinished:
    ours: dict[str, Any] = next(
        (d for d in service.get("deployments") or [] if d.get("id") == deployment_id), {}
    )
    state = str(ours.get("rolloutState") or "IN_PROGRESS")
    others = len(service.get("deployments") or []) - 1
    draining = f", {others} older deployment{'s' if others != 1 else ''} draining" if others else ""
    told = " | ".join(events[-EVENTS_IN_ERRORS:])
    return RolloutUnfinished(
        f"service {ref.name} is still rolling out {short(target_arn)} after "
        f"service.wait_timeout = {timeout} s: deployment {deployment_id} {state} "
        f"({counts}{draining}); ECS carries on with it"
        + (f"; service events: {told}" if told else ""),
        f"Follow it with `aws ecs describe-services --cluster {ref.cluster} --services "
        f"{ref.name}`, or wait longer with --wait-timeout (service.wait_timeout)",
    )


# -- the commands' entry points
# ---------------------------------------------------------------------


def roll_out(
    ctx: Context,
    task_definition_arn: str,
    sleep: Sleep = time.sleep,
    clock: Clock = time.monotonic,
    described: dict[str, Any] | None = None,
) -> ServiceResult:
    """deploy's last step: move the configured service to `task_definition_arn` (the family's latest
    ACTIVE revision; "" in a preview that would register one) unless it runs it already.
    `described`: the service as `preflight` read it."""
    ref = require_configured(ctx)
    if described is not None:
        service = described
    else:
        with ctx.reporter.step(f"Reading ECS service {ref.name}"):
            service = describe(ctx, ref)
        require_ecs_controller(service, ref)
    current = str(service.get("taskDefinition") or "")
    result = ServiceResult(
        ref.name,
        ref.cluster,
        str(service.get("serviceArn", "")),
        task_definition_arn or current,
        current,
    )
    if same_revision(current, task_definition_arn):
        result.status = "UNCHANGED"
        ctx.reporter.info(f"service {ref.name} already runs {short(current)}: nothing to roll out")
        return result
    require_active(service, ref)
    target = (
        short(task_definition_arn)
        if task_definition_arn
        else "the revision register-task registers"
    )
    mark = ctx.plan.mark()
    moved = ctx.plan.change(
        planning.update(
            "ECS service",
            f"{ref.cluster}/{ref.name}",
            f"update service {ref.name} on cluster {ref.cluster}: {short(current) or '-'} → "
            f"{target}",
            before=short(current) or None,
            after=target,
        ),
        lambda: move(ctx, ref, service, task_definition_arn, result, sleep=sleep, clock=clock),
    )
    result.plan = ctx.plan.shown(mark)
    return moved if moved is not None else planned(result)


def planned(result: ServiceResult) -> ServiceResult:
    """A preview's result: what the service would run once the recorded change is made."""
    result.changed, result.status = True, "PLANNED"
    return result


def roll_services(
    ctx: Context,
    services: Sequence[ServiceRef] | None = None,
    wait: bool | None = True,
    sleep: Sleep = time.sleep,
    clock: Clock = time.monotonic,
) -> list[ServiceResult]:
    """Force a new deployment of each service and wait until it is stable, one after the other.

    For rotate-key: after a new secret version is AWSCURRENT, new tasks read it at start, so a
    forced deployment replaces every task holding the previous key. `services` defaults to the
    configured `[service]` (none configured: returns []). `wait=None` follows `service.wait`;
    rotate-key should keep the default True and retire the previous key only after this returns.
    Raises ServiceNotFound / RolloutFailed (exit 1) on the first service that fails; in a preview
    it only records the changes (`result.plan`)."""
    refs = list(services) if services is not None else [ref for ref in [configured(ctx)] if ref]
    results: list[ServiceResult] = []
    for ref in refs:
        service = describe(ctx, ref)
        require_active(service, ref)
        require_ecs_controller(service, ref)
        current = str(service.get("taskDefinition") or "")
        result = ServiceResult(
            ref.name, ref.cluster, str(service.get("serviceArn", "")), current, current
        )
        mark = ctx.plan.mark()
        moved = ctx.plan.change(
            planning.update(
                "ECS service",
                f"{ref.cluster}/{ref.name}",
                f"force a new deployment of service {ref.name} on cluster {ref.cluster} "
                f"({short(current)})",
            ),
            partial(
                move,
                ctx,
                ref,
                service,
                current,
                result,
                wait=wait,
                force=True,
                sleep=sleep,
                clock=clock,
            ),
        )
        result.plan = ctx.plan.shown(mark)
        results.append(moved if moved is not None else planned(result))
    return results
