"""The strict layer refuses and rewrites with AWS's own texts; each rule can be switched off.

boto3 talks over HTTP to a real moto server through the layer, so every answer below went through
botocore's parsers exactly as the product's calls do.
"""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.stack.local import ACCOUNT_ID, REGION
from tests.stack.strict import Settings, StrictLayer

boto3 = pytest.importorskip("boto3")
from botocore.exceptions import ClientError  # noqa: E402

from tests.conftest import ROOT  # noqa: E402

REGISTRY = "127.0.0.1:5999"  # stands in for the stack's local registry (counts as ECR)
TRUST = json.dumps(
    {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Action": "sts:AssumeRole",
                "Principal": {"Service": "ecs-tasks.amazonaws.com"},
            }
        ],
    }
)


@pytest.fixture
def layer(moto: str) -> Iterator[StrictLayer]:
    settings = Settings(rollout_seconds=1.5, account_id=ACCOUNT_ID, ecr_hosts=(REGISTRY,))
    with StrictLayer(moto, settings) as strict:
        yield strict


def client(layer: StrictLayer, service: str) -> Any:
    return boto3.client(
        service,
        region_name=REGION,
        endpoint_url=layer.url,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


_names = iter(range(10**6))


def unique(prefix: str) -> str:
    return f"{prefix}-{time.time_ns() % 10**9}-{next(_names)}"


def refusal(call: Any) -> tuple[str, str]:
    with pytest.raises(ClientError) as raised:
        call()
    return raised.value.response["Error"]["Code"], raised.value.response["Error"]["Message"]


def fargate(family: str, container: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "family": family,
        "networkMode": "awsvpc",
        "requiresCompatibilities": ["FARGATE"],
        "cpu": "256",
        "memory": "512",
        "containerDefinitions": [{"name": "app", "image": "busybox", **container}],
        **extra,
    }


# -- rule 1: RegisterTaskDefinition refusals ------------------------------------------------
def test_secrets_without_execution_role_are_refused_with_the_ecs_text(layer: StrictLayer) -> None:
    ecs = client(layer, "ecs")
    request = fargate(
        unique("secrets"), {"secrets": [{"name": "KEY", "valueFrom": "arn:aws:secretsmanager:x"}]}
    )
    assert refusal(lambda: ecs.register_task_definition(**request)) == (
        "ClientException",
        "When you are specifying container secrets, you must also specify a value for "
        "'executionRoleArn'.",
    )
    with layer.without("ecs.secrets_need_execution_role"):
        assert ecs.register_task_definition(**request)["taskDefinition"]["revision"] == 1
    role = f"arn:aws:iam::{ACCOUNT_ID}:role/exec"
    assert (
        ecs.register_task_definition(**request, executionRoleArn=role)["taskDefinition"]["revision"]
        == 2
    )
    assert layer.fired["ecs.secrets_need_execution_role"] == 1


def test_fargate_awslogs_and_ecr_images_need_an_execution_role(layer: StrictLayer) -> None:
    ecs = client(layer, "ecs")
    logs = {"logConfiguration": {"logDriver": "awslogs", "options": {"awslogs-group": "g"}}}
    assert refusal(lambda: ecs.register_task_definition(**fargate(unique("logs"), logs))) == (
        "ClientException",
        "Fargate requires task definition to have execution role ARN to support log driver "
        "awslogs.",
    )
    ecr_text = "Fargate requires task definition to have execution role ARN to support ECR images."
    for image in (f"{ACCOUNT_ID}.dkr.ecr.{REGION}.amazonaws.com/app:1", f"{REGISTRY}/app:1"):
        request = fargate(unique("ecr"), {"image": image})
        assert refusal(lambda request=request: ecs.register_task_definition(**request)) == (
            "ClientException",
            ecr_text,
        )
    # Not Fargate, not ECR: nothing to refuse.
    ec2 = {**fargate(unique("ec2"), logs), "requiresCompatibilities": ["EC2"]}
    assert ecs.register_task_definition(**ec2)["taskDefinition"]["revision"] == 1
    assert ecs.register_task_definition(
        **fargate(unique("hub"), {"image": "docker.io/library/busybox"})
    )


def test_fargate_definitions_are_checked_at_register_with_the_ecs_texts(
    layer: StrictLayer,
) -> None:
    ecs = client(layer, "ecs")
    cases = [
        ({"networkMode": "bridge"}, {}, "Fargate only supports network mode \u2018awsvpc\u2019."),
        ({}, {"links": ["db"]}, "Links are not supported when networkMode=awsvpc."),
        (
            {"volumes": [{"name": "v", "host": {"sourcePath": "/data"}}]},
            {},
            "Fargate compatible task definitions do not support sourcePath",
        ),
        ({"ipcMode": "task"}, {}, "Tasks using the Fargate launch type do not support ipcMode."),
        ({"cpu": None}, {}, "Fargate requires that 'cpu' be defined at the task level."),
        ({"memory": None}, {}, "Fargate requires that 'memory' be defined at the task level."),
        (
            {"cpu": "512", "memory": "512"},
            {},
            "No Fargate configuration exists for given values: 512 CPU, 512 memory. See the Amazon "
            "ECS documentation for the valid values.",
        ),
    ]
    for extra, container, text in cases:
        request = fargate(unique("fargate"), container, **extra)
        request = {key: value for key, value in request.items() if value is not None}
        assert refusal(lambda request=request: ecs.register_task_definition(**request)) == (
            "ClientException",
            text,
        )
    # Not Fargate: ECS does not apply these rules; a task-storage volume and "1 vCPU" are fine.
    ec2 = {**fargate(unique("ec2"), {"links": ["db"]}), "requiresCompatibilities": ["EC2"]}
    assert ecs.register_task_definition(**{**ec2, "networkMode": "bridge"})
    fine = fargate(unique("ok"), {}, volumes=[{"name": "scratch", "host": {}}])
    assert ecs.register_task_definition(**{**fine, "cpu": "1 vCPU", "memory": "2 GB"})
    with layer.without("ecs.fargate_task_rules"):
        assert ecs.register_task_definition(**fargate(unique("off"), {}, networkMode="bridge"))


def test_tmpfs_on_a_pinned_platform_version_before_1_4_0_is_refused_at_run_and_service(
    layer: StrictLayer,
) -> None:
    ecs = client(layer, "ecs")
    cluster = unique("tmpfs")
    ecs.create_cluster(clusterName=cluster)
    tmpfs = {"linuxParameters": {"tmpfs": [{"containerPath": "/run/k", "size": 4}]}}
    with_tmpfs = ecs.register_task_definition(**fargate(unique("tmpfs"), tmpfs))
    plain = ecs.register_task_definition(**fargate(unique("plain"), {}))
    arn = with_tmpfs["taskDefinition"]["taskDefinitionArn"]
    network = {"awsvpcConfiguration": {"subnets": ["subnet-12345678"]}}
    text = (
        "PlatformTaskDefinitionIncompatibilityException",
        "One or more of the requested capabilities are not supported.",
    )
    run = {"cluster": cluster, "launchType": "FARGATE", "networkConfiguration": network}
    for version in ("1.3.0", "1.0.0"):
        assert (
            refusal(
                lambda version=version: ecs.run_task(
                    taskDefinition=arn, platformVersion=version, **run
                )
            )
            == text
        )
    assert (
        refusal(
            lambda: ecs.create_service(
                cluster=cluster,
                serviceName=unique("svc"),
                taskDefinition=arn,
                desiredCount=0,
                launchType="FARGATE",
                platformVersion="1.3.0",
            )
        )
        == text
    )
    fired = layer.fired["ecs.tmpfs_platform_version"]
    # 1.4.0, LATEST, no version, or no tmpfs: the rule lets the call through (to moto).
    plain_arn = plain["taskDefinition"]["taskDefinitionArn"]
    for definition, version in ((arn, "1.4.0"), (arn, "LATEST"), (arn, None), (plain_arn, "1.3.0")):
        ecs.create_service(
            cluster=cluster,
            serviceName=unique("svc"),
            taskDefinition=definition,
            desiredCount=0,
            launchType="FARGATE",
            **({"platformVersion": version} if version else {}),
        )
    assert layer.fired["ecs.tmpfs_platform_version"] == fired


# -- rule 2: what ECS fills in, and ListTaskDefinitions sort ---------------------------------
def test_describe_returns_what_ecs_fills_in(layer: StrictLayer) -> None:
    ecs = client(layer, "ecs")
    request = fargate(
        unique("filled"),
        {
            "healthCheck": {"command": ["CMD", "true"]},
            "environment": [{"name": "EMPTY", "value": ""}, {"name": "KEPT", "value": "1"}],
            "portMappings": [{"containerPort": 8080}],
        },
        volumes=[{"name": "v", "efsVolumeConfiguration": {"fileSystemId": "fs-1"}}],
    )
    ecs.register_task_definition(**request)
    described = ecs.describe_task_definition(taskDefinition=request["family"])["taskDefinition"]
    container = described["containerDefinitions"][0]
    assert container["healthCheck"] == {
        "command": ["CMD", "true"],
        "interval": 30,
        "timeout": 5,
        "retries": 3,
    }
    assert container["environment"] == [{"name": "KEPT", "value": "1"}]
    assert container["portMappings"] == [
        {"containerPort": 8080, "hostPort": 8080, "protocol": "tcp"}
    ]
    assert described["volumes"][0]["efsVolumeConfiguration"] == {
        "fileSystemId": "fs-1",
        "rootDirectory": "/",
        "transitEncryption": "DISABLED",
    }

    # A set startPeriod and explicit values stay as sent; each rewrite can be switched off.
    explicit = {
        "command": ["CMD", "true"],
        "interval": 10,
        "timeout": 2,
        "retries": 1,
        "startPeriod": 5,
    }
    ecs.register_task_definition(
        **{
            **request,
            "containerDefinitions": [
                {**request["containerDefinitions"][0], "healthCheck": explicit}
            ],
        }
    )
    again = ecs.describe_task_definition(taskDefinition=request["family"])["taskDefinition"]
    assert again["containerDefinitions"][0]["healthCheck"] == explicit
    with layer.without("ecs.health_check_defaults", "ecs.drop_empty_environment"):
        ecs.register_task_definition(**request)
    raw = ecs.describe_task_definition(taskDefinition=request["family"])["taskDefinition"][
        "containerDefinitions"
    ][0]
    assert raw["healthCheck"] == {"command": ["CMD", "true"]}
    assert {"name": "EMPTY", "value": ""} in raw["environment"]


def test_list_task_definitions_honours_sort_desc_across_pages(layer: StrictLayer) -> None:
    ecs = client(layer, "ecs")
    family = unique("sorted")
    for _ in range(5):
        ecs.register_task_definition(
            family=family, containerDefinitions=[{"name": "a", "image": "b", "memory": 8}]
        )
    pages = ecs.get_paginator("list_task_definitions").paginate(
        familyPrefix=family, sort="DESC", PaginationConfig={"PageSize": 2}
    )
    arns = [arn for page in pages for arn in page["taskDefinitionArns"]]
    assert [int(arn.rsplit(":", 1)[1]) for arn in arns] == [5, 4, 3, 2, 1]
    first = ecs.list_task_definitions(familyPrefix=family, sort="DESC", maxResults=1)[
        "taskDefinitionArns"
    ]
    assert first[0].endswith(f"{family}:5")
    with layer.without("ecs.list_sort"):  # moto alone: ascending whatever `sort` says
        assert ecs.list_task_definitions(familyPrefix=family, sort="DESC")["taskDefinitionArns"][
            0
        ].endswith(":1")


# -- rule 3: name limits -------------------------------------------------------------------
def test_iam_role_names_over_64_characters_are_refused(layer: StrictLayer) -> None:
    iam = client(layer, "iam")
    name = "r" * 65
    assert refusal(lambda: iam.create_role(RoleName=name, AssumeRolePolicyDocument=TRUST)) == (
        "ValidationError",
        f"1 validation error detected: Value '{name}' at 'roleName' failed to satisfy "
        "constraint: Member must have length less than or equal to 64",
    )
    ok = unique("r").ljust(64, "x")
    assert iam.create_role(RoleName=ok, AssumeRolePolicyDocument=TRUST)["Role"]["RoleName"] == ok
    code, message = refusal(
        lambda: iam.put_role_policy(RoleName=ok, PolicyName="p" * 129, PolicyDocument="{}")
    )
    assert (code, "at 'policyName'" in message, message.endswith("equal to 128")) == (
        "ValidationError",
        True,
        True,
    )
    with layer.without("iam.name_limits"):
        assert iam.create_role(RoleName=unique("r").ljust(70, "x"), AssumeRolePolicyDocument=TRUST)


def test_ecr_repository_names_over_256_characters_are_refused(layer: StrictLayer) -> None:
    ecr = client(layer, "ecr")
    assert refusal(lambda: ecr.create_repository(repositoryName="a" * 257)) == (
        "InvalidParameterException",
        "Invalid parameter at 'repositoryName' failed to satisfy constraint: "
        "'must have length less than or equal to 256'",
    )
    assert ecr.create_repository(repositoryName=unique("a").ljust(256, "b"))["repository"]


def test_scheduler_names_and_ecs_task_groups_over_their_limits_are_refused(
    layer: StrictLayer,
) -> None:
    scheduler = client(layer, "scheduler")
    assert refusal(lambda: scheduler.create_schedule_group(Name="g" * 65)) == (
        "ValidationException",
        f"1 validation error detected: Value '{'g' * 65}' at 'name' failed to satisfy "
        "constraint: Member must have length less than or equal to 64",
    )
    code, message = refusal(lambda: scheduler.create_schedule_group(Name="a/b"))
    assert (code, message.endswith("pattern: [0-9a-zA-Z-_.]+")) == ("ValidationException", True)
    schedule = {
        "ScheduleExpression": "rate(1 day)",
        "FlexibleTimeWindow": {"Mode": "OFF"},
        "Target": {
            "Arn": "arn:aws:ecs:us-east-1:123456789012:cluster/c",
            "RoleArn": "arn:aws:iam::123456789012:role/r",
            "EcsParameters": {
                "TaskDefinitionArn": "arn:aws:ecs:us-east-1:123456789012:task-definition/f",
                "Group": "job:" + "x" * 252,
            },
        },
    }
    code, message = refusal(lambda: scheduler.create_schedule(Name=unique("s"), **schedule))
    assert (code, "at 'target.ecsParameters.group'" in message) == ("ValidationException", True)
    assert message.endswith("less than or equal to 255")
    target = {k: v for k, v in schedule["Target"].items() if k != "EcsParameters"}
    plain = {**schedule, "Target": target}
    code, message = refusal(lambda: scheduler.create_schedule(Name="s" * 65, **plain))
    assert (code, message.endswith("less than or equal to 64")) == ("ValidationException", True)
    schedule["Target"]["EcsParameters"]["Group"] = "job:nightly"  # type: ignore[index]
    assert scheduler.create_schedule(Name=unique("s").ljust(64, "x"), **schedule)["ScheduleArn"]


# -- rule 4: eventual consistency ----------------------------------------------------------
def test_a_new_role_is_refused_until_it_has_propagated(layer: StrictLayer) -> None:
    iam, ecs, scheduler = client(layer, "iam"), client(layer, "ecs"), client(layer, "scheduler")
    name = unique("fresh")
    arn = iam.create_role(RoleName=name, AssumeRolePolicyDocument=TRUST)["Role"]["Arn"]
    request = fargate(unique("pass"), {"image": "busybox", "memory": 64}, executionRoleArn=arn)
    assert refusal(lambda: ecs.register_task_definition(**request)) == (
        "AccessDeniedException",
        f"User: arn:aws:iam::{ACCOUNT_ID}:user/moto is not authorized to perform: "
        f"iam:PassRole on resource: {arn}",
    )
    target = {"Arn": f"arn:aws:ecs:{REGION}:{ACCOUNT_ID}:cluster/default", "RoleArn": arn}
    schedule = {
        "Name": unique("s"),
        "ScheduleExpression": "rate(1 hour)",
        "Target": target,
        "FlexibleTimeWindow": {"Mode": "OFF"},
    }
    assert refusal(lambda: scheduler.create_schedule(**schedule)) == (
        "ValidationException",
        "The execution role you provide must allow AWS EventBridge Scheduler to assume the role.",
    )
    # Each service refused its first use once (a count, not a time window): the next use works.
    registered = ecs.register_task_definition(**request)["taskDefinition"]
    assert scheduler.create_schedule(**schedule)["ScheduleArn"]

    # A policy change makes the role unsettled again: RunTask cannot assume it for a while.
    ecs.create_cluster(clusterName="strict")
    ec2 = client(layer, "ec2")
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    ec2.modify_vpc_attribute(
        VpcId=vpc, EnableDnsHostnames={"Value": True}
    )  # moto names the task's ENI
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.1.0/24")["Subnet"]["SubnetId"]
    group = ec2.create_security_group(GroupName=unique("sg"), Description="strict", VpcId=vpc)[
        "GroupId"
    ]
    iam.put_role_policy(
        RoleName=name,
        PolicyName="p",
        PolicyDocument=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [{"Effect": "Allow", "Action": "logs:*", "Resource": "*"}],
            }
        ),
    )
    run = {
        "cluster": "strict",
        "taskDefinition": registered["taskDefinitionArn"],
        "launchType": "FARGATE",
        "networkConfiguration": {
            "awsvpcConfiguration": {"subnets": [subnet], "securityGroups": [group]}
        },
    }
    assert refusal(lambda: ecs.run_task(**run)) == (
        "ClientException",
        f"ECS was unable to assume the role '{arn}' that was provided for this task. Please "
        "verify that the role being passed has the proper trust relationship and permissions "
        "and that your IAM user has permissions to pass this role.",
    )
    assert "tasks" in ecs.run_task(**run)
    assert layer.fired["consistency.pass_role"] == 1 and layer.fired["consistency.run_task"] == 1


