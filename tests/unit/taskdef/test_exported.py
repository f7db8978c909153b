"""Task definitions as users export them, and what Fargate cannot run: pure rules, no AWS."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from gcpfargate.ecs import fargate_rules
from gcpfargate.errors import TemplateError
from gcpfargate.taskdef import exported, template
from gcpfargate.taskdef import register as taskdef

PLAIN: dict[str, Any] = {
    "family": "batch",
    "requiresCompatibilities": ["FARGATE"],
    "networkMode": "awsvpc",
    "cpu": "256",
    "memory": "512",
    "containerDefinitions": [
        {
            "name": "app",
            "image": "img",
            "environment": [{"name": "EMPTY", "value": ""}, {"name": "A", "value": "1"}],
        }
    ],
}
DESCRIBED = {
    **PLAIN,
    "taskDefinitionArn": "arn:aws:ecs:us-east-1:123456789012:task-definition/batch:3",
    "revision": 3,
    "status": "ACTIVE",
    "requiresAttributes": [{"name": "com.amazonaws.ecs.capability.docker-remote-api.1.18"}],
    "compatibilities": ["EC2", "FARGATE"],
    "registeredAt": "2024-01-01T00:00:00Z",
    "registeredBy": "arn:aws:iam::123456789012:root",
}


def accept(data: dict[str, Any]) -> exported.Accepted:
    return exported.accept(copy.deepcopy(data), template._service_input_shape())


def test_describe_output_is_unwrapped_with_its_tags_and_describe_only_fields_dropped() -> None:
    tags = [{"key": "team", "value": "data"}]
    accepted = accept({"taskDefinition": DESCRIBED, "tags": tags})
    assert accepted.unwrapped
    assert accepted.definition == {**PLAIN, "tags": tags}
    assert accepted.dropped == [
        "taskDefinitionArn",
        "revision",
        "status",
        "requiresAttributes",
        "compatibilities",
        "registeredAt",
        "registeredBy",
    ]
    # One warning, naming every field.
    warning = accepted.warning()
    assert all(name in warning for name in accepted.dropped) and "\n" not in warning
    template.validate(accepted.definition, "t.j2")


def test_a_plain_definition_is_left_as_it_is() -> None:
    accepted = accept(PLAIN)
    assert accepted.definition == PLAIN and accepted.dropped == [] and accepted.warning() == ""
    # A definition that merely has a key named taskDefinition beside its own is not unwrapped.
    assert not accept({**PLAIN, "taskDefinition": {"family": "x"}}).unwrapped


def test_null_is_absent_and_empty_enumerations_are_absent_but_empty_environment_values_stay() -> (
    None
):
    old_console = copy.deepcopy(PLAIN)
    old_console.update(pidMode="", ipcMode="", taskRoleArn=None, placementConstraints=None)
    container = old_console["containerDefinitions"][0]
    container.update(
        ulimits=None,
        linuxParameters=None,
        portMappings=[{"containerPort": 80, "appProtocol": "", "hostPort": None}],
        logConfiguration={"logDriver": "awslogs", "options": {"awslogs-group": "g"}},
        healthCheck=None,
        user="",
    )
    definition = accept(old_console).definition
    assert "pidMode" not in definition and "ipcMode" not in definition
    assert "taskRoleArn" not in definition and "placementConstraints" not in definition
    cleaned = definition["containerDefinitions"][0]
    assert cleaned["portMappings"] == [{"containerPort": 80}]
    assert "ulimits" not in cleaned and "healthCheck" not in cleaned
    # "" in a field that is no enumeration is the user's: kept (user, environment values).
    assert cleaned["user"] == ""
    assert cleaned["environment"] == PLAIN["containerDefinitions"][0]["environment"]
    template.validate(definition, "t.j2")


def test_without_the_rules_the_export_is_refused_as_before() -> None:
    # What the rules fix is what the validator refuses: proof they are needed.
    with pytest.raises(TemplateError, match="unknown field 'taskDefinitionArn'"):
        template.validate(DESCRIBED, "t.j2")
    with pytest.raises(TemplateError, match="pidMode must be one of"):
        template.validate({**PLAIN, "pidMode": ""}, "t.j2")


def test_register_accept_adds_fargate_and_reports_once() -> None:
    class Reporter:
        def __init__(self) -> None:
            self.warnings: list[str] = []
            self.infos: list[str] = []

        def warn(self, message: str) -> None:
            self.warnings.append(message)

        def info(self, message: str) -> None:
            self.infos.append(message)

    reporter = Reporter()
    ec2_less = {k: v for k, v in DESCRIBED.items() if k != "requiresCompatibilities"}
    definition = taskdef.accept(
        copy.deepcopy(ec2_less), template._service_input_shape(), "t.j2", reporter
    )
    assert definition["requiresCompatibilities"] == ["FARGATE"]
    assert len(reporter.warnings) == 1 and "taskDefinitionArn" in reporter.warnings[0]
    assert len(reporter.infos) == 1 and "FARGATE added" in reporter.infos[0]
    kept = taskdef.accept(
        {**PLAIN, "requiresCompatibilities": ["EC2"]}, template._service_input_shape(), "t.j2"
    )
    assert kept["requiresCompatibilities"] == ["EC2", "FARGATE"]


FARGATE_REFUSALS = {
    "bridge": ({"networkMode": "bridge"}, 'networkMode is "bridge", but FARGATE requires awsvpc'),
    "host": ({"networkMode": "host"}, "FARGATE requires awsvpc"),
    "unset-mode": ({"networkMode": None}, "networkMode is not set"),
    "links": (
        {"containerDefinitions": [{"name": "app", "image": "i", "links": ["db"]}]},
        "containerDefinitions[0] (app).links",
    ),
    "host-volume": (
        {"volumes": [{"name": "data", "host": {"sourcePath": "/var/data"}}]},
        "volumes[0] (data).host.sourcePath",
    ),
    "gpu": (
        {
            "containerDefinitions": [
                {
                    "name": "app",
                    "image": "i",
                    "resourceRequirements": [{"type": "GPU", "value": "1"}],
                }
            ]
        },
        "GPU resources are not available on Fargate",
    ),
    "inferentia": (
        {
            "containerDefinitions": [
                {
                    "name": "app",
                    "image": "i",
                    "resourceRequirements": [{"type": "InferenceAccelerator", "value": "d"}],
                }
            ]
        },
        "InferenceAccelerator resources",
    ),
    "placement": (
        {"placementConstraints": [{"type": "memberOf", "expression": "attribute:x == y"}]},
        "placementConstraints",
    ),
    "no-cpu": ({"cpu": None}, "cpu not set"),
    "no-size": ({"cpu": None, "memory": None}, "cpu and memory not set"),
    "docker-volume": (
        {"volumes": [{"name": "v", "dockerVolumeConfiguration": {"scope": "task"}}]},
        "dockerVolumeConfiguration",
    ),
    "ipc": ({"ipcMode": "host"}, "ipcMode"),
}


@pytest.mark.parametrize("case", FARGATE_REFUSALS)
def test_what_fargate_cannot_run_is_refused_naming_the_field_and_the_fix(case: str) -> None:
    change, fragment = FARGATE_REFUSALS[case]
    definition = {**PLAIN, **change}
    definition = {k: v for k, v in definition.items() if v is not None}
    with pytest.raises(TemplateError) as caught:
        template.validate(definition, "t.j2")
    assert fragment in caught.value.message, caught.value.message
    assert caught.value.hint and caught.value.exit_code == 2
    if case.startswith("no-"):
        assert (
            "cpu 256: 512, 1024, 2048; cpu 512: 1024-4096 step 1024" in caught.value.hint
        )  # the valid sizes


def test_a_host_volume_without_source_path_is_task_storage_and_allowed() -> None:
    template.validate({**PLAIN, "volumes": [{"name": "scratch", "host": {}}]}, "t.j2")


def test_windows_is_refused_because_the_wrapper_is_posix() -> None:
    windows = {**PLAIN, "runtimePlatform": {"operatingSystemFamily": "WINDOWS_SERVER_2022_CORE"}}
    with pytest.raises(TemplateError, match="POSIX sh"):
        fargate_rules.refuse_windows(windows, "t.j2")
    fargate_rules.refuse_windows(
        {**PLAIN, "runtimePlatform": {"operatingSystemFamily": "LINUX"}}, "t.j2"
    )
