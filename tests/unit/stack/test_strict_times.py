"""The strict layer answers the times real AWS answers, over HTTP through botocore's parsers: ECS
tasks' createdAt/startedAt/stoppedAt (rule `ecs.task_timestamps`; moto returns none) and each secret
version's CreatedDate (rule `secretsmanager.version_dates`; moto lists the time of the call)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest

from tests.stack.local import ACCOUNT_ID, REGION
from tests.stack.strict import Settings, StrictLayer

boto3 = pytest.importorskip("boto3")

STARTED = ("createdAt", "connectivityAt", "pullStartedAt", "pullStoppedAt", "startedAt")
STOPPED = ("stoppingAt", "executionStoppedAt", "stoppedAt")


@pytest.fixture
def layer(moto: str) -> Iterator[StrictLayer]:
    with StrictLayer(moto, Settings(account_id=ACCOUNT_ID)) as strict:
        yield strict


def aws(url: str, service: str = "ecs") -> Any:
    return boto3.client(
        service,
        region_name=REGION,
        endpoint_url=url,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def run_one(ecs: Any, cluster: str) -> str:
    ecs.create_cluster(clusterName=cluster)
    ecs.register_task_definition(
        family=cluster, containerDefinitions=[{"name": "a", "image": "b", "memory": 8}]
    )
    return str(
        ecs.run_task(cluster=cluster, taskDefinition=cluster, launchType="FARGATE")["tasks"][0][
            "taskArn"
        ]
    )


def test_running_tasks_carry_created_and_started_times(layer: StrictLayer) -> None:
    ecs = aws(layer.url)
    before = time.time()
    arn = run_one(ecs, "stamped")
    after = time.time()
    time.sleep(0.05)
    task = ecs.describe_tasks(cluster="stamped", tasks=[arn])["tasks"][0]
    assert all(isinstance(task.get(name), datetime) for name in STARTED), task
    assert before - 0.01 <= task["startedAt"].timestamp() <= after + 0.01
    assert task["createdAt"] <= task["pullStartedAt"] <= task["pullStoppedAt"] <= task["startedAt"]
    # The same moments on every later answer: a task's start does not move.
    again = ecs.describe_tasks(cluster="stamped", tasks=[arn])["tasks"][0]
    assert [again[name] for name in STARTED] == [task[name] for name in STARTED]
    # A second task started later has a later startedAt (what doctor and revoke-previous compare).
    later = ecs.run_task(cluster="stamped", taskDefinition="stamped", launchType="FARGATE")[
        "tasks"
    ][0]
    assert later["startedAt"] > task["startedAt"]
    stopped = ecs.stop_task(cluster="stamped", task=arn, reason="test")["task"]
    assert all(stopped[name] >= task["startedAt"] for name in STOPPED), stopped
    assert (
        ecs.describe_tasks(cluster="stamped", tasks=[arn])["tasks"][0]["stoppedAt"]
        == stopped["stoppedAt"]
    )


def test_moto_alone_has_no_task_timestamps(layer: StrictLayer) -> None:
    """Why the rule exists: with it off (or on moto directly) no task has a start time."""
    with layer.without("ecs.task_timestamps"):
        ecs = aws(layer.url)
        arn = run_one(ecs, "unstamped")
        task = ecs.describe_tasks(cluster="unstamped", tasks=[arn])["tasks"][0]
    assert not any(name in task for name in (*STARTED, *STOPPED)), task


def test_secret_versions_keep_the_moment_they_were_created(layer: StrictLayer) -> None:
    sm = aws(layer.url, "secretsmanager")
    before = time.time()
    first = sm.create_secret(Name=f"dates-{time.time_ns()}", SecretString="one")
    time.sleep(0.3)
    second = sm.put_secret_value(SecretId=first["ARN"], SecretString="two")
    time.sleep(1.5)

    def listed() -> dict[str, datetime]:
        versions = sm.list_secret_version_ids(SecretId=first["ARN"])["Versions"]
        return {v["VersionId"]: v["CreatedDate"] for v in versions}

    dates = listed()
    created_1, created_2 = dates[first["VersionId"]], dates[second["VersionId"]]
    assert before - 0.01 <= created_1.timestamp() < created_2.timestamp() < before + 1.0, dates
    assert created_2.timestamp() - created_1.timestamp() >= 0.29  # milliseconds, not whole seconds
    assert listed() == dates  # not the time of the call
    current = sm.get_secret_value(SecretId=first["ARN"])
    assert (current["VersionId"], current["CreatedDate"]) == (second["VersionId"], created_2)
    with layer.without("secretsmanager.version_dates"):  # why the rule exists: moto answers "now"
        asked = time.time()
        versions = aws(layer.url, "secretsmanager").list_secret_version_ids(SecretId=first["ARN"])[
            "Versions"
        ]
    assert all(
        v["CreatedDate"].timestamp() >= int(asked) > created_2.timestamp() for v in versions
    ), versions