def test_a_consistency_window_refuses_every_use_until_it_ends(layer: StrictLayer) -> None:
    layer.settings.consistency_refusals, layer.settings.consistency_delay = 0, 0.5
    iam, ecs = client(layer, "iam"), client(layer, "ecs")
    name = unique("window")
    arn = iam.create_role(RoleName=name, AssumeRolePolicyDocument=TRUST)["Role"]["Arn"]
    request = fargate(unique("win"), {"image": "busybox", "memory": 64}, executionRoleArn=arn)
    for _ in range(2):  # not counted: refused for as long as the window lasts
        assert refusal(lambda: ecs.register_task_definition(**request))[0] == (
            "AccessDeniedException"
        )
    time.sleep(0.6)
    assert ecs.register_task_definition(**request)["taskDefinition"]["revision"] == 1


# -- rule 5: forced collisions -------------------------------------------------------------
def test_forced_collisions_create_the_resource_and_answer_already_exists(
    layer: StrictLayer,
) -> None:
    layer.enable(
        "collisions.create_secret",
        "collisions.create_role",
        "collisions.create_log_group",
        "collisions.create_repository",
    )
    secrets, iam, logs, ecr = (client(layer, s) for s in ("secretsmanager", "iam", "logs", "ecr"))
    secret, role, group, repo = unique("s"), unique("role"), unique("/g"), unique("repo")
    assert refusal(lambda: secrets.create_secret(Name=secret, SecretString="v")) == (
        "ResourceExistsException",
        f"The operation failed because the secret {secret} already exists.",
    )
    assert refusal(lambda: iam.create_role(RoleName=role, AssumeRolePolicyDocument=TRUST)) == (
        "EntityAlreadyExists",
        f"Role with name {role} already exists.",
    )
    assert refusal(lambda: logs.create_log_group(logGroupName=group)) == (
        "ResourceAlreadyExistsException",
        "The specified log group already exists",
    )
    assert refusal(lambda: ecr.create_repository(repositoryName=repo)) == (
        "RepositoryAlreadyExistsException",
        f"The repository with name '{repo}' already exists in the registry with id '{ACCOUNT_ID}'",
    )
    # Each really exists, as if another process had created it.
    assert secrets.describe_secret(SecretId=secret)["Name"] == secret
    assert iam.get_role(RoleName=role)["Role"]["RoleName"] == role
    assert (
        logs.describe_log_groups(logGroupNamePrefix=group)["logGroups"][0]["logGroupName"] == group
    )
    assert ecr.describe_repositories(repositoryNames=[repo])["repositories"]
    # Only the first create of a name collides; a second one is refused by moto itself.
    code, _ = refusal(lambda: iam.create_role(RoleName=role, AssumeRolePolicyDocument=TRUST))
    assert code == "EntityAlreadyExists"
    assert layer.collisions == {
        "CreateSecret": 1,
        "CreateRole": 1,
        "CreateLogGroup": 1,
        "CreateRepository": 1,
    }
    assert layer.report()["collisions"] == layer.collisions


