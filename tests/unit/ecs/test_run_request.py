"""The exact RunTask request, and the wait loop's calls, checked with botocore's Stubber."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.stub import Stubber

from gcpfargate.config import load_settings
from gcpfargate.core.context import Context
from gcpfargate.core.plan import Plan
from gcpfargate.core.report import NullReporter
from gcpfargate.ecs import run as core_run
from gcpfargate.errors import ConfigError, OperationError

REGION = "ap-northeast-1"
FAMILY = "batch"
TD_ARN = f"arn:aws:ecs:{REGION}:123456789012:task-definition/{FAMILY}:4"
TASK_ARN = f"arn:aws:ecs:{REGION}:123456789012:task/jobs/0123456789abcdef0123456789abcdef"
SUBNETS = ["subnet-0123456789abcdef0", "subnet-0fedcba9876543210"]
GROUP = "sg-0123456789abcdef0"


@pytest.fixture(autouse=True)
def _aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        "AWS_ENDPOINT_URL",
        "AWS_PROFILE",
        "AWS_ENDPOINT_URL_ECS",
        "AWS_ENDPOINT_URL_LOGS",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")


def make_context(
    tmp_path: Path, run_section: str, dry_run: bool = False
) -> tuple[Context, NullReporter]:
    config = tmp_path / "gcpfargate.toml"
    config.write_text(
        f'[aws]\nregion = "{REGION}"\n\n[task]\nfamily = "{FAMILY}"\n\n[run]\n{run_section}\n'
    )
    reporter = NullReporter()
    return Context(
        settings=load_settings(config, environ={}),
        reporter=reporter,
        plan=Plan(apply=not dry_run),
    ), reporter


def definition(**extra: Any) -> dict[str, Any]:
    return {
        "taskDefinition": {
            "taskDefinitionArn": TD_ARN,
            "family": FAMILY,
            "revision": 4,
            "status": "ACTIVE",
            "networkMode": "awsvpc",
            "containerDefinitions": [
                {
                    "name": "app",
                    "image": "busybox",
                    "essential": True,
                    "logConfiguration": {
                        "logDriver": "awslogs",
                        "options": {
                            "awslogs-group": "/ecs/batch",
                            "awslogs-region": REGION,
                            "awslogs-stream-prefix": "job",
                        },
                    },
                }
            ],
            **extra,
        }
    }


@pytest.fixture
def stubbed(tmp_path: Path) -> Iterator[tuple[Context, NullReporter, Stubber, Stubber]]:
    ctx, reporter = make_context(
        tmp_path,
        f'cluster = "jobs"\nsubnets = {SUBNETS!r}\nsecurity_groups = ["{GROUP}"]\n'
        'assign_public_ip = true\nplatform_version = "1.4.0"\npoll_interval = 3\n'
        "wait_timeout = 100",
    )
    ecs, logs = Stubber(ctx.aws.client("ecs")), Stubber(ctx.aws.client("logs"))
    with ecs, logs:
        yield ctx, reporter, ecs, logs
        ecs.assert_no_pending_responses()
        logs.assert_no_pending_responses()


EXPECTED_REQUEST = {
    "cluster": "jobs",
    "taskDefinition": TD_ARN,
    "launchType": "FARGATE",
    "platformVersion": "1.4.0",
    "count": 1,
    "startedBy": "gcpfargate",
    "networkConfiguration": {
        "awsvpcConfiguration": {
            "subnets": SUBNETS,
            "securityGroups": [GROUP],
            "assignPublicIp": "ENABLED",
        }
    },
}


def test_run_task_request_shape(stubbed: tuple[Context, NullReporter, Stubber, Stubber]) -> None:
    ctx, reporter, ecs, _ = stubbed
    ecs.add_response("describe_task_definition", definition(), {"taskDefinition": FAMILY})
    ecs.add_response(
        "run_task", {"tasks": [{"taskArn": TASK_ARN}], "failures": []}, EXPECTED_REQUEST
    )
    result = core_run.run(ctx, wait=False)
    assert result.to_json() == {"task_arn": TASK_ARN, "exit_code": None}
    assert reporter.lines == [f"started task {TASK_ARN}"]


def test_revision_is_asked_for_by_family_and_number(
    stubbed: tuple[Context, NullReporter, Stubber, Stubber],
) -> None:
    ctx, _, ecs, _ = stubbed
    ecs.add_response("describe_task_definition", definition(), {"taskDefinition": f"{FAMILY}:4"})
    ecs.add_response("run_task", {"tasks": [{"taskArn": TASK_ARN}]}, EXPECTED_REQUEST)
    assert core_run.run(ctx, revision=4, wait=False).task_arn == TASK_ARN


def test_wait_polls_with_backoff_streams_logs_and_returns_the_exit_code(
    stubbed: tuple[Context, NullReporter, Stubber, Stubber],
) -> None:
    ctx, reporter, ecs, logs = stubbed
    stream = {
        "logGroupName": "/ecs/batch",
        "logStreamName": "job/app/0123456789abcdef0123456789abcdef",
        "startFromHead": True,
    }
    ecs.add_response("describe_task_definition", definition(), {"taskDefinition": FAMILY})
    ecs.add_response("run_task", {"tasks": [{"taskArn": TASK_ARN}]}, EXPECTED_REQUEST)
    described = {"cluster": "jobs", "tasks": [TASK_ARN]}
    for status in ("PROVISIONING", "RUNNING", "RUNNING"):
        ecs.add_response(
            "describe_tasks", {"tasks": [{"taskArn": TASK_ARN, "lastStatus": status}]}, described
        )
    ecs.add_response(
        "describe_tasks",
        {
            "tasks": [
                {
                    "taskArn": TASK_ARN,
                    "lastStatus": "STOPPED",
                    "stopCode": "EssentialContainerExited",
                    "stoppedReason": "Essential container in task exited",
                    "containers": [{"name": "app", "exitCode": 3, "lastStatus": "STOPPED"}],
                }
            ]
        },
        described,
    )
    # The stream does not exist at first; then two events; then nothing new.
    logs.add_client_error(
        "get_log_events",
        "ResourceNotFoundException",
        "The specified log stream does not exist.",
        expected_params=stream,
    )
    logs.add_response(
        "get_log_events",
        {
            "events": [
                {"timestamp": 1, "message": "step 1\n"},
                {"timestamp": 2, "message": "step 2"},
            ],
            "nextForwardToken": "f/2",
        },
        stream,
    )
    logs.add_response(
        "get_log_events", {"events": [], "nextForwardToken": "f/2"}, {**stream, "nextToken": "f/2"}
    )
    logs.add_response(
        "get_log_events", {"events": [], "nextForwardToken": "f/2"}, {**stream, "nextToken": "f/2"}
    )
    logs.add_response(
        "get_log_events",
        {"events": [{"timestamp": 3, "message": "done"}], "nextForwardToken": "f/3"},
        {**stream, "nextToken": "f/2"},
    )
    logs.add_response(
        "get_log_events", {"events": [], "nextForwardToken": "f/3"}, {**stream, "nextToken": "f/3"}
    )
    # After STOPPED the tail keeps polling until two polls in a row bring nothing (issue 12 item
    # 12).
    for _ in range(2):
        logs.add_response(
            "get_log_events",
            {"events": [], "nextForwardToken": "f/3"},
            {**stream, "nextToken": "f/3"},
        )

    sleeps: list[float] = []
    now = [0.0]

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        now[0] += seconds

    result = core_run.run(ctx, sleep=sleep, clock=lambda: now[0])
    assert (result.task_arn, result.exit_code) == (TASK_ARN, 3)
    assert result.stopped_reason == "Essential container in task exited"
    assert reporter.lines == [f"started task {TASK_ARN}", "step 1", "step 2", "done"]
    # Backoff, capped at run.poll_interval = 3; then one pause between the two empty polls of the
    # tail.
    assert sleeps == [1.0, 1.5, 2.25, 1.5]
    assert reporter.warnings == []
    logs.assert_no_pending_responses()


def test_stopped_without_exit_code_is_a_start_failure() -> None:
    task = {
        "taskArn": TASK_ARN,
        "lastStatus": "STOPPED",
        "stoppedReason": "CannotPullContainerError: pull image manifest has been retried 5 time(s)",
        "containers": [{"name": "app", "lastStatus": "STOPPED"}],
    }
    with pytest.raises(OperationError) as info:
        core_run.outcome(task, definition()["taskDefinition"])
    assert info.value.message.startswith(
        "task 0123456789abcdef0123456789abcdef failed to start: CannotPullContainer"
    )
    assert "push-image" in info.value.hint and "gcpfargate doctor" in info.value.hint


def test_dry_run_omits_empty_security_groups_and_sends_nothing(tmp_path: Path) -> None:
    ctx, _ = make_context(tmp_path, f"subnets = {SUBNETS[:1]!r}", dry_run=True)
    with Stubber(ctx.aws.client("ecs")) as ecs:
        ecs.add_response("describe_task_definition", definition(), {"taskDefinition": FAMILY})
        result = core_run.run(ctx)
        ecs.assert_no_pending_responses()
    assert result.to_json()["request"]["networkConfiguration"] == {
        "awsvpcConfiguration": {"subnets": SUBNETS[:1], "assignPublicIp": "DISABLED"}
    }
    assert result.request is not None and result.request["cluster"] == "default"


def test_missing_subnets_fail_before_any_call(tmp_path: Path) -> None:
    ctx, _ = make_context(tmp_path, "")
    with Stubber(ctx.aws.client("ecs")), pytest.raises(ConfigError, match=r"run\.subnets"):
        core_run.run(ctx)
