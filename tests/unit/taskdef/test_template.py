"""Templates: rendering errors with their line, validation against botocore's model and Fargate
sizes, normalisation of registered revisions, and init's template generation."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from gcpfargate.errors import TemplateError
from gcpfargate.image import images
from gcpfargate.taskdef import register as taskdef
from gcpfargate.taskdef import scaffold, template

VALID: dict[str, Any] = {
    "family": "batch",
    "requiresCompatibilities": ["FARGATE"],
    "networkMode": "awsvpc",
    "cpu": "256",
    "memory": "512",
    "executionRoleArn": "arn:aws:iam::123456789012:role/x",
    "containerDefinitions": [
        {
            "name": "app",
            "image": "img",
            "essential": True,
            "portMappings": [{"containerPort": 8080}],
        }
    ],
}


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "task-definition.json.j2"
    path.write_text(text)
    return path


def render_error(
    tmp_path: Path,
    text: str,
    variables: dict[str, Any] | None = None,
    environ: dict[str, str] | None = None,
) -> str:
    with pytest.raises(TemplateError) as caught:
        template.render(
            write(tmp_path, text), variables or {"family": "batch", "vars": {}}, environ or {}
        )
    return caught.value.one_line()


def test_undefined_name_names_it_and_the_line(tmp_path: Path) -> None:
    message = render_error(
        tmp_path, '{\n  "family": {{ family | tojson }},\n  "x": {{ imgae | tojson }}\n}\n'
    )
    assert "task-definition.json.j2:3:" in message and "'imgae' is undefined" in message


def test_undefined_var_key_names_it(tmp_path: Path) -> None:
    message = render_error(tmp_path, '{\n\n  "x": {{ vars.missing | tojson }}\n}\n')
    assert ":3:" in message and "missing" in message


def test_syntax_error_gives_the_line(tmp_path: Path) -> None:
    message = render_error(tmp_path, '{\n  "a": 1,\n  {% if %}\n}\n')
    assert "task-definition.json.j2:3: template syntax error" in message


def test_non_json_gives_line_and_column(tmp_path: Path) -> None:
    message = render_error(tmp_path, '{\n  "family": {{ family }}\n}\n')
    assert "task-definition.json.j2:2:13: the rendered template is not JSON" in message


def test_duplicate_keys_are_refused(tmp_path: Path) -> None:
    assert "'a' twice" in render_error(tmp_path, '{"a": 1, "a": 2}')


def test_env_and_must_env(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        '{"a": {{ env("GF_A", "dflt") | tojson }}, "b": {{ must_env("GF_B") | tojson }},'
        ' "c": {{ "<&\'>" | tojson }}}',
    )
    allowed = ("GF_A", "GF_B")  # task.env_vars
    assert template.render(path, {}, {"GF_B": "set"}, allowed) == {
        "a": "dflt",
        "b": "set",
        "c": "<&'>",
    }
    assert template.render(path, {}, {"GF_A": "x", "GF_B": "y"}, allowed)["a"] == "x"
    message = render_error(
        tmp_path, '{\n "b": {{ must_env("GCPFARGATE_VAR_B") | tojson }}\n}', environ={}
    )
    assert ":2:" in message and "GCPFARGATE_VAR_B is not set" in message


def test_the_sandbox_refuses_python_internals(tmp_path: Path) -> None:
    message = render_error(tmp_path, '{"a": {{ family.__class__.__mro__ | tojson }}}')
    assert "task-definition.json.j2" in message


def test_used_variables(tmp_path: Path) -> None:
    path = write(tmp_path, '{"a": {{ image | tojson }}, "b": {{ vars.x }}, "c": {{ other }}}')
    assert template.used_variables(path) == {"image", "vars"}


def test_valid_definition_passes() -> None:
    template.validate(VALID, "t.j2")


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        (
            lambda d: d["containerDefinitions"][0]["portMappings"][0].update(containerPort="80"),
            "containerDefinitions[0].portMappings[0].containerPort must be an integer, not a "
            "string",
        ),
        (lambda d: d.pop("containerDefinitions"), "containerDefinitions is required"),
        (
            lambda d: d["containerDefinitions"][0].update(secrets=[{"name": "S"}]),
            "containerDefinitions[0].secrets[0].valueFrom is required",
        ),
        (
            lambda d: d.update(taskDefinitionArn="arn"),
            "unknown field 'taskDefinitionArn' at the top level",
        ),
        (
            lambda d: d["containerDefinitions"][0].update(essentail=True),
            "unknown field 'essentail' at containerDefinitions[0] (did you mean 'essential'?)",
        ),
        (
            lambda d: d["containerDefinitions"][0].update(imagee="x"),
            "unknown field 'imagee' at containerDefinitions[0] (did you mean 'image'?)",
        ),
        (lambda d: d.update(networkMode="awsvcp"), "networkMode must be one of"),
        (lambda d: d.update(cpu=256), "cpu must be a string, not an integer"),
    ],
)
def test_invalid_shapes_name_the_json_path(change: Any, fragment: str) -> None:
    broken = copy.deepcopy(VALID)
    change(broken)
    with pytest.raises(TemplateError) as caught:
        template.validate(broken, "t.j2")
    assert fragment in caught.value.message


def test_a_wrong_value_is_described_by_type_never_quoted() -> None:
    broken = copy.deepcopy(VALID)
    broken["containerDefinitions"][0]["cpu"] = "secret-looking-text"
    with pytest.raises(TemplateError) as caught:
        template.validate(broken, "t.j2")
    assert "secret-looking-text" not in caught.value.one_line()


@pytest.mark.parametrize(
    ("cpu", "memory", "ok"),
    [
        ("256", "512", True),
        ("256", "2048", True),
        ("256", "4096", False),
        ("512", "4096", True),
        ("512", "1536", False),
        ("1 vCPU", "2 GB", True),
        ("1024", "8192", True),
        ("2048", "16384", True),
        ("4096", "30720", True),
        ("4096", "31744", False),
        ("8192", "20480", True),
        ("8192", "17408", False),
        ("16384", "40960", True),
        ("16384", "36864", False),
        ("300", "512", False),
        (".25 vcpu", "0.5GB", True),
    ],
)
def test_fargate_sizes(cpu: str, memory: str, ok: bool) -> None:
    definition = {**VALID, "cpu": cpu, "memory": memory}
    if ok:
        template.validate(definition, "t.j2")
    else:
        with pytest.raises(TemplateError, match="Fargate"):
            template.validate(definition, "t.j2")


def test_fargate_needs_awsvpc() -> None:
    for mode in ("bridge", None):
        definition = {key: value for key, value in VALID.items() if key != "networkMode"}
        if mode:
            definition["networkMode"] = mode
        with pytest.raises(TemplateError, match="FARGATE requires awsvpc"):
            template.validate(definition, "t.j2")
    template.validate(
        {**VALID, "networkMode": "bridge", "requiresCompatibilities": ["EC2"]}, "t.j2"
    )


# -- normalise
# ----------------------------------------------------------------------------------------
def rendered() -> dict[str, Any]:
    return {
        "family": "batch",
        "requiresCompatibilities": ["FARGATE"],
        "networkMode": "awsvpc",
        "cpu": "1 vCPU",
        "memory": "2 GB",
        "executionRoleArn": "arn:aws:iam::123456789012:role/x",
        "containerDefinitions": [
            {
                "name": "app",
                "image": "img",
                "environment": [{"name": "B", "value": "2"}, {"name": "A", "value": "1"}],
                "secrets": [
                    {"name": "S2", "valueFrom": "arn:2"},
                    {"name": "S1", "valueFrom": "arn:1"},
                ],
                "portMappings": [{"containerPort": 8080}],
                "logConfiguration": {
                    "logDriver": "awslogs",
                    "options": {"awslogs-group": "/ecs/batch"},
                },
            }
        ],
    }


def as_real_ecs_returns_it() -> dict[str, Any]:
    """The shape of a real describe_task_definition answer (documented fields ECS fills in)."""
    container = copy.deepcopy(rendered()["containerDefinitions"][0])
    container.update(
        cpu=0,
        essential=True,
        mountPoints=[],
        volumesFrom=[],
        systemControls=[],
        portMappings=[{"containerPort": 8080, "hostPort": 8080, "protocol": "tcp"}],
        environment=list(reversed(container["environment"])),
    )
    container["logConfiguration"]["secretOptions"] = []
    return {
        "taskDefinitionArn": "arn:aws:ecs:ap-northeast-1:123456789012:task-definition/batch:3",
        "containerDefinitions": [container],
        "family": "batch",
        "executionRoleArn": "arn:aws:iam::123456789012:role/x",
        "networkMode": "awsvpc",
        "revision": 3,
        "volumes": [],
        "status": "ACTIVE",
        "requiresAttributes": [{"name": "ecs.capability.execution-role-awslogs"}],
        "placementConstraints": [],
        "compatibilities": ["EC2", "FARGATE"],
        "requiresCompatibilities": ["FARGATE"],
        "cpu": "1024",
        "memory": "2048",
        "registeredAt": "2024-01-01T00:00:00Z",
        "registeredBy": "arn:aws:sts::1:assumed-role/x",
        "enableFaultInjection": False,
    }


def as_moto_returns_it() -> dict[str, Any]:
    container = copy.deepcopy(rendered()["containerDefinitions"][0])
    container.update(cpu=0, essential=True, mountPoints=[], volumesFrom=[])
    return {
        "taskDefinitionArn": "arn:x:1",
        "containerDefinitions": [container],
        "family": "batch",
        "executionRoleArn": "arn:aws:iam::123456789012:role/x",
        "networkMode": "awsvpc",
        "revision": 1,
        "volumes": [],
        "status": "ACTIVE",
        "placementConstraints": [],
        "compatibilities": ["EC2", "FARGATE"],
        "requiresCompatibilities": ["FARGATE"],
        "cpu": "1 vCPU",
        "memory": "2 GB",
    }


def test_normalise_makes_real_ecs_moto_and_rendered_equal() -> None:
    expected = taskdef.normalise(rendered())
    assert taskdef.normalise(as_real_ecs_returns_it()) == expected
    assert taskdef.normalise(as_moto_returns_it()) == expected
    assert expected["cpu"] == "1024" and [
        e["name"] for e in expected["containerDefinitions"][0]["environment"]
    ] == ["A", "B"]


def test_normalise_keeps_real_differences() -> None:
    changed = rendered()
    changed["containerDefinitions"][0]["portMappings"][0]["hostPort"] = 9090
    assert taskdef.normalise(changed) != taskdef.normalise(rendered())
    changed = rendered()
    changed["containerDefinitions"][0]["essential"] = False
    assert taskdef.normalise(changed) != taskdef.normalise(rendered())


def test_unified_diff_shows_the_changed_field() -> None:
    registered = as_moto_returns_it()
    changed = rendered()
    changed["memory"] = "4096"
    text = taskdef.unified_diff(registered, changed, "batch")
    assert '-  "memory": "2048",' in text and '+  "memory": "4096",' in text
    assert text.startswith("--- batch:1 (registered)\n+++ batch (rendered)\n")
    assert taskdef.unified_diff(registered, rendered(), "batch") == ""


@pytest.mark.parametrize(
    ("image", "parts"),
    [
        ("127.0.0.1:5000/batch:v1", ("127.0.0.1:5000", "batch", "v1", "")),
        (
            "127.0.0.1:5000/team/batch@sha256:" + "a" * 64,
            ("127.0.0.1:5000", "team/batch", "", "sha256:" + "a" * 64),
        ),
        (
            "1.dkr.ecr.r.amazonaws.com/b:t@sha256:" + "b" * 64,
            ("1.dkr.ecr.r.amazonaws.com", "b", "t", "sha256:" + "b" * 64),
        ),
        ("busybox", ("", "busybox", "", "")),
        ("library/busybox:1", ("", "library/busybox", "1", "")),
    ],
)
def test_split_image(image: str, parts: tuple[str, str, str, str]) -> None:
    assert images.split_image(image) == parts


def test_init_template_round_trips_jinja_looking_text(tmp_path: Path) -> None:
    definition = {
        "family": "@@gcpfargate:family@@",
        "containerDefinitions": [
            {
                "name": "app",
                "image": "@@gcpfargate:image@@",
                "command": ["echo", "{{ not a var }} {% x %} {# y #} {{{"],
            }
        ],
    }
    text = scaffold.to_template(definition, {"family": "family", "image": "image"})
    assert "{{ image | tojson }}" in text
    out = template.render(write(tmp_path, text), {"family": "batch", "image": "repo@sha256:1"}, {})
    assert out == {
        "family": "batch",
        "containerDefinitions": [
            {
                "name": "app",
                "image": "repo@sha256:1",
                "command": ["echo", "{{ not a var }} {% x %} {# y #} {{{"],
            }
        ],
    }


def test_packaged_templates_render(tmp_path: Path) -> None:
    text = scaffold.packaged("task-definition.json.j2")
    variables = {
        "family": "batch",
        "image": "img@sha256:1",
        "execution_role_arn": "arn:aws:iam::1:role/x",
        "region": "ap-northeast-1",
    }
    template.validate(template.render(write(tmp_path, text), variables, {}), "t.j2")
    config = scaffold.render_config(
        scaffold.Answers(family="batch", project='p"q', containers=["app"])
    )
    import tomllib

    data = tomllib.loads(config)
    assert data["gcp"]["project"] == 'p"q' and data["task"]["containers"] == ["app"]
    assert json.dumps(data)  # plain data only


def test_json_errors_point_at_the_line_with_a_caret_and_a_fitting_hint(tmp_path: Path) -> None:
    path = tmp_path / "t.j2"
    cases = [
        ('{\n  "a": 1\n  "b": 2\n}', "t.j2:3:3:", "A comma is missing", '3 |   "b": 2\n  |   ^'),
        ('{\n  "a": hello\n}', "t.j2:2:8:", "tojson", '2 |   "a": hello\n  |        ^'),
        ('{\n  "a": 1,\n}', "t.j2:3:1:", "no comma before }", "3 | }\n  | ^"),
    ]
    for text, where, hint, excerpt in cases:
        with pytest.raises(TemplateError) as caught:
            template.parse_json(text, path)
        assert where in caught.value.message and hint in caught.value.hint
        assert caught.value.excerpt == excerpt
        assert ("tojson" in caught.value.hint) == (hint == "tojson")
    long = '{"a": ' + "1" * 300 + "x}"
    with pytest.raises(TemplateError) as caught:
        template.parse_json(long, path)
    line, caret = caught.value.excerpt.splitlines()
    assert len(line) <= 110 and caret.index("^") == line.index("x")
