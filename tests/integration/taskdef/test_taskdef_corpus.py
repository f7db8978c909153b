"""Task definitions written by others (tests/fixtures/taskdefs/, sources in its README), deployed
through the strict stack: the Fargate ones deploy with every field the user wrote kept (sidecars
exactly as written) and a rerun registers nothing; the others are refused with exit 2, one line
naming the field, before any key, secret or revision exists."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from gcpfargate.credentials import wiring
from gcpfargate.taskdef import register
from tests.conftest import ROOT, Project, assert_one_clean_line
from tests.integration.helpers import deploy, latest, prepare

CORPUS = ROOT / "tests" / "fixtures" / "taskdefs"
APP_IMAGE = "@@image@@"
# ecspresso's templates call must_env("AWS_ACCOUNT_ID"); templates read only variables the config
# allows (task.env_vars).
ENV = {"AWS_ACCOUNT_ID": "123456789012", "GCPFARGATE_TASK_ENV_VARS": "AWS_ACCOUNT_ID"}

# name -> None (deploys), or the fragments of the one line that refuses it.
EXPECTED: dict[str, tuple[str, ...] | None] = {
    "docs-fargate-httpd": None,
    "docs-getting-started-fargate": None,
    "docs-awscli-fargate": None,
    "docs-otel-cloudwatch-sidecar": None,
    "docs-otel-xray-sidecar": None,
    "docs-arm64": None,
    "docs-ecs-exec": None,
    "docs-service-connect": None,
    "docs-cloudwatch-events-fargate": None,
    "docs-blue-green": None,
    "firelens-efs-export": None,
    "firelens-newrelic": None,
    "docs-awscli-ec2-sleep": ("networkMode is not set", "FARGATE requires awsvpc"),
    "docs-gpu": ("networkMode is not set", "resourceRequirements: GPU resources"),
    "docs-dl1-host": ('networkMode is "host"', "FARGATE requires awsvpc"),
    "docs-windows-fargate": ("WINDOWS_SERVER_2019_CORE", "POSIX sh"),
    "docs-anywhere-external": ('networkMode is "bridge"',),
    "docs-inferentia-placement": ("placementConstraints",),
    "docs-awslogs-links": ("containerDefinitions[0] (wordpress).links",),
    "docs-ec2-console-sample": ("networkMode is not set",),
    "docs-efs-tutorial": ("networkMode is not set", "cpu and memory not set"),
    "docs-appmesh-no-size": ("cpu and memory not set",),
    "docs-fsx-windows": ("networkMode is not set",),
    "firelens-cloudwatch-no-network": ("networkMode is not set", "cpu and memory not set"),
    "firelens-logstash-no-size": ("portMappings must be a list",),
    "ecspresso-daemon-host": ('networkMode is "host"',),
    "ecspresso-ec2": ("networkMode is not set", "cpu and memory not set"),
}


def test_the_corpus_is_complete_and_documented() -> None:
    names = {path.name.removesuffix(".json.j2") for path in CORPUS.glob("*.json.j2")}
    assert names == set(EXPECTED)
    readme = (CORPUS / "README.md").read_text()
    assert all(f"`{name}`" in readme for name in names)
    assert len(names) >= 20


def as_written(name: str, family: str) -> dict[str, Any]:
    """The definition as its author wrote it (with our family and a marker for the app image)."""
    text = (CORPUS / f"{name}.json.j2").read_text()
    text = text.replace("{{ family | tojson }}", json.dumps(family))
    text = text.replace("{{ image | tojson }}", json.dumps(APP_IMAGE))
    data = json.loads(text)
    return dict(data.get("taskDefinition", data))


def _container(definition: dict[str, Any], name: str) -> dict[str, Any]:
    return next(c for c in definition["containerDefinitions"] if c["name"] == name)


def _normal(container: dict[str, Any]) -> dict[str, Any]:
    return register.normalise({"containerDefinitions": [copy.deepcopy(container)]})[
        "containerDefinitions"
    ][0]


def _without_key_tmpfs(stored: dict[str, Any]) -> dict[str, Any]:
    """`stored` without the tmpfs wiring adds at the credentials directory, which must be there
    unless a writable mount of the user's already covers the directory."""
    directory = "/tmp/gcp"  # the default task.credentials_path's directory
    kept = copy.deepcopy(stored)
    linux = kept.get("linuxParameters") or {}
    own = [m for m in linux.get("tmpfs") or [] if m.get("containerPath") == directory]
    covered = any(
        str(m.get("containerPath", "")).rstrip("/") in ("/tmp", directory)
        for m in kept.get("mountPoints") or []
    )
    assert len(own) == (0 if covered else 1), stored.get("linuxParameters")
    if own:
        linux["tmpfs"] = [m for m in linux["tmpfs"] if m not in own]
        for key in [key for key, value in linux.items() if not value]:
            linux.pop(key)
        if not linux:
            kept.pop("linuxParameters")
    return kept


# What wiring changes in the app container, and what register-task fills in at the top level.
WIRED = {"image", "entryPoint", "command", "environment", "secrets"}
FILLED = {"family", "containerDefinitions", "requiresCompatibilities", "executionRoleArn"}


def setup(project: Project, name: str) -> None:
    prepare(project)
    (project.dir / "task-definition.json.j2").write_text((CORPUS / f"{name}.json.j2").read_text())


