"""ECS service deployments that take time and can fail.

moto's services "deploy" instantly and never fail, and UpdateService does not even move the PRIMARY
deployment to the new task definition, so waiting for stability, showing a rollout and reacting to
a failed deployment cannot be tested against it (gcpfargate issue 16). Here every CreateService and
UpdateService (new task definition, desired count, or forceNewDeployment) starts a simulated
deployment that DescribeServices shows moving over `Settings.rollout_seconds`:

    0 .. 1/3   PRIMARY IN_PROGRESS, pending = desired, running = 0; the old deployment ACTIVE,
    running 1/3 .. 1   PRIMARY running = desired; the old one draining to 0
    1 ..       COMPLETED, the old deployment gone, "(service X) has reached a steady state."

With `Settings.fail_deployments` > 0 the next deployments fail instead: their tasks start and stop,
failedTasks grows, and at the end rolloutState is FAILED with the circuit breaker's reason while the
old deployment keeps serving. A service whose deploymentCircuitBreaker has `rollback` on is then
rolled back the way ECS does it: a new deployment of the previous task definition replaces the
failed one and the service's taskDefinition is the previous one again. Field names and values follow
botocore's ecs model (Deployment, ServiceEvent); texts follow the sources named where they are
written.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from tests.stack.proxybase import Answer, Call, aws_error
from tests.stack.strict.layer import StrictLayer, StrictRule


@dataclass
class Rollout:
    id: str
    task_definition: str
    desired: int
    fail: bool
    started: float = field(default_factory=time.monotonic)
    created_at: float = field(default_factory=time.time)
    task_ids: list[str] = field(default_factory=lambda: [uuid.uuid4().hex for _ in range(2)])


@dataclass
class ServiceState:
    name: str
    rollouts: list[Rollout] = field(default_factory=list)  # newest last; older ones being replaced
    events: list[dict[str, Any]] = field(default_factory=list)  # newest first, as ECS lists them
    logged: set[str] = field(default_factory=set)  # event keys already appended
    # moto neither keeps nor returns deploymentConfiguration; ECS returns it with these defaults
    # (API reference, DeploymentConfiguration: maximumPercent 200 and minimumHealthyPercent 100
    # for a REPLICA service; the circuit breaker off).
    configuration: dict[str, Any] = field(
        default_factory=lambda: {
            "deploymentCircuitBreaker": {"enable": False, "rollback": False},
            "maximumPercent": 200,
            "minimumHealthyPercent": 100,
        }
    )

    @property
    def rollback(self) -> bool:
        breaker = self.configuration["deploymentCircuitBreaker"]
        return bool(breaker.get("enable") and breaker.get("rollback"))


def _services(layer: StrictLayer) -> dict[str, ServiceState]:
    return layer.state.setdefault("services", {})


def start_deployment(layer: StrictLayer, call: Call, answer: Answer) -> Answer:
    payload = answer.json()
    service = payload.get("service") or {}
    arn = service.get("serviceArn")
    if not arn:
        return answer
    request = call.json()
    with layer.state_lock:
        if call.operation == "CreateService":
            controller = (service.get("deploymentController") or {}).get("type") or "ECS"
            key = (
                str(service.get("clusterArn", "")).rsplit("/", 1)[-1],
                service.get("serviceName"),
            )
            layer.state.setdefault("controllers", {})[key] = controller
        state = _services(layer).setdefault(
            arn, ServiceState(service.get("serviceName", arn.rsplit("/", 1)[-1]))
        )
        # UpdateService without a deploymentConfiguration keeps the service's.
        state.configuration.update(request.get("deploymentConfiguration") or {})
        current = state.rollouts[-1] if state.rollouts else None
        # A new task definition or forceNewDeployment starts a deployment; a new desired count alone
        # scales the current one
        # (https://docs.aws.amazon.com/AmazonECS/latest/APIReference/API_UpdateService.html).
        new_revision = current is None or service.get("taskDefinition") != current.task_definition
        if current is not None and not new_revision and not request.get("forceNewDeployment"):
            current.desired = int(service.get("desiredCount", current.desired))
        else:
            fail = layer.settings.fail_deployments > 0
            if fail:
                layer.settings.fail_deployments -= 1
            state.rollouts.append(
                Rollout(
                    f"ecs-svc/{uuid.uuid4().int % 10**19:019d}",
                    service.get("taskDefinition", ""),
                    int(service.get("desiredCount", 0)),
                    fail,
                )
            )
            del state.rollouts[:-2]  # ECS keeps the one being replaced and the new one
        _render(state, service, time.monotonic(), layer.settings.rollout_seconds)
    return answer.with_json(payload)


def describe(layer: StrictLayer, call: Call, answer: Answer) -> Answer:
    payload = answer.json()
    now = time.monotonic()
    with layer.state_lock:
        for service in payload.get("services", []):
            state = _services(layer).get(service.get("serviceArn", ""))
            if state is not None:
                _render(state, service, now, layer.settings.rollout_seconds)
    return answer.with_json(payload)


def _render(state: ServiceState, service: dict[str, Any], now: float, seconds: float) -> None:
    """Overwrite moto's deployments, counts and events with the simulated ones at time `now`."""
    service["deploymentConfiguration"] = dict(state.configuration)
    deployments: list[dict[str, Any]] = []
    new = state.rollouts[-1] if state.rollouts else None
    old = state.rollouts[-2] if len(state.rollouts) > 1 else None
    if new is None:
        return
    progress = min(1.0, (now - new.started) / max(seconds, 0.001))
    name = state.name
    _event(
        state,
        f"start:{new.id}",
        new.created_at,
        f"(service {name}) has started {new.desired} tasks: {_tasks(new)}.",
    )
    if new.fail:
        failed = new.desired * (1 if progress < 2 / 3 else 2)
        running = 0
        pending = new.desired if progress < 1 else 0
        if progress >= 1 / 3:
            # Source:
            # https://docs.aws.amazon.com/AmazonECS/latest/developerguide/service-event-messages-list.html
            # ("(service service-name) has stopped n running tasks: (task task-id).").
            _event(
                state,
                f"stop:{new.id}",
                new.created_at + seconds / 3,
                f"(service {name}) has stopped {new.desired} running tasks: {_tasks(new)}.",
            )
        if progress >= 1:
            # Source: aws/containers-roadmap#1488 (rolloutStateReason "ECS deployment circuit
            # breaker: tasks failed to start."); service-event-messages-list.html for the event
            # wording.
            rollout, reason = "FAILED", "ECS deployment circuit breaker: tasks failed to start."
            _event(
                state,
                f"failed:{new.id}",
                new.created_at + seconds,
                f"(service {name}) (deployment {new.id}) deployment failed: tasks failed to start.",
            )
            if state.rollback and old is not None:
                # Source:
                # https://docs.aws.amazon.com/AmazonECS/latest/developerguide/deployment-circuit-breaker.html
                # ("the service is rolled back to the last deployment that completed
                # successfully"): a new deployment of that task definition, already serving as
                # the old tasks never stopped, replaces the failed one.
                back = Rollout(
                    f"ecs-svc/{uuid.uuid4().int % 10**19:019d}",
                    old.task_definition,
                    old.desired,
                    False,
                    started=now - seconds,
                    created_at=new.created_at + seconds,
                )
                state.rollouts[:] = [new, back]
                _render(state, service, now, seconds)
                return
        else:
            rollout, reason = "IN_PROGRESS", f"ECS deployment {new.id} in progress."
        deployments.append(_deployment(new, "PRIMARY", running, pending, failed, rollout, reason))
        if old is not None:  # the old tasks keep serving while the new ones fail
            deployments.append(
                _deployment(
                    old,
                    "ACTIVE",
                    old.desired,
                    0,
                    0,
                    "COMPLETED",
                    f"ECS deployment {old.id} completed.",
                )
            )
    elif progress < 1:
        running = 0 if progress < 1 / 3 else new.desired
        deployments.append(
            _deployment(
                new,
                "PRIMARY",
                running,
                new.desired - running,
                0,
                "IN_PROGRESS",
                f"ECS deployment {new.id} in progress.",
            )
        )
        if old is not None:
            draining = (
                old.desired
                if progress < 1 / 3
                else max(0, round(old.desired * (1 - progress) * 1.5))
            )
            deployments.append(
                _deployment(
                    old,
                    "ACTIVE",
                    draining,
                    0,
                    0,
                    "COMPLETED",
                    f"ECS deployment {old.id} completed.",
                )
            )
    else:
        deployments.append(
            _deployment(
                new,
                "PRIMARY",
                new.desired,
                0,
                0,
                "COMPLETED",
                f"ECS deployment {new.id} completed.",
            )
        )
        if old is not None:
            _event(
                state,
                f"stop-old:{new.id}",
                new.created_at + seconds * 2 / 3,
                f"(service {name}) has stopped {old.desired} running tasks: {_tasks(old)}.",
            )
        # Source: service-event-messages-list.html ("(service service-name) (deployment
        # deployment-id) deployment completed." and "(service service-name) has reached a steady
        # state.").
        _event(
            state,
            f"done:{new.id}",
            new.created_at + seconds,
            f"(service {name}) (deployment {new.id}) deployment completed.",
        )
        _event(
            state,
            f"steady:{new.id}",
            new.created_at + seconds,
            f"(service {name}) has reached a steady state.",
        )
        if old is not None:
            state.rollouts.remove(old)
    service["deployments"] = deployments
    service["runningCount"] = sum(d["runningCount"] for d in deployments)
    service["pendingCount"] = sum(d["pendingCount"] for d in deployments)
    service["taskDefinition"] = new.task_definition or service.get("taskDefinition")
    service["events"] = list(state.events)


