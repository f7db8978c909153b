"""Key text in a task definition, against the stack (issue 13 items 2, 8, 11, 12): register-task,
render and diff refuse key text anywhere in the rendered definition (not only `environment`);
`init --from-family` refuses to write a template holding one; the template cannot reach the
deployer's credentials or files outside its directory; run-local's logs lose the key's material
however the app folds it."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import Project, assert_one_clean_line, record_figure
from tests.integration.helpers import deploy, prepare, register_variant, secret_json
from tests.unit.helpers import key_json

FIGURES = "key guard"
TEMPLATE = "task-definition.json.j2"

# Where a key can hide in a rendered definition, each reached the way a user would reach it.
PLACES = {
    "command": '"command": ["run", {{ k | tojson }}],',
    "entryPoint": '"entryPoint": ["/bin/sh", "-c", {{ ("echo " ~ k) | tojson }}],',
    "dockerLabels": '"dockerLabels": {"creds": {{ k | tojson }}},',
    "log-options": '"logConfiguration": {"logDriver": "awslogs", "options": {"awslogs-group": "g", '
    '"awslogs-region": "us-east-1", "x-key": {{ k | tojson }}}},',
    "nested": '"ulimits": [], "systemControls": [{"namespace": "net.core.somaxconn", "value": {{ k '
    "| tojson }}}],",
}


def key_template(place: str) -> str:
    return (
        '{% set k %}{% include "sa.json" %}{% endset %}{\n  "family": {{ family | tojson }},\n'
        '  "containerDefinitions": [{"name": "app", "image": "busybox", "essential": true, '
        + PLACES[place]
        + ' "memory": 128}]\n}\n'
    )


def no_key_text(output: str) -> None:
    body = "".join(key_json().decode().split("\\n")[1:3])
    assert "PRIVATE KEY" not in output and body[:40] not in output


@pytest.mark.parametrize("place", sorted(PLACES))
def test_key_text_anywhere_in_the_definition_is_refused(project: Project, place: str) -> None:
    (project.dir / "sa.json").write_bytes(key_json())
    (project.dir / TEMPLATE).write_text(key_template(place))
    env = {
        "GCPFARGATE_TASK_WIRE_CREDENTIALS": "false",
        "GCPFARGATE_CALL_LOG": str(project.dir / "calls"),
    }
    for command in ("register-task", "render", "diff"):
        result = project.run(command, "--image", "busybox", env=env)
        assert_one_clean_line(result, 2, "looks like private key text at containerDefinitions[0].")
        no_key_text(result.output)
    assert (
        project.aws("ecs").list_task_definitions(familyPrefix=project.family)["taskDefinitionArns"]
        == []
    )
    record_figure(FIGURES, "evasions caught")


def test_the_template_cannot_reach_the_deployers_credentials_or_files(
    project: Project, tmp_path_factory: pytest.TempPathFactory
) -> None:
    outside = tmp_path_factory.mktemp("elsewhere")
    (outside / "id_rsa").write_text('"not for templates"')
    (project.dir / "link").symlink_to(outside / "id_rsa")
    head = (
        '{"family": {{ family | tojson }}, '
        '"containerDefinitions": [{"name": "app", "image": "busybox", '
    )
    env = {"GCPFARGATE_TASK_WIRE_CREDENTIALS": "false"}
    cases = {
        "include": (
            head + '"command": [{% include "link" %}]}]}',
            "outside the template's directory",
        ),
        "aws-secret": (
            head + '"command": [{{ env("AWS_SECRET_ACCESS_KEY") | tojson }}]}]}',
            "refused",
        ),
        "key-variable": (
            head + '"command": [{{ env("GCPFARGATE_VAR_SOME_JSON") | tojson }}]}]}',
            "private key",
        ),
        "not-allowed": (
            head + '"command": [{{ env("CI_JOB_TOKEN") | tojson }}]}]}',
            "add 'CI_JOB_TOKEN' to task.env_vars",
        ),
    }
    for name, (text, fragment) in cases.items():
        (project.dir / TEMPLATE).write_text(text)
        result = project.run(
            "render",
            "--image",
            "busybox",
            env={
                **env,
                "GCPFARGATE_VAR_SOME_JSON": key_json().decode(),
                "CI_JOB_TOKEN": "glcbt-s3cr3t",
            },
        )
        assert "glcbt-s3cr3t" not in result.output
        assert_one_clean_line(result, 2, fragment)
        assert project.env["AWS_SECRET_ACCESS_KEY"] not in result.output, name
        assert "not for templates" not in result.output
        no_key_text(result.output)


def test_init_from_family_refuses_a_definition_holding_a_key(project: Project) -> None:
    project.aws("ecs").register_task_definition(
        family=project.family,
        containerDefinitions=[
            {
                "name": "app",
                "image": "busybox",
                "memory": 128,
                "dockerLabels": {"creds": key_json().decode()},
            }
        ],
    )
    target = project.dir / "imported"
    target.mkdir()
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "gcpfargate",
            "init",
            "--from-family",
            project.family,
            "--gcp-project",
            project.gcp_project,
            "--service-account",
            project.account_id,
        ],
        cwd=target,
        env=project.env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2, result.stdout + result.stderr
    assert "containerDefinitions[0].dockerLabels.creds" in result.stderr
    no_key_text(result.stdout + result.stderr)
    assert list(target.iterdir()) == []  # nothing written
    record_figure(FIGURES, "evasions caught")


SHOW_FOLDED = (
    r"""#!/bin/sh