# -- rule 6: service deployments -----------------------------------------------------------
def _service(ecs: Any, name: str) -> dict[str, Any]:
    return ecs.describe_services(cluster="svc", services=[name])["services"][0]


def _wait_rollout(ecs: Any, name: str, timeout: float = 10) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        service = _service(ecs, name)
        if service["deployments"][0]["rolloutState"] != "IN_PROGRESS":
            return service
        time.sleep(0.2)
    raise AssertionError(f"deployment of {name} still in progress after {timeout}s")


def test_service_deployments_roll_out_over_time_and_can_fail(layer: StrictLayer) -> None:
    ecs = client(layer, "ecs")
    ecs.create_cluster(clusterName="svc")
    family, name = unique("svc"), unique("web")
    first = ecs.register_task_definition(
        family=family, containerDefinitions=[{"name": "a", "image": "b", "memory": 8}]
    )["taskDefinition"]["taskDefinitionArn"]
    created = ecs.create_service(
        cluster="svc", serviceName=name, taskDefinition=first, desiredCount=2
    )["service"]
    assert created["deployments"][0]["rolloutState"] == "IN_PROGRESS"
    assert (created["runningCount"], created["pendingCount"]) == (0, 2)
    done = _wait_rollout(ecs, name)
    assert [(d["status"], d["rolloutState"], d["runningCount"]) for d in done["deployments"]] == [
        ("PRIMARY", "COMPLETED", 2)
    ]
    assert done["events"][0]["message"] == f"(service {name}) has reached a steady state."
    scaled = ecs.update_service(cluster="svc", service=name, desiredCount=3)[
        "service"
    ]  # no new deployment
    assert [(d["id"], d["desiredCount"]) for d in scaled["deployments"]] == [
        (done["deployments"][0]["id"], 3)
    ]

    second = ecs.register_task_definition(
        family=family, containerDefinitions=[{"name": "a", "image": "c", "memory": 8}]
    )["taskDefinition"]["taskDefinitionArn"]
    updated = ecs.update_service(cluster="svc", service=name, taskDefinition=second)["service"]
    assert [(d["status"], d["taskDefinition"]) for d in updated["deployments"]] == [
        ("PRIMARY", second),
        ("ACTIVE", first),
    ]
    assert [d["status"] for d in _wait_rollout(ecs, name)["deployments"]] == ["PRIMARY"]

    layer.settings.fail_deployments = 1
    ecs.update_service(cluster="svc", service=name, taskDefinition=first)
    failed = _wait_rollout(ecs, name)
    primary = failed["deployments"][0]
    assert (primary["rolloutState"], primary["rolloutStateReason"]) == (
        "FAILED",
        "ECS deployment circuit breaker: tasks failed to start.",
    )
    assert primary["failedTasks"] > 0 and failed["deployments"][1]["taskDefinition"] == second
    messages = [event["message"] for event in failed["events"]]
    assert (
        messages[0]
        == f"(service {name}) (deployment {primary['id']}) deployment failed: tasks failed to "
        "start."
    )
    assert any("has stopped 3 running tasks" in message for message in messages)
    ecs.update_service(cluster="svc", service=name, forceNewDeployment=True)
    redone = _wait_rollout(ecs, name)
    assert [
        (d["status"], d["rolloutState"], d["taskDefinition"]) for d in redone["deployments"]
    ] == [("PRIMARY", "COMPLETED", first)]