def _deployment(
    rollout: Rollout, status: str, running: int, pending: int, failed: int, state: str, reason: str
) -> dict[str, Any]:
    stamp = rollout.created_at
    return {
        "id": rollout.id,
        "status": status,
        "taskDefinition": rollout.task_definition,
        "desiredCount": rollout.desired,
        "pendingCount": pending,
        "runningCount": running,
        "failedTasks": failed,
        "createdAt": stamp,
        "updatedAt": time.time(),
        "launchType": "FARGATE",
        "rolloutState": state,
        "rolloutStateReason": reason,
    }


def _tasks(rollout: Rollout) -> str:
    return " ".join(
        f"(task {task})" for task in rollout.task_ids[: max(1, min(rollout.desired, 2))]
    )


def _event(state: ServiceState, key: str, at: float, message: str) -> None:
    if key in state.logged:
        return
    state.logged.add(key)
    state.events.insert(0, {"id": str(uuid.uuid4()), "createdAt": at, "message": message})
    state.events.sort(key=lambda event: event["createdAt"], reverse=True)


def simulate(layer: StrictLayer, call: Call, answer: Answer) -> Answer:
    if call.operation == "DescribeServices":
        return describe(layer, call, answer)
    return start_deployment(layer, call, answer)


def other_controller_refuses_task_definition(layer: StrictLayer, call: Call) -> Answer | None:
    """UpdateService with a taskDefinition on a service under the CODE_DEPLOY (or EXTERNAL)
    deployment controller. The CODE_DEPLOY text is ECS's own, as reported verbatim in
    aws/aws-cdk#23564, pulumi/pulumi-aws#3821, fabfuel/ecs-deploy#175; the API reference
    (API_UpdateService) lists what such services may update, and a task definition is not in the
    list for EXTERNAL either (its text is modelled on CODE_DEPLOY's)."""
    request = call.json()
    if "taskDefinition" not in request:
        return None
    key = (
        str(request.get("cluster") or "default").rsplit("/", 1)[-1],
        str(request.get("service", "")).rsplit("/", 1)[-1],
    )
    with layer.state_lock:
        controller = layer.state.get("controllers", {}).get(key, "ECS")
    if controller not in ("CODE_DEPLOY", "EXTERNAL"):
        return None
    way = "Use AWS CodeDeploy" if controller == "CODE_DEPLOY" else "Use a task set"
    return aws_error(
        call,
        400,
        "InvalidParameterException",
        f"Unable to update task definition on services with a {controller} deployment controller. "
        f"{way} to trigger a new deployment.",
    )


RULES = [
    StrictRule(
        "ecs.deployment_controller",
        "ecs",
        ("UpdateService",),
        before=other_controller_refuses_task_definition,
    ),
    StrictRule(
        "ecs.service_deployments",
        "ecs",
        ("CreateService", "UpdateService", "DescribeServices"),
        after=simulate,
    ),
]
