"""Helpers for tests that need a deployed project: an image context, a template, and deploy."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from gcpfargate.taskdef.exported import DESCRIBE_ONLY
from tests.conftest import REGION, Project
from tests.stack.images import write_busybox_context

ROOT = Path(__file__).resolve().parents[2]
# What DescribeTaskDefinition adds and RegisterTaskDefinition refuses (the product's own list:
# here a convenience for re-registering, not an oracle).
READ_ONLY = DESCRIBE_ONLY


def prepare(
    project: Project, steps: tuple[str, ...] = ('CMD ["echo", "job ran"]',), tag: str = "v1"
) -> None:
    """An [image] section, a busybox build context and the default template."""
    write_busybox_context(project.dir, steps)
    shutil.copyfile(
        ROOT / "templates" / "task-definition.json.j2", project.dir / "task-definition.json.j2"
    )
    config = project.dir / "gcpfargate.toml"
    config.write_text(
        config.read_text() + f'\n[image]\nrepository = "{project.family}"\ntag = "{tag}"\n'
    )


def deploy(project: Project, *args: str) -> dict[str, Any]:
    result = project.run("deploy", "--output", "json", *args)
    assert result.returncode == 0, result.output
    return dict(result.json)


def latest(project: Project) -> dict[str, Any]:
    return dict(
        project.aws("ecs").describe_task_definition(taskDefinition=project.family)["taskDefinition"]
    )


def register_variant(project: Project, change: Any) -> dict[str, Any]:
    """Register a changed copy of the latest revision (as a user editing it by hand would)."""
    definition = {k: v for k, v in latest(project).items() if k not in READ_ONLY}
    change(definition)
    return dict(project.aws("ecs").register_task_definition(**definition)["taskDefinition"])


def secret_policy(project: Project, region: str = REGION) -> str:
    """The execution role's inline policy that lets tasks read the project's secret in `region`."""
    from gcpfargate.iam.policy import secret_policy_name

    return secret_policy_name(region, project.secret_name)


def secret_json(project: Project) -> dict[str, Any]:
    value = project.aws("secretsmanager").get_secret_value(
        SecretId=project.secret_name, VersionStage="AWSCURRENT"
    )
    return dict(json.loads(value["SecretString"]))


def add_service(project: Project, task_definition_arn: str) -> str:
    """A cluster and a service `web` on it running `task_definition_arn`, and the [service] section."""
    ecs = project.aws("ecs")
    cluster = project.family  # unique per test
    ecs.create_cluster(clusterName=cluster)
    # desiredCount 0: moto starts no tasks, so its deployment is COMPLETED at once (see the module docstring).
    ecs.create_service(
        cluster=cluster,
        serviceName="web",
        taskDefinition=task_definition_arn,
        desiredCount=0,
        launchType="FARGATE",
    )
    config = project.dir / "gcpfargate.toml"
    config.write_text(config.read_text() + f'\n[service]\nname = "web"\ncluster = "{cluster}"\n')
    return cluster