# -- switches over HTTP ----------------------------------------------------------------------
def test_rules_and_settings_can_be_switched_over_http(layer: StrictLayer) -> None:
    def post(path: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        request = urllib.request.Request(
            f"{layer.url}/_strict/{path}", data=json.dumps(body).encode(), method="POST"
        )
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read())

    status, report = post("rules", {"ecs.health_check_defaults": False})
    assert status == 200 and report["rules"]["ecs.health_check_defaults"] is False
    assert layer.enabled["ecs.health_check_defaults"] is False
    status, report = post("settings", {"consistency_delay": 0})
    assert status == 200 and layer.settings.consistency_delay == 0.0
    assert post("rules", {"no.such_rule": True})[0] == 400
    with urllib.request.urlopen(f"{layer.url}/_strict/", timeout=5) as response:
        assert json.loads(response.read())["rules"]["collisions.create_secret"] is False


def test_unknown_rule_names_are_refused_at_construction(moto: str) -> None:
    with pytest.raises(ValueError, match=r"unknown strict rules: ecs\.nope"):
        StrictLayer(moto, off=("ecs.nope",))


def test_only_switches_on_exactly_the_named_rules(moto: str) -> None:
    with StrictLayer(moto, only=("collisions.create_role",)) as strict:
        assert [name for name, on in strict.enabled.items() if on] == ["collisions.create_role"]
        iam = client(strict, "iam")
        assert refusal(lambda: iam.create_role(RoleName="r" * 70, AssumeRolePolicyDocument=TRUST))[
            0
        ] == ("EntityAlreadyExists")  # the name limit is off here: only the collision answers


