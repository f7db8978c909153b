"""The service rollout: the wait loop's decisions and the exact UpdateService requests, with
Stubber.

The DescribeServices answers follow what real ECS returns during a rolling deployment (the shape
of the AWS CLI's `describe-services` examples and the event texts of the ECS service event
messages page): the new PRIMARY deployment next to the old ACTIVE one until it drains, newest
event first, `rolloutState` IN_PROGRESS → COMPLETED, or FAILED by the circuit breaker.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from botocore.stub import Stubber

from gcpfargate.config import load_settings
from gcpfargate.core.context import Context
from gcpfargate.core.report import NullReporter
from gcpfargate.ecs import service as svc

REGION = "ap-northeast-1"
ACCOUNT = "123456789012"
CLUSTER = "prod"
NAME = "web"
OLD = f"arn:aws:ecs:{REGION}:{ACCOUNT}:task-definition/web:6"
NEW = f"arn:aws:ecs:{REGION}:{ACCOUNT}:task-definition/web:7"
T0 = datetime(2026, 11, 29, 9, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def _aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("AWS_ENDPOINT_URL", "AWS_PROFILE", "AWS_ENDPOINT_URL_ECS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")


def deployment(
    dep_id: str,
    status: str,
    task_definition: str,
    desired: int,
    running: int,
    pending: int = 0,
    rollout: str | None = "IN_PROGRESS",
    failed: int = 0,
    reason: str = "",
) -> dict[str, Any]:
    found: dict[str, Any] = {
        "id": dep_id,
        "status": status,
        "taskDefinition": task_definition,
        "desiredCount": desired,
        "pendingCount": pending,
        "runningCount": running,
        "failedTasks": failed,
        "createdAt": T0,
        "updatedAt": T0,
        "launchType": "FARGATE",
        "platformVersion": "1.4.0",
        "networkConfiguration": {
            "awsvpcConfiguration": {
                "subnets": ["subnet-0123456789abcdef0"],
                "assignPublicIp": "DISABLED",
            }
        },
    }
    if rollout:
        found["rolloutState"] = rollout
        found["rolloutStateReason"] = (
            reason or f"ECS deployment {dep_id} {rollout.lower().replace('_', ' ')}."
        )
    return found


def event(number: int, message: str) -> dict[str, Any]:
    return {
        "id": f"e{number:04d}-0000-4000-8000-000000000000",
        "createdAt": T0 + timedelta(seconds=number),
        "message": f"(service {NAME}) {message}",
    }


def answer(
    deployments: list[dict[str, Any]], events: list[dict[str, Any]], status: str = "ACTIVE"
) -> dict[str, Any]:
    lead = next(d for d in deployments if d["status"] == "PRIMARY")
    return {
        "services": [
            {
                "serviceArn": f"arn:aws:ecs:{REGION}:{ACCOUNT}:service/{CLUSTER}/{NAME}",
                "serviceName": NAME,
                "clusterArn": f"arn:aws:ecs:{REGION}:{ACCOUNT}:cluster/{CLUSTER}",
                "status": status,
                "desiredCount": lead["desiredCount"],
                "runningCount": sum(d["runningCount"] for d in deployments),
                "pendingCount": sum(d["pendingCount"] for d in deployments),
                "launchType": "FARGATE",
                "taskDefinition": lead["taskDefinition"],
                "deployments": deployments,
                "events": sorted(
                    events, key=lambda e: e["createdAt"], reverse=True
                ),  # ECS: newest first
                "deploymentConfiguration": {
                    "deploymentCircuitBreaker": {"enable": True, "rollback": False},
                    "maximumPercent": 200,
                    "minimumHealthyPercent": 100,
                },
                "schedulingStrategy": "REPLICA",
                "createdAt": T0,
            }
        ],
        "failures": [],
    }


STEADY_OLD = answer(
    [deployment("ecs-svc/1111", "PRIMARY", OLD, 2, 2, rollout="COMPLETED")],
    [event(1, "has reached a steady state.")],
)
STARTED = [
    event(2, "has started 2 tasks: (task 0a1b) (task 2c3d)."),
    event(1, "has reached a steady state."),
]


def rolling(running: int, pending: int, events: list[dict[str, Any]]) -> dict[str, Any]:
    return answer(
        [
            deployment("ecs-svc/2222", "PRIMARY", NEW, 2, running, pending),
            deployment("ecs-svc/1111", "ACTIVE", OLD, 2, 2, rollout="COMPLETED"),
        ],
        events,
    )


DONE = answer(
    [deployment("ecs-svc/2222", "PRIMARY", NEW, 2, 2, rollout="COMPLETED")],
    [
        event(4, "(deployment ecs-svc/2222) deployment completed."),
        event(3, "has reached a steady state."),
        *STARTED,
    ],
)


class Clock:
    """A fake monotonic clock that the fake sleep advances."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@pytest.fixture
