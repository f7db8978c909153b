"""deploy in the China partition (cn-north-1) against the stack: every ARN gcpfargate builds or
hands on carries `aws-cn`, and the registry host is ECR's own answer for that region."""

from __future__ import annotations

import json

from tests.conftest import ACCOUNT_ID, Project
from tests.integration.helpers import prepare

CHINA = "cn-north-1"


def test_deploy_in_cn_north_1_builds_aws_cn_arns(project: Project) -> None:
    prepare(project)
    env = {"AWS_REGION": CHINA, "AWS_DEFAULT_REGION": CHINA}
    result = project.run("deploy", "--output", "json", env=env)
    assert result.returncode == 0, result.output
    steps = json.loads(result.stdout)
    arn = steps["register-task"]["task_definition_arn"]
    assert arn.startswith(f"arn:aws-cn:ecs:{CHINA}:{ACCOUNT_ID}:task-definition/"), arn

    import boto3

    ecs = boto3.client(
        "ecs",
        region_name=CHINA,
        endpoint_url=project.stack.moto_url,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    definition = ecs.describe_task_definition(taskDefinition=project.family)["taskDefinition"]
    role = f"arn:aws-cn:iam::{ACCOUNT_ID}:role/gcpfargate-{project.family}-execution"
    assert definition["executionRoleArn"] == role
    container = definition["containerDefinitions"][0]
    secrets = [each["valueFrom"] for each in container.get("secrets") or []]
    assert secrets and all(
        each.startswith(f"arn:aws-cn:secretsmanager:{CHINA}:") for each in secrets
    )
    assert container["logConfiguration"]["options"]["awslogs-region"] == CHINA

    again = project.run("deploy", "--output", "json", env=env)
    assert again.returncode == 0, again.output
    assert json.loads(again.stdout)["register-task"]["changed"] is False