# -- the layer agrees with the contract fixtures ------------------------------------------------
FIXTURES = sorted((ROOT / "tests" / "fixtures" / "ecs").glob("*.json"))


@pytest.mark.parametrize("path", FIXTURES, ids=[path.stem for path in FIXTURES])
def test_the_layer_fills_in_what_the_contract_fixtures_show(layer: StrictLayer, path: Path) -> None:
    fixture = json.loads(path.read_text())
    registered = {**fixture["registered"], "family": unique(fixture["registered"]["family"])}
    for container in registered["containerDefinitions"]:
        container.setdefault("memory", 64)  # moto wants a container memory to place tasks
    ecs = client(layer, "ecs")
    ecs.register_task_definition(**registered)
    got = ecs.describe_task_definition(taskDefinition=registered["family"])["taskDefinition"]
    want = fixture["described"]["taskDefinition"]
    for got_container, want_container in zip(
        got["containerDefinitions"], want["containerDefinitions"], strict=True
    ):
        for key in ("healthCheck", "environment", "portMappings", "mountPoints", "secrets"):
            assert got_container.get(key) == want_container.get(key), key
    assert got.get("volumes", []) == want["volumes"]


# -- LocalStack wiring ----------------------------------------------------------------------------
def test_local_stack_reads_the_strict_switches_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, moto: str
) -> None:
    from tests.stack.local import LocalStack

    monkeypatch.delenv("GCPF_STACK_STRICT", raising=False)
    assert LocalStack(tmp_path / "default").strict_enabled is True  # on by default (issue 12)
    monkeypatch.setenv("GCPF_STACK_STRICT", "0")
    assert LocalStack(tmp_path / "off").strict_enabled is False
    monkeypatch.setenv("GCPF_STACK_STRICT", "1")
    monkeypatch.setenv("GCPF_STACK_STRICT_OFF", "ecs.health_check_defaults, ecs.list_sort")
    monkeypatch.setenv("GCPF_STACK_STRICT_DELAY", "0.5")
    stack = LocalStack(tmp_path / "on")
    assert stack.strict_enabled is True
    # What start() does once moto and the registry are up: clients then talk to the layer.
    stack.moto_url = stack.moto_direct_url = moto
    stack.registry = REGISTRY
    stack._start_strict()
    try:
        assert (
            stack.strict is not None and stack.env["AWS_ENDPOINT_URL"] == stack.strict.url != moto
        )
        assert stack.strict.settings.consistency_delay == 0.5
        assert stack.strict.settings.ecr_hosts == (REGISTRY,)
        assert (
            not stack.strict.enabled["ecs.health_check_defaults"]
            and not stack.strict.enabled["ecs.list_sort"]
        )
        assert stack.strict.enabled["ecs.secrets_need_execution_role"]
    finally:
        stack.strict.stop()
    assert LocalStack(tmp_path / "flag", strict=False).strict_enabled is False


def test_a_new_secret_is_not_listed_at_once_but_described(layer: StrictLayer) -> None:
    secrets = client(layer, "secretsmanager")
    name = unique("lag")
    arn = secrets.create_secret(Name=name, SecretString="{}")["ARN"]

    def listed() -> bool:
        return name in [s["Name"] for s in secrets.list_secrets()["SecretList"]]

    assert not listed()  # ListSecrets lags behind
    assert secrets.describe_secret(SecretId=name)["ARN"] == arn  # DescribeSecret does not
    assert listed()