def stubbed(tmp_path: Path) -> Iterator[tuple[Context, NullReporter, Stubber]]:
    config = tmp_path / "gcpfargate.toml"
    config.write_text(
        f'[aws]\nregion = "{REGION}"\n\n[task]\nfamily = "web"\n\n'
        f'[service]\nname = "{NAME}"\ncluster = "{CLUSTER}"\nwait_timeout = 60\n'
    )
    reporter = NullReporter()
    ctx = Context(settings=load_settings(config, environ={}), reporter=reporter)
    ecs = Stubber(ctx.aws.client("ecs"))
    with ecs:
        yield ctx, reporter, ecs
        ecs.assert_no_pending_responses()


DESCRIBE = {"cluster": CLUSTER, "services": [NAME]}


def test_judge_decisions() -> None:
    assert svc.judge(rolling(1, 1, STARTED)["services"][0], "ecs-svc/2222").state == "in_progress"
    # Counts match but the old deployment still drains: not yet.
    assert svc.judge(rolling(2, 0, STARTED)["services"][0], "ecs-svc/2222").state == "in_progress"
    assert svc.judge(DONE["services"][0], "ecs-svc/2222").state == "stable"
    no_state = answer([deployment("ecs-svc/2222", "PRIMARY", NEW, 2, 2, rollout=None)], [])
    assert svc.judge(no_state["services"][0], "ecs-svc/2222").state == "stable"
    replaced = answer([deployment("ecs-svc/3333", "PRIMARY", OLD, 2, 0, 2)], [])
    verdict = svc.judge(replaced["services"][0], "ecs-svc/2222")
    assert (
        verdict.state == "failed"
        and "replaced by deployment ecs-svc/3333 (web:6)" in verdict.reason
    )
    stopping = answer(
        [
            deployment("ecs-svc/2222", "PRIMARY", NEW, 4, 0, 2, failed=3),
            deployment("ecs-svc/1111", "ACTIVE", OLD, 4, 4, rollout="COMPLETED"),
        ],
        [],
    )
    verdict = svc.judge(stopping["services"][0], "ecs-svc/2222")
    assert verdict.state == "failed" and "3 of its tasks stopped" in verdict.reason
    draining = answer(
        [deployment("ecs-svc/2222", "PRIMARY", NEW, 2, 2, rollout="COMPLETED")],
        [],
        status="DRAINING",
    )
    assert svc.judge(draining["services"][0], "ecs-svc/2222").state == "failed"
    assert [svc.failure_threshold(n) for n in (1, 6, 10, 1000)] == [3, 3, 5, 200]


def test_roll_out_updates_then_waits_until_stable(
    stubbed: tuple[Context, NullReporter, Stubber],
) -> None:
    ctx, reporter, ecs = stubbed
    ecs.add_response("describe_services", STEADY_OLD, DESCRIBE)
    updated = rolling(0, 0, [event(1, "has reached a steady state.")])
    ecs.add_response(
        "update_service",
        {"service": updated["services"][0]},
        {"cluster": CLUSTER, "service": NAME, "taskDefinition": NEW},
    )
    ecs.add_response("describe_services", rolling(0, 2, STARTED), DESCRIBE)
    ecs.add_response("describe_services", rolling(1, 1, STARTED), DESCRIBE)
    ecs.add_response("describe_services", DONE, DESCRIBE)
    clock = Clock()
    result = svc.roll_out(ctx, NEW, sleep=clock.sleep, clock=clock)
    assert (result.status, result.changed, result.deployment_id) == (
        "COMPLETED",
        True,
        "ecs-svc/2222",
    )
    assert result.previous_task_definition_arn == OLD and result.task_definition_arn == NEW
    assert clock.sleeps == [2.0, 3.0]  # backoff between polls, none after the stable answer
    assert reporter.lines == [
        "  web: (service web) has started 2 tasks: (task 0a1b) (task 2c3d).",
        "  web web:7: 0/2 running, 2 pending",
        "  web web:7: 1/2 running, 1 pending",
        "  web: (service web) has reached a steady state.",
        "  web: (service web) (deployment ecs-svc/2222) deployment completed.",
        "  web web:7: 2/2 running, 0 pending",
        "service web runs web:7 (2/2 running, 0 pending) after 5 s",
    ]