@pytest.mark.parametrize("name", [name for name, refused in EXPECTED.items() if refused is None])
def test_fargate_definitions_deploy_with_every_field_kept(project: Project, name: str) -> None:
    setup(project, name)
    first = deploy(project)
    assert first["register-task"]["changed"]
    registered = latest(project)
    written = as_written(name, project.family)
    for key, value in written.items():
        if key not in FILLED:
            assert register.normalise({key: value}) == register.normalise(
                {key: registered.get(key)}
            ), key
    assert "FARGATE" in registered["requiresCompatibilities"]
    assert set(written.get("requiresCompatibilities") or []) <= set(
        registered["requiresCompatibilities"]
    )
    apps = [c for c in written["containerDefinitions"] if c.get("image") == APP_IMAGE]
    assert apps
    for container in written["containerDefinitions"]:
        stored = _container(registered, container["name"])
        if container.get("image") == APP_IMAGE:
            assert wiring.is_wrapped(stored), container["name"]
            mine = {k: v for k, v in _normal(container).items() if k not in WIRED}
            # The key's tmpfs is wiring's own; every other linuxParameters field is the user's.
            kept = _without_key_tmpfs(stored)
            assert mine == {k: v for k, v in _normal(kept).items() if k in mine}
            if container.get("command") or container.get("entryPoint"):
                argv = wiring.unwrap(stored)
                assert argv is not None and argv.argv == list(
                    container.get("entryPoint") or []
                ) + list(container.get("command") or [])
        else:  # a sidecar: exactly as written (after what ECS fills in on every definition)
            assert _normal(stored) == _normal(container), container["name"]
            assert not wiring.is_wrapped(stored)

    again = project.run("deploy", "--output", "json")
    assert again.returncode == 0, again.output
    assert not again.json["register-task"]["changed"]
    assert latest(project)["revision"] == registered["revision"]


@pytest.mark.parametrize(
    "name", [name for name, refused in EXPECTED.items() if refused is not None]
)
def test_what_fargate_cannot_run_is_refused_before_any_write(project: Project, name: str) -> None:
    setup(project, name)
    calls = project.dir / "calls.log"
    result = project.run("deploy", env={**ENV, "GCPFARGATE_CALL_LOG": str(calls)})
    fragments = EXPECTED[name] or ()
    line = assert_one_clean_line(result, 2, *fragments)
    assert f"{name}.json.j2" in line or "task-definition.json.j2" in line
    assert_nothing_written(project, calls)


def assert_nothing_written(project: Project, calls: Path) -> None:
    lines = calls.read_text().splitlines() if calls.exists() else []
    assert [line for line in lines if line.endswith(" write")] == []
    assert project.stack.emulator.key_ids(project.email) == []
    assert not project.exists("secret", project.secret_name)
    assert not project.exists("role", f"gcpfargate-{project.family}-execution")
    with pytest.raises(ClientError):
        project.aws("ecs").describe_task_definition(taskDefinition=project.family)


def test_bootstrap_alone_checks_the_template_first(project: Project) -> None:
    setup(project, "docs-dl1-host")
    calls = project.dir / "calls.log"
    result = project.run("bootstrap", env={"GCPFARGATE_CALL_LOG": str(calls)})
    assert_one_clean_line(result, 2, 'networkMode is "host"', "FARGATE requires awsvpc")
    assert_nothing_written(project, calls)


# `aws ecs describe-task-definition --include TAGS` output of an old-console definition, as a
# user would paste it: the wrapper, Describe-only fields, nulls and "" in enumerated fields.
EXPORT = """{
  "taskDefinition": {
    "taskDefinitionArn": "arn:aws:ecs:us-east-1:123456789012:task-definition/old:7",
    "family": {{ family | tojson }},
    "revision": 7,
    "status": "ACTIVE",
    "networkMode": "awsvpc",
    "requiresCompatibilities": ["FARGATE"],
    "compatibilities": ["EC2", "FARGATE"],
    "requiresAttributes": [{"name": "ecs.capability.execution-role-awslogs"}],
    "cpu": "256",
    "memory": "512",
    "pidMode": "",
    "ipcMode": null,
    "taskRoleArn": null,
    "placementConstraints": [],
    "containerDefinitions": [
      {
        "name": "app",
        "image": {{ image | tojson }},
        "essential": true,
        "ulimits": null,
        "healthCheck": null,
        "dnsSearchDomains": null,
        "user": null,
        "environment": [{"name": "EMPTY_ON_PURPOSE", "value": ""}],
        "portMappings": [{"containerPort": 8080, "hostPort": 8080, "protocol": "tcp",
                          "appProtocol": ""}]
      }
    ],
    "registeredAt": "2025-01-01T00:00:00.000Z",
    "registeredBy": "arn:aws:iam::123456789012:user/someone"
  },
  "tags": [{"key": "team", "value": "batch"}]
}
"""


def test_a_describe_export_with_nulls_deploys_with_one_warning_and_its_tags(
    project: Project,
) -> None:
    prepare(project)
    (project.dir / "task-definition.json.j2").write_text(EXPORT)
    result = project.run("deploy", "--output", "json")
    assert result.returncode == 0, result.output
    warnings = [line for line in result.stderr.splitlines() if "taskDefinitionArn" in line]
    assert len(warnings) == 1, result.stderr
    assert all(
        name in warnings[0]
        for name in ("revision", "status", "requiresAttributes", "compatibilities", "registeredBy")
    )
    described = project.aws("ecs").describe_task_definition(
        taskDefinition=project.family, include=["TAGS"]
    )
    assert described["tags"] == [{"key": "team", "value": "batch"}]
    stored = described["taskDefinition"]
    assert "pidMode" not in stored and "taskRoleArn" not in stored
    assert stored["containerDefinitions"][0]["portMappings"][0]["containerPort"] == 8080
    again = project.run("deploy", "--output", "json")
    assert again.returncode == 0 and not again.json["register-task"]["changed"], again.output
