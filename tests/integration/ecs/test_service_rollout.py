"""Rollouts that take time and fail, through the strict layer's ECS deployment simulation.

moto's own services settle at once and never fail; `tests.stack.strict.services` makes every
UpdateService start a deployment that settles over `rollout_seconds` (or fails like the circuit
breaker when `fail_deployments` says so). Only that rule is switched on here, in a layer of this
module's own in front of the session's moto, so the rest of the suite is unaffected.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from typing import Any

import boto3
import pytest

from tests.conftest import REGION, Project, assert_one_clean_line
from tests.integration.helpers import Terminal, prepare
from tests.stack.images import write_busybox_context
from tests.stack.local import ACCOUNT_ID, LocalStack
from tests.stack.strict import Settings, StrictLayer


@pytest.fixture(scope="module")
def layer(stack: LocalStack) -> Iterator[StrictLayer]:
    settings = Settings(rollout_seconds=3.0, account_id=ACCOUNT_ID, ecr_hosts=(stack.registry,))
    with StrictLayer(stack.moto_direct_url, settings, only=("ecs.service_deployments",)) as strict:
        yield strict


def ecs(layer: StrictLayer) -> Any:
    return boto3.client(
        "ecs",
        region_name=REGION,
        endpoint_url=layer.url,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def deploy_json(project: Project, *args: str) -> dict[str, Any]:
    result = project.run("deploy", "--output", "json", *args)
    assert result.returncode == 0, result.output
    return dict(result.json)


def test_deploy_waits_for_the_rollout_and_a_failed_one_says_how_to_roll_back(
    project: Project, layer: StrictLayer
) -> None:
    project.extra_env["AWS_ENDPOINT_URL"] = layer.url
    family, client = project.family, ecs(layer)
    prepare(project)
    first = deploy_json(project)["register-task"]["task_definition_arn"]
    client.create_cluster(clusterName=family)
    client.create_service(
        cluster=family,
        serviceName="web",
        taskDefinition=first,
        desiredCount=2,
        launchType="FARGATE",
    )
    config = project.dir / "gcpfargate.toml"
    config.write_text(config.read_text() + f'\n[service]\nname = "web"\ncluster = "{family}"\n')

    # An image change: revision 2, and deploy shows the rollout until the simulated deployment
    # settles.
    write_busybox_context(project.dir, ('CMD ["echo", "v2"]',))
    moved = project.run("deploy")
    assert moved.returncode == 0, moved.output
    for line in (
        f"  web {family}:2: 0/2 running, 2 pending",
        f"  web {family}:2: 2/2 running, 0 pending",
        "  web: (service web) has reached a steady state.",
        f"service web runs {family}:2",
    ):
        assert line in moved.stderr, moved.stderr
    service = client.describe_services(cluster=family, services=["web"])["services"][0]
    assert [
        (d["status"], d["rolloutState"], d["taskDefinition"].rsplit("/", 1)[-1])
        for d in service["deployments"]
    ] == [("PRIMARY", "COMPLETED", f"{family}:2")]

    # --no-wait returns while the deployment is still in progress.
    write_busybox_context(project.dir, ('CMD ["echo", "v3"]',))
    quick = deploy_json(project, "--no-wait")
    assert (quick["register-task"]["revision"], quick["service"]["status"]) == (3, "IN_PROGRESS")

    # The next deployment fails (the circuit breaker): exit 1, the events, and the command back.
    layer.settings.fail_deployments = 1
    write_busybox_context(project.dir, ('CMD ["echo", "v4"]',))
    failed = project.run("deploy")
    last = assert_one_clean_line(
        failed,
        1,
        f"service failed: service web did not become stable on {family}:4",
        "service events: ",
        "has stopped 2 running tasks",
        f"Roll back with `gcpfargate rollback --service web --cluster {family} --revision 3`",
    )
    assert "\n" not in last

    back = project.run(
        "rollback", "--service", "web", "--cluster", family, "--revision", "3", "--output", "json"
    )
    assert back.returncode == 0, back.output
    assert (back.json["status"], back.json["task_definition_arn"].rsplit("/", 1)[-1]) == (
        "COMPLETED",
        f"{family}:3",
    )

    # A rollout slower than --wait-timeout has not failed: ECS carries on, and the words say so.
    slow = project.run("rollback", "--wait-timeout", "1")
    last = assert_one_clean_line(
        slow,
        1,
        f"service web is still rolling out {family}:2 after service.wait_timeout = 1 s: "
        "deployment ecs-svc/",
        " IN_PROGRESS (",
        "ECS carries on with it",
        "wait longer with --wait-timeout",
    )
    assert "Roll back" not in last and "failed" not in last


def test_after_a_circuit_breaker_rollback_no_rollback_is_advised_and_waits_show_time(
    project: Project, layer: StrictLayer
) -> None:
    project.extra_env["AWS_ENDPOINT_URL"] = layer.url
    family, client = project.family, ecs(layer)
    prepare(project)
    first = deploy_json(project)["register-task"]["task_definition_arn"]
    client.create_cluster(clusterName=family)
    client.create_service(
        cluster=family,
        serviceName="web",
        taskDefinition=first,
        desiredCount=2,
        launchType="FARGATE",
        deploymentConfiguration={"deploymentCircuitBreaker": {"enable": True, "rollback": True}},
    )
    config = project.dir / "gcpfargate.toml"
    config.write_text(config.read_text() + f'\n[service]\nname = "web"\ncluster = "{family}"\n')

    # On a terminal the wait's spinner and its ✓ line carry the elapsed time.
    write_busybox_context(project.dir, ('CMD ["echo", "v2"]',))
    env = {k: v for k, v in project.env.items() if k != "CI"}
    code, shown = Terminal(
        [sys.executable, "-m", "gcpfargate", "deploy"], project.dir, env
    ).finish()
    assert code == 0, shown
    assert re.search(rf"✓ Waiting for service web to run {family}:2 stably \(\d+ s\)", shown), shown
    assert re.search(rf"service web runs {family}:2 \(2/2 running, 0 pending\) after \d+ s", shown)

    # The circuit breaker fails the next deployment and ECS rolls back by itself: nothing to undo.
    layer.settings.fail_deployments = 1
    write_busybox_context(project.dir, ('CMD ["echo", "v3"]',))
    failed = project.run("deploy")
    last = assert_one_clean_line(
        failed,
        1,
        f"service failed: service web did not become stable on {family}:3",
        f"ECS's deployment circuit breaker rolled the service back to {family}:2",
        "deployment failed: tasks failed to start.",
        "Nothing to roll back: fix what the events say, then deploy again",
    )
    assert "gcpfargate rollback" not in last
    service = client.describe_services(cluster=family, services=["web"])["services"][0]
    assert service["taskDefinition"].rsplit("/", 1)[-1] == f"{family}:2"
