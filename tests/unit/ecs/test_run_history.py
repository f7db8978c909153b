"""The run-history and alert rules' patterns against the event ECS sends, read back as runs."""

from __future__ import annotations

import pytest

from gcpfargate.ecs import alerts, history, jobs, tail
from gcpfargate.errors import UsageError
from tests.stack.strict import events

DEFINITION = "arn:aws:ecs:ap-northeast-1:123456789012:task-definition/nightly-export:7"


def _task(exit_code: int | None, stop_code: str = "EssentialContainerExited") -> dict:
    container = {"name": "app", "image": "busybox"}
    if exit_code is not None:
        container["exitCode"] = exit_code
    return {
        "taskArn": "arn:aws:ecs:ap-northeast-1:123456789012:task/jobs/0123456789abcdef",
        "clusterArn": "arn:aws:ecs:ap-northeast-1:123456789012:cluster/jobs",
        "taskDefinitionArn": DEFINITION,
        "group": "job:export-daily",
        "startedBy": "gcpfargate",
        "lastStatus": "STOPPED",
        "stopCode": stop_code,
        "stoppedReason": "Essential container in task exited",
        "containers": [container],
        "createdAt": 1765076400.0,
        "startedAt": 1765076401.5,
        "stoppedAt": 1765076463.75,
    }


def test_the_event_reads_back_as_a_run() -> None:
    event = events.task_event(_task(3))
    assert event["detail"]["startedAt"] == "2025-12-07T03:00:01.500Z"
    run = history.run_from_event(event)
    assert run is not None
    assert (run.job, run.exit_code, run.failed, run.duration_s) == ("export-daily", 3, True, 62.25)
    assert run.stopped == "2025-12-07T03:01:03+00:00"
    ok = history.run_from_event(events.task_event(_task(0)))
    assert ok is not None and not ok.failed


@pytest.mark.parametrize(
    ("task", "kept", "alerted"),
    [
        (_task(0), True, False),
        (_task(3), True, True),
        (_task(None, "TaskFailedToStart"), True, True),
        (_task(None, "UserInitiated"), True, False),
        (
            {**_task(1), "taskDefinitionArn": DEFINITION.replace("export:7", "export-v2:1")},
            False,
            False,
        ),
        ({**_task(1), "lastStatus": "RUNNING"}, False, False),
    ],
)
def test_patterns_keep_every_stopped_run_and_alert_on_failures(
    task: dict, kept: bool, alerted: bool
) -> None:
    event = events.task_event(task)
    event["detail"]["lastStatus"] = task["lastStatus"]
    assert events.matches(history.stopped_pattern(DEFINITION, "nightly-export"), event) is kept
    assert events.matches(alerts.failed_pattern(DEFINITION, "nightly-export"), event) is alerted


def test_the_alert_names_job_exit_code_and_reason() -> None:
    event = events.task_event(_task(3))
    line = events.transform(
        {"InputPathsMap": alerts.INPUT_PATHS, "InputTemplate": alerts.input_template("fam")},
        event,
    )
    assert line.startswith("gcpfargate: a run of fam failed: job job:export-daily, exit code 3, ")
    assert "EssentialContainerExited: Essential container in task exited" in line


def test_names_stay_within_64_characters() -> None:
    family = "f" * 80
    assert len(history.rule_name(family)) == 64
    assert history.rule_name(family) != history.rule_name(family + "x")
    assert history.rule_name("short") == "gcpfargate-short-runs"
    assert jobs.group_name("short") == "gcpfargate-short"


def test_the_logs_policy_covers_every_family_history() -> None:
    document = history.policy_document("aws", "ap-northeast-1", "123456789012")
    group = "arn:aws:logs:ap-northeast-1:123456789012:log-group:/gcpfargate/fam/runs"
    assert history.policy_allows(document, group)
    assert not history.policy_allows(document, group.replace("/gcpfargate/", "/ecs/"))


@pytest.mark.parametrize(
    ("text", "seconds"), [("10m", 600), ("2h", 7200), ("30s", 30), ("1d", 86400)]
)
def test_since(text: str, seconds: int) -> None:
    assert tail.parse_since(text) == seconds


@pytest.mark.parametrize("text", ["", "10", "m", "0m", "10y", "-5m"])
def test_bad_since_is_a_usage_error(text: str) -> None:
    with pytest.raises(UsageError):
        tail.parse_since(text)