# Print the key file's PEM body folded to 50 columns, as a careless app's debug output might.
sed 's/\\n/\n/g' "$GOOGLE_APPLICATION_CREDENTIALS" | grep -E '^[A-Za-z0-9+/=]+$' """
    r"""| tr -d '\n' | fold -w 50
echo
echo "job done"
"""
)


def test_run_local_logs_lose_the_key_however_it_is_folded(project: Project) -> None:
    (project.dir / "show.sh").write_text(SHOW_FOLDED)
    prepare(project, ("COPY show.sh /show.sh", 'CMD ["/bin/sh", "/show.sh"]'))
    deploy(project)
    result = project.run("run-local")
    assert result.returncode == 0, result.output
    assert "job done" in result.stderr
    key = secret_json(project)["private_key"]
    body = "".join(key.splitlines()[1:-1])
    folded = [body[i : i + 50] for i in range(0, len(body), 50)]
    assert len(folded[-1]) < 50 and "[REDACTED]" in result.stderr
    assert [line for line in folded if line in result.output] == []
    # No fragment of 12 characters anywhere (the redactor's own grain).
    assert not any(body[i : i + 12] in result.output for i in range(len(body) - 12))


def _wrapper_also_echoes_the_key(project: Project) -> None:
    def change(definition: dict) -> None:
        entry = definition["containerDefinitions"][0]["entryPoint"]
        entry[2] = entry[2].replace("unset ", 'echo "$GCP_CREDENTIALS_JSON" >&2\nunset ')

    register_variant(project, change)


def _key_in(place: str) -> object:
    def breaker(project: Project) -> None:
        key = json.dumps(secret_json(project))

        def change(definition: dict) -> None:
            container = definition["containerDefinitions"][0]
            if place == "dockerLabels":
                container["dockerLabels"] = {"creds": key}
            elif place == "logConfiguration":
                container["logConfiguration"]["options"]["x-key"] = key
            else:
                container["entryPoint"] = [*container["entryPoint"], key]

        register_variant(project, change)

    return breaker


@pytest.mark.parametrize(
    "variant", ["wrapper-echoes-key", "dockerLabels", "logConfiguration", "argv"]
)
def test_doctor_fails_the_wiring_check_for_key_text_anywhere_or_an_edited_wrapper(
    project: Project, variant: str
) -> None:
    prepare(project)
    deploy(project)
    breaker = _wrapper_also_echoes_the_key if variant == "wrapper-echoes-key" else _key_in(variant)
    breaker(project)  # type: ignore[operator]
    result = project.run("doctor", "--output", "json")
    assert result.returncode == 3, result.output
    checks = {check["name"]: check for check in result.json["checks"]}
    failed = [name for name, check in checks.items() if check["status"] == "FAIL"]
    assert failed == ["task definition delivers the key safely"], checks
    detail = checks[failed[0]]["detail"]
    assert (
        ("not the script gcpfargate writes" in detail)
        if variant == "wrapper-echoes-key"
        else ("key text at containerDefinitions[0]." in detail)
    )
    no_key_text(result.output)
    record_figure(FIGURES, "evasions caught")


# Each way a key can ride along in an override, for both commands that store overrides in AWS.
OVERRIDE_FLAGS = {
    "env": lambda key: ["--env", f"LEAK={key}"],
    "command": lambda key: ["--command", f"app --key '{key}'"],
    "arg": lambda key: ["--arg", "app", "--arg", key],
}


@pytest.mark.parametrize("flag", sorted(OVERRIDE_FLAGS))
def test_key_text_in_run_and_schedule_overrides_is_refused_before_any_call(
    project: Project, flag: str
) -> None:
    prepare(project)
    calls = project.dir / "calls"
    for command in (["run", "--no-wait"], ["schedule", "--cron", "0 3 * * ? *"]):
        result = project.run(
            *command,
            *OVERRIDE_FLAGS[flag](key_json().decode()),
            env={"GCPFARGATE_CALL_LOG": str(calls)},
        )
        assert_one_clean_line(result, 2, "looks like private key text")
        no_key_text(result.output)
    # Refused before the configuration is even used: no RunTask, no CreateSchedule, no call at all.
    assert not calls.exists() or calls.read_text() == ""
    # The stack is shared by the worker's tests: only this project's schedule counts.
    assert [
        s
        for s in project.aws("scheduler").list_schedules()["Schedules"]
        if s["Name"] == f"gcpfargate-{project.family}"
    ] == []
    record_figure(FIGURES, "evasions caught")


def test_doctor_fails_an_older_wrapper_and_shell_start_up_variables_until_register_task(
    project: Project,
) -> None:
    from gcpfargate.credentials import wiring

    prepare(project)
    deploy(project)

    def older(definition: dict) -> None:
        container = definition["containerDefinitions"][0]
        entry = container["entryPoint"]
        entry[2] = entry[2].replace(wiring.HEAD, wiring.LEGACY_MARKER, 1)  # no xtrace guard
        container["environment"].append({"name": "SHELLOPTS", "value": "xtrace"})

    register_variant(project, older)
    result = project.run("doctor", "--output", "json")
    assert result.returncode == 3, result.output
    checks = {check["name"]: check for check in result.json["checks"]}
    detail = checks["task definition delivers the key safely"]["detail"]
    assert "an older gcpfargate's" in detail and "run gcpfargate register-task" in detail
    assert "environment sets SHELLOPTS" in detail
    # register-task writes today's wrapper (the template has no SHELLOPTS): doctor passes again.
    assert project.run("register-task").returncode == 0
    healed = project.run("doctor", "--output", "json")
    checks = {check["name"]: check for check in healed.json["checks"]}
    assert checks["task definition delivers the key safely"]["status"] == "OK", checks


def test_deploy_refuses_shell_start_up_variables_before_any_write(project: Project) -> None:
    prepare(project)
    template = project.dir / TEMPLATE
    text = template.read_text()
    assert '"environment": [],' in text
    template.write_text(
        text.replace(
            '"environment": [],',
            '"environment": [{"name": "BASH_ENV", "value": "/app/trace.sh"}],',
            1,
        )
    )
    calls = project.dir / "calls"
    result = project.run("deploy", env={"GCPFARGATE_CALL_LOG": str(calls)})
    assert_one_clean_line(result, 2, "environment sets BASH_ENV")
    written = [
        line
        for line in (calls.read_text() if calls.exists() else "").splitlines()
        if "write" in line
    ]
    assert written == []