def test_noop_roll_out_makes_no_update(stubbed: tuple[Context, NullReporter, Stubber]) -> None:
    ctx, _, ecs = stubbed
    ecs.add_response("describe_services", STEADY_OLD, DESCRIBE)
    result = svc.roll_out(ctx, OLD)  # any UpdateService would fail: no response is queued for it
    assert (result.status, result.changed) == ("UNCHANGED", False)


def test_circuit_breaker_failure_names_the_events_and_the_way_back(
    stubbed: tuple[Context, NullReporter, Stubber],
) -> None:
    ctx, _, ecs = stubbed
    ecs.add_response("describe_services", STEADY_OLD, DESCRIBE)
    ecs.add_response(
        "update_service",
        {"service": rolling(0, 0, [])["services"][0]},
        {"cluster": CLUSTER, "service": NAME, "taskDefinition": NEW},
    )
    failing = [
        event(3, "has started 1 tasks: (task 4e5f)."),
        event(4, "(task 4e5f) failed container health checks."),
        *STARTED,
    ]
    ecs.add_response("describe_services", rolling(0, 1, failing), DESCRIBE)
    failed = answer(
        [
            deployment(
                "ecs-svc/2222",
                "PRIMARY",
                NEW,
                2,
                0,
                0,
                rollout="FAILED",
                failed=3,
                reason="ECS deployment circuit breaker: tasks failed to start.",
            ),
            deployment("ecs-svc/1111", "ACTIVE", OLD, 2, 2, rollout="COMPLETED"),
        ],
        [event(5, "(deployment ecs-svc/2222) deployment failed: tasks failed to start."), *failing],
    )
    ecs.add_response("describe_services", failed, DESCRIBE)
    clock = Clock()
    with pytest.raises(svc.RolloutFailed) as raised:
        svc.roll_out(ctx, NEW, sleep=clock.sleep, clock=clock)
    error = raised.value
    assert error.message.startswith(
        "service web did not become stable on web:7: ECS deployment circuit breaker: "
        "tasks failed to start; service events: "
    )
    assert "(task 4e5f) failed container health checks." in error.message
    assert "deployment failed: tasks failed to start." in error.message
    assert "\n" not in error.one_line()
    assert (
        error.hint
        == "Roll back with `gcpfargate rollback --service web --cluster prod --revision 6`"
    )


def test_timeout_says_still_in_progress_with_the_deployment_state(
    stubbed: tuple[Context, NullReporter, Stubber],
) -> None:
    ctx, _, ecs = stubbed
    ecs.add_response("describe_services", STEADY_OLD, DESCRIBE)
    ecs.add_response(
        "update_service",
        {"service": rolling(0, 0, [])["services"][0]},
        {"cluster": CLUSTER, "service": NAME, "taskDefinition": NEW},
    )
    clock = Clock()
    # Polls at 0, 2, 5, 9.5, 16.25, then every 10 s up to 56.25, a last short pause to 60, and the
    # last poll.
    for _ in range(10):
        ecs.add_response("describe_services", rolling(1, 1, STARTED), DESCRIBE)
    with pytest.raises(svc.RolloutUnfinished) as raised:
        svc.roll_out(ctx, NEW, sleep=clock.sleep, clock=clock)
    # Not a failure: ECS carries on, so the words say so and no rollback is advised.
    assert raised.value.message.startswith(
        "service web is still rolling out web:7 after service.wait_timeout = 60 s: "
        "deployment ecs-svc/2222 IN_PROGRESS (1/2 running, 1 pending, 1 older deployment "
        "draining); ECS carries on with it; service events: "
    )
    assert "has started 2 tasks" in raised.value.message
    assert "rollback" not in raised.value.hint.lower() and "--wait-timeout" in raised.value.hint
    assert raised.value.still_running and "failed" not in raised.value.message
    assert clock.now == 60


def test_default_wait_is_thirty_minutes(tmp_path: Path) -> None:
    config = tmp_path / "gcpfargate.toml"
    config.write_text('[task]\nfamily = "web"\n')
    settings = load_settings(config, environ={})
    assert settings.service.wait_timeout == 1800 >= 40 * 15  # above the AWS CLI waiter's floor


def test_no_rollback_advice_when_ecs_already_rolled_back(
    stubbed: tuple[Context, NullReporter, Stubber],
) -> None:
    ctx, _, ecs = stubbed
    ecs.add_response("describe_services", STEADY_OLD, DESCRIBE)
    ecs.add_response(
        "update_service",
        {"service": rolling(0, 0, [])["services"][0]},
        {"cluster": CLUSTER, "service": NAME, "taskDefinition": NEW},
    )
    back = answer(
        [
            deployment(
                "ecs-svc/3333",
                "PRIMARY",
                OLD,
                2,
                2,
                rollout="IN_PROGRESS",
                reason="ECS deployment circuit breaker: rolling back to deploymentId ecs-svc/1111.",
            ),
            deployment(
                "ecs-svc/2222",
                "ACTIVE",
                NEW,
                2,
                0,
                rollout="FAILED",
                failed=3,
                reason="ECS deployment circuit breaker: tasks failed to start.",
            ),
        ],
        [event(5, "(deployment ecs-svc/2222) deployment failed: tasks failed to start.")],
    )
    back["services"][0]["deploymentConfiguration"]["deploymentCircuitBreaker"]["rollback"] = True
    ecs.add_response("describe_services", back, DESCRIBE)
    clock = Clock()
    with pytest.raises(svc.RolloutFailed) as raised:
        svc.roll_out(ctx, NEW, sleep=clock.sleep, clock=clock)
    error = raised.value
    assert "ECS's deployment circuit breaker rolled the service back to web:6" in error.message
    assert error.hint == "Nothing to roll back: fix what the events say, then deploy again"
    assert "gcpfargate rollback" not in error.one_line()


def test_no_wait_returns_after_update_service(
    stubbed: tuple[Context, NullReporter, Stubber],
) -> None:
    ctx, _, ecs = stubbed
    ctx.settings = dataclasses.replace(
        ctx.settings, service=dataclasses.replace(ctx.settings.service, wait=False)
    )
    ecs.add_response("describe_services", STEADY_OLD, DESCRIBE)
    ecs.add_response(
        "update_service",
        {"service": rolling(0, 0, [])["services"][0]},
        {"cluster": CLUSTER, "service": NAME, "taskDefinition": NEW},
    )
    assert svc.roll_out(ctx, NEW).status == "IN_PROGRESS"


def test_roll_services_forces_a_new_deployment_and_waits(
    stubbed: tuple[Context, NullReporter, Stubber],
) -> None:
    ctx, _, ecs = stubbed
    ecs.add_response("describe_services", STEADY_OLD, DESCRIBE)
    forced = answer(
        [
            deployment("ecs-svc/5555", "PRIMARY", OLD, 2, 0, 0),
            deployment("ecs-svc/1111", "ACTIVE", OLD, 2, 2, rollout="COMPLETED"),
        ],
        [],
    )
    ecs.add_response(
        "update_service",
        {"service": forced["services"][0]},
        {"cluster": CLUSTER, "service": NAME, "forceNewDeployment": True},
    )
    ecs.add_response(
        "describe_services",
        answer([deployment("ecs-svc/5555", "PRIMARY", OLD, 2, 2, rollout="COMPLETED")], []),
        DESCRIBE,
    )
    clock = Clock()
    [result] = svc.roll_services(ctx, sleep=clock.sleep, clock=clock)
    assert (result.status, result.deployment_id, result.task_definition_arn) == (
        "COMPLETED",
        "ecs-svc/5555",
        OLD,
    )


def test_roll_services_without_a_service_does_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    ctx = Context(settings=load_settings(None, environ={}, overrides={"task.family": "web"}))
    assert svc.roll_services(ctx) == []


# -- doctor's service checks
# ------------------------------------------------------------------------

SECRET_ARN = f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:gcpfargate/runner-AbCdEf"
TASKS = [f"arn:aws:ecs:{REGION}:{ACCOUNT}:task/{CLUSTER}/{n:032x}" for n in (1, 2)]


def test_doctor_warns_when_tasks_started_before_the_current_secret_version(
    stubbed: tuple[Context, NullReporter, Stubber],
) -> None:
    from gcpfargate.credentials.key import service_checks

    ctx, _, ecs = stubbed
    secrets = Stubber(ctx.aws.client("secretsmanager"))
    memo: dict[str, Any] = {}
    ecs.add_response("describe_services", DONE, DESCRIBE)
    status, detail = service_checks.runs_latest(ctx, {"taskDefinitionArn": NEW}, memo)
    assert (status, detail) == ("OK", "web on prod runs web:7")
    rotated = T0 + timedelta(hours=1)
    for started, expected in ((T0, "WARN"), (rotated + timedelta(minutes=5), "OK")):
        secrets.add_response(
            "list_secret_version_ids",
            {
                "ARN": SECRET_ARN,
                "Name": "gcpfargate/runner",
                "Versions": [
                    {
                        "VersionId": "b" * 32,
                        "VersionStages": ["AWSCURRENT"],
                        "CreatedDate": rotated,
                    },
                    {
                        "VersionId": "a" * 32,
                        "VersionStages": ["AWSPREVIOUS"],
                        "CreatedDate": T0 - timedelta(days=1),
                    },
                ],
            },
            {"SecretId": SECRET_ARN},
        )
        ecs.add_response(
            "list_tasks",
            {"taskArns": TASKS},
            {"cluster": CLUSTER, "serviceName": NAME, "desiredStatus": "RUNNING"},
        )
        ecs.add_response(
            "describe_tasks",
            {
                "tasks": [
                    {
                        "taskArn": TASKS[0],
                        "lastStatus": "RUNNING",
                        "startedAt": started,
                        "taskDefinitionArn": NEW,
                    },
                    {
                        "taskArn": TASKS[1],
                        "lastStatus": "RUNNING",
                        "startedAt": rotated + timedelta(minutes=1),
                        "taskDefinitionArn": NEW,
                    },
                ],
                "failures": [],
            },
            {"cluster": CLUSTER, "tasks": TASKS},
        )
        with secrets:
            status, detail = service_checks.tasks_hold_current_key(ctx, SECRET_ARN, memo)
        assert status == expected, detail
    secrets.assert_no_pending_responses()


def test_doctor_warns_when_the_service_is_behind(
    stubbed: tuple[Context, NullReporter, Stubber],
) -> None:
    from gcpfargate.credentials.key import service_checks

    ctx, _, ecs = stubbed
    ecs.add_response("describe_services", STEADY_OLD, DESCRIBE)
    assert service_checks.runs_latest(ctx, {"taskDefinitionArn": NEW}, {}) == (
        "WARN",
        "service web runs web:6, not the latest web:7 (gcpfargate deploy rolls it)",
    )
    ecs.add_response(
        "describe_services",
        {
            "services": [],
            "failures": [
                {
                    "arn": f"arn:aws:ecs:{REGION}:{ACCOUNT}:service/{CLUSTER}/{NAME}",
                    "reason": "MISSING",
                }
            ],
        },
        DESCRIBE,
    )
    status, detail = service_checks.runs_latest(ctx, {"taskDefinitionArn": NEW}, {})
    assert (status, detail) == ("FAIL", "ECS service web does not exist in cluster prod")


def test_image_delete_uses_ecr_batch_delete_by_digest(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from gcpfargate.clients.aws import AwsClients
    from gcpfargate.clients.registry import Registry
    from gcpfargate.errors import AwsError

    monkeypatch.delenv("GCPFARGATE_ECR_REGISTRY", raising=False)
    aws = AwsClients(region=REGION)
    digest = "sha256:" + "ab" * 32
    request = {"repositoryName": "web", "imageIds": [{"imageDigest": digest}]}
    with Stubber(aws.client("ecr")) as ecr:
        ecr.add_response(
            "batch_delete_image",
            {"imageIds": [{"imageDigest": digest, "imageTag": "v1"}], "failures": []},
            request,
        )
        ecr.add_response(
            "batch_delete_image",
            {
                "failures": [
                    {
                        "imageId": {"imageDigest": digest},
                        "failureCode": "ImageNotFound",
                        "failureReason": "Requested image not found",
                    }
                ]
            },
            request,
        )
        ecr.add_response(
            "batch_delete_image",
            {
                "failures": [
                    {
                        "imageId": {"imageDigest": digest},
                        "failureCode": "ImageReferencedByManifestList",
                        "failureReason": "Requested image is referenced by a manifest list",
                    }
                ]
            },
            request,
        )
        Registry(aws).delete("web", digest)
        Registry(aws).delete("web", digest)  # already gone: fine
        with pytest.raises(AwsError, match="referenced by a manifest list"):
            Registry(aws).delete("web", digest)
        ecr.assert_no_pending_responses()
