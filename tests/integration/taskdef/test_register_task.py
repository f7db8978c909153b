"""register-task, render, diff and init against the stack: the definition is registered in moto,
then its container is started on the real engine the way ECS starts it, and the key is used for
real."""

from __future__ import annotations

import io
import json
import os
import re
import stat
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any

import google.auth.transport.requests
import pytest
from google.oauth2 import service_account

from tests.conftest import Project, assert_one_clean_line
from tests.integration.helpers import Terminal, engine
from tests.stack.images import write_busybox_context
from tests.stack.local import REGION

SCOPES = ["https://www.googleapis.com/auth/cloud-platform"]
# The image's own ENTRYPOINT and CMD, with arguments a shell would mangle if anything re-quoted
# them.
IMAGE_ENTRYPOINT = ["/show-args", "first arg"]
IMAGE_CMD = ["it's", 'a "quoted" $HOME', "line1\nline2"]
SHOW_ARGS = '#!/bin/sh\nfor a in "$@"; do printf \'<%s>\\n\' "$a"; done\necho ---ENV---\nenv\n'


def push_test_image(project: Project, tmp_path: Path, tag: str = "v1") -> str:
    """Build the busybox image with an args-printing ENTRYPOINT and push it; returns
    host/repo:tag."""
    context = tmp_path / "image"
    (context / "show-args").parent.mkdir(parents=True, exist_ok=True)
    write_busybox_context(
        context,
        steps=[
            "COPY show-args /show-args",
            f"ENTRYPOINT {json.dumps(IMAGE_ENTRYPOINT)}",
            f"CMD {json.dumps(IMAGE_CMD)}",
        ],
        files={"show-args": SHOW_ARGS},
    )
    (context / "show-args").chmod(0o755)
    name = f"{project.stack.registry}/{project.family}"
    client = engine(project)
    client.images.build(path=str(context), tag=f"{name}:{tag}", rm=True, platform="linux/amd64")
    for event in client.images.push(name, tag=tag, stream=True, decode=True):
        assert "error" not in event, event
    return f"{name}:{tag}"


def configure(project: Project, tag: str = "v1", **task: Any) -> None:
    config = project.dir / "gcpfargate.toml"
    text = config.read_text().replace(
        "[task]\n", "[task]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in task.items())
    )
    config.write_text(text + f'\n[image]\nrepository = "{project.family}"\ntag = "{tag}"\n')


def copy_template(project: Project) -> Path:
    from importlib import resources

    path = project.dir / "task-definition.json.j2"
    path.write_text(
        resources.files("gcpfargate.templates").joinpath("task-definition.json.j2").read_text()
    )
    return path


def run_like_ecs(project: Project, definition: dict[str, Any]) -> tuple[int, str, bytes, int]:
    """Start the essential container as ECS would: environment plus resolved `secrets`, entryPoint
    and command from the definition, nothing else. Returns (exit code, logs, key file bytes, file
    mode)."""
    container = definition["containerDefinitions"][0]
    secrets = project.aws("secretsmanager")
    environment = {item["name"]: item["value"] for item in container.get("environment", [])}
    for item in container.get("secrets", []):
        environment[item["name"]] = secrets.get_secret_value(SecretId=item["valueFrom"])[
            "SecretString"
        ]
    client = engine(project)
    client.images.pull(container["image"])
    created = client.containers.create(
        container["image"],
        entrypoint=container.get("entryPoint"),
        command=container.get("command"),
        environment=environment,
        network_mode="none",
        auto_remove=False,
        detach=True,
    )
    try:
        created.start()
        code = int(created.wait(timeout=60)["StatusCode"])
        logs = created.logs(stdout=True, stderr=True).decode()
        path = environment["GOOGLE_APPLICATION_CREDENTIALS"]
        stream, _ = created.get_archive(path)
        with tarfile.open(fileobj=io.BytesIO(b"".join(stream))) as archive:
            member = archive.getmembers()[0]
            data = archive.extractfile(member).read()  # type: ignore[union-attr]
        return code, logs, data, stat.S_IMODE(member.mode)
    finally:
        created.remove(force=True, v=True)


def bootstrapped_with_image(project: Project, tmp_path: Path) -> tuple[str, Path]:
    """bootstrap, a pushed test image, the [image] section and the template: what every test here
    needs."""
    assert project.run("bootstrap").returncode == 0
    image = push_test_image(project, tmp_path)
    configure(project)
    return image, copy_template(project)


def test_registered_task_runs_the_image_with_the_key_file_like_ecs(
    project: Project, tmp_path: Path
) -> None:
    image, _ = bootstrapped_with_image(project, tmp_path)

    result = project.run("register-task", "--output", "json")
    assert result.returncode == 0, result.output
    out = result.json
    assert set(out) == {"task_definition_arn", "revision", "changed"}
    assert out["changed"] is True and out["revision"] == 1
    ecs = project.aws("ecs")
    definition = ecs.describe_task_definition(taskDefinition=out["task_definition_arn"])[
        "taskDefinition"
    ]
    container = definition["containerDefinitions"][0]
    digest = engine(project).images.get_registry_data(image).id
    assert container["image"] == f"{image.rsplit(':', 1)[0]}@{digest}"
    secret_arn = project.aws("secretsmanager").describe_secret(SecretId=project.secret_name)["ARN"]
    assert container["secrets"] == [{"name": "GCP_CREDENTIALS_JSON", "valueFrom": secret_arn}]
    # Docker's model (issue 17 item 1): the image's ENTRYPOINT after the wrapper, its CMD as the
    # command.
    assert container["entryPoint"][4:] == IMAGE_ENTRYPOINT and container["command"] == IMAGE_CMD
    # awslogs: the group the template names now exists.
    groups = project.aws("logs").describe_log_groups(logGroupNamePrefix=f"/ecs/{project.family}")[
        "logGroups"
    ]
    assert [g["logGroupName"] for g in groups] == [f"/ecs/{project.family}"]
    assert groups[0]["retentionInDays"] == 30  # task.log_retention_days' default

    code, logs, key_file, mode = run_like_ecs(project, definition)
    assert code == 0, logs
    secret_value = project.aws("secretsmanager").get_secret_value(SecretId=secret_arn)[
        "SecretString"
    ]
    assert key_file == secret_value.encode("utf-8")
    assert mode == 0o600
    args, _, env = logs.partition("---ENV---\n")
    assert args == "".join(f"<{arg}>\n" for arg in IMAGE_ENTRYPOINT[1:] + IMAGE_CMD)
    info = json.loads(key_file)
    assert "GOOGLE_APPLICATION_CREDENTIALS=/tmp/gcp/credentials.json" in env
    assert (
        "GCP_CREDENTIALS_JSON" not in env
        and info["private_key_id"] not in env
        and "PRIVATE KEY" not in env
    )
    credentials = service_account.Credentials.from_service_account_info(info, scopes=SCOPES)
    credentials.refresh(google.auth.transport.requests.Request())
    assert credentials.token

    # Unchanged input: no new revision, the same ARN back, no ECS write at all.
    calls = project.dir / "calls"
    again = project.run(
        "register-task", "--output", "json", env={"GCPFARGATE_CALL_LOG": str(calls)}
    )
    assert again.returncode == 0, again.output
    assert again.json == {
        "task_definition_arn": out["task_definition_arn"],
        "revision": 1,
        "changed": False,
    }
    assert [line for line in calls.read_text().splitlines() if line.endswith(" write")] == []
    arns = ecs.list_task_definitions(familyPrefix=project.family)["taskDefinitionArns"]
    assert len(arns) == 1


def test_wrapper_fails_clearly_when_the_secret_is_not_delivered(
    project: Project, tmp_path: Path
) -> None:
    bootstrapped_with_image(project, tmp_path)
    definition = project.run("render").json
    container = definition["containerDefinitions"][0]
    client = engine(project)
    client.images.pull(container["image"])
    # ECS without the secret: the variable is missing, so the program must not start without its
    # key.
    created = client.containers.create(
        container["image"],
        entrypoint=container["entryPoint"],
        network_mode="none",
        environment={e["name"]: e["value"] for e in container["environment"]},
        detach=True,
    )
    try:
        created.start()
        assert created.wait(timeout=60)["StatusCode"] != 0
        logs = created.logs(stdout=True, stderr=True).decode()
        assert "GCP_CREDENTIALS_JSON is empty or unset" in logs and "<first arg>" not in logs
    finally:
        created.remove(force=True, v=True)


def test_render_diff_and_init_from_family(project: Project, tmp_path: Path) -> None:
    image, template = bootstrapped_with_image(project, tmp_path)
    calls = project.dir / "calls"

    rendered = project.run("render", env={"GCPFARGATE_CALL_LOG": str(calls)})
    assert rendered.returncode == 0, rendered.output
    definition = json.loads(rendered.stdout)
    assert definition["family"] == project.family
    assert [line for line in calls.read_text().splitlines() if line.endswith(" write")] == []
    assert project.run("register-task", "--dry-run", "--output", "json").json["changed"] is True
    assert (
        project.aws("ecs").list_task_definitions(familyPrefix=project.family)["taskDefinitionArns"]
        == []
    )

    assert project.run("register-task").returncode == 0
    same = project.run("diff", "--output", "json")
    assert same.returncode == 0, same.output
    assert same.json == {"changed": False, "diff": ""}

    template.write_text(template.read_text().replace('"memory": "512"', '"memory": "1024"'))
    changed = project.run("diff")
    assert changed.returncode == 1, changed.output
    assert f"--- {project.family}:1 (registered)" in changed.stdout
    assert '-  "memory": "512",' in changed.stdout and '+  "memory": "1024",' in changed.stdout
    as_json = project.run("diff", "--output", "json")
    assert (
        as_json.returncode == 1
        and as_json.json["changed"] is True
        and '+  "memory": "1024"' in as_json.json["diff"]
    )
    # On a terminal the diff is coloured as git colours it; NO_COLOR keeps it plain there too.
    env = {k: v for k, v in project.env.items() if k not in ("NO_COLOR", "CI", "FORCE_COLOR")}
    term = Terminal([sys.executable, "-m", "gcpfargate", "diff"], project.dir, env)
    code, shown = term.finish()
    assert code == 1, shown
    assert '\x1b[31m-  "memory": "512",\x1b[0m' in shown, repr(shown)
    assert '\x1b[32m+  "memory": "1024",\x1b[0m' in shown, repr(shown)
    term = Terminal(
        [sys.executable, "-m", "gcpfargate", "diff"], project.dir, env | {"NO_COLOR": "1"}
    )
    code, shown = term.finish()
    # Spinners still move the cursor; what NO_COLOR removes is every colour (SGR) sequence.
    assert code == 1 and '+  "memory": "1024",' in shown, repr(shown)
    assert not re.search(r"\x1b\[[0-9;]*m", shown), repr(shown)
    assert project.run("register-task", "--output", "json").json["revision"] == 2

    # init --from-family: the imported template renders to the registered definition again.
    imported = tmp_path / "imported"
    imported.mkdir()
    init = subprocess.run(
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
            "--output",
            "json",
        ],
        cwd=imported,
        env=project.env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert init.returncode == 0, init.stdout + init.stderr
    assert json.loads(init.stdout) == {
        "files": [str(imported / "gcpfargate.toml"), str(imported / "task-definition.json.j2")]
    }
    text = (imported / "task-definition.json.j2").read_text()
    assert "{{ image | tojson }}" in text and "{{ execution_role_arn | tojson }}" in text
    assert (
        "gcpfargate-wrapper" not in text
        and "GCP_CREDENTIALS_JSON" not in text
        and "sha256:" not in text
    )
    assert "entryPoint" not in text  # the image's own ENTRYPOINT/CMD, recognised and left out
    diff = subprocess.run(
        [sys.executable, "-m", "gcpfargate", "diff", "--image", image],
        cwd=imported,
        env=project.env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert diff.returncode == 0, diff.stdout + diff.stderr
    again = subprocess.run(
        [sys.executable, "-m", "gcpfargate", "init"],
        cwd=imported,
        env=project.env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert again.returncode == 2 and "--force" in again.stderr


BAD_TEMPLATES = {
    "undefined": (
        '{\n  "family": {{ family | tojson }},\n  "cpu": {{ vars.cpu_size | tojson }}\n}\n',
        ["task-definition.json.j2:3:", "cpu_size"],
    ),
    "syntax": (
        '{\n  "family": {{ family | tojson }},\n  "cpu": {{ "256" | tojson }\n}\n',
        ["task-definition.json.j2:3:", "syntax error"],
    ),
    "not-json": (
        '{\n  "family": {{ family | tojson }},\n  "cpu": 256,,\n}\n',
        ["task-definition.json.j2:3:14:", "not JSON"],
    ),
    "missing-comma": (
        '{\n  "family": {{ family | tojson }}\n  "cpu": "256"\n}\n',
        ["task-definition.json.j2:3:3:", "Expecting ',' delimiter", "A comma is missing"],
    ),
}


def fargate_template(**change: Any) -> str:
    base: dict[str, Any] = {
        "family": "@F",
        "requiresCompatibilities": ["FARGATE"],
        "networkMode": "awsvpc",
        "cpu": "256",
        "memory": "512",
        "containerDefinitions": [
            {
                "name": "app",
                "image": "busybox",
                "entryPoint": ["/bin/true"],
                "portMappings": [{"containerPort": 80}],
            }
        ],
    }
    base.update(change)
    for key, value in list(base.items()):
        if value is None:
            base.pop(key)
    return json.dumps(base, indent=2).replace('"@F"', "{{ family | tojson }}")


BAD_DEFINITIONS = {
    "shape": (
        fargate_template(
            containerDefinitions=[
                {"name": "app", "image": "busybox", "portMappings": [{"containerPort": "80"}]}
            ]
        ),
        ["containerDefinitions[0].portMappings[0].containerPort must be an integer"],
    ),
    "unknown-field": (
        fargate_template(
            containerDefinitions=[{"name": "app", "image": "busybox", "essentail": True}]
        ),
        ["unknown field 'essentail' at containerDefinitions[0] (did you mean 'essential'?)"],
    ),
    "cpu-memory": (
        fargate_template(cpu="512", memory="512"),
        ["cpu 512 with memory 512", "1024 to 4096"],
    ),
    "awsvpc": (
        fargate_template(networkMode=None),
        ["networkMode is not set", "FARGATE requires awsvpc"],
    ),
}


@pytest.mark.parametrize("case", [*BAD_TEMPLATES, *BAD_DEFINITIONS])
def test_each_bad_template_gives_one_clear_line(project: Project, case: str) -> None:
    text, fragments = {**BAD_TEMPLATES, **BAD_DEFINITIONS}[case]
    (project.dir / "task-definition.json.j2").write_text(text)
    # No secret and no image are needed for these: the template names neither and wiring is off.
    configure(project, wire_credentials=False, containers=[])
    config = project.dir / "gcpfargate.toml"
    config.write_text(
        config.read_text().replace('tag = "v1"\n', 'tag = "v1"\npin_digest = false\n')
    )
    result = project.run("register-task", env={"GCPFARGATE_CALL_LOG": str(project.dir / "calls")})
    assert_one_clean_line(result, 2, *fragments)
    calls = project.dir / "calls"
    assert not calls.exists() or calls.read_text() == ""  # refused before any AWS call


def test_a_json_error_shows_the_line_with_a_caret_and_no_wrong_hint(project: Project) -> None:
    (project.dir / "task-definition.json.j2").write_text(BAD_TEMPLATES["missing-comma"][0])
    configure(project, wire_credentials=False, containers=[])
    result = project.run("render")
    last = assert_one_clean_line(result, 2, "task-definition.json.j2:3:3:")
    assert "tojson" not in last
    lines = result.stderr.splitlines()
    assert lines[-3:-1] == ['3 |   "cpu": "256"', "  |   ^"], result.stderr

    as_json = project.run("render", "--output", "json")
    assert as_json.returncode == 2
    assert as_json.json["error"]["excerpt"] == '3 |   "cpu": "256"\n  |   ^'
    assert "  |   ^" not in as_json.stderr  # the excerpt is in the JSON instead

    # Where a bare value is the likely cause, the tojson hint stays.
    (project.dir / "task-definition.json.j2").write_text(
        '{\n  "family": {{ family }},\n  "cpu": "256"\n}\n'
    )
    result = project.run("render")
    assert_one_clean_line(result, 2, "Expecting value", "tojson")
    assert "^" in result.stderr.splitlines()[-2]


def test_missing_secret_and_missing_image_say_what_to_do(project: Project) -> None:
    configure(project)
    copy_template(project)
    assert_one_clean_line(project.run("register-task"), 2, "does not exist", "gcpfargate bootstrap")
    # A dry run (as in `deploy --dry-run` on a fresh project) plans instead of failing.
    planned = project.run("register-task", "--dry-run", "--output", "json")
    assert planned.returncode == 0, planned.output
    registration = planned.json["plan"][-1]  # after the log groups the template names
    assert planned.json["changed"] is True and "gcpfargate bootstrap" in registration["text"]
    assert (registration["action"], registration["resource"]) == ("create", "task definition")
    assert project.run("bootstrap").returncode == 0
    assert_one_clean_line(project.run("register-task"), 1, "is not in registry", "push-image")
    config = project.dir / "gcpfargate.toml"
    config.write_text(config.read_text().replace('tag = "v1"\n', ""))
    assert_one_clean_line(project.run("render"), 2, "image.tag", "--image")


def test_init_writes_a_config_and_template_that_load(project: Project, tmp_path: Path) -> None:
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    env = {k: v for k, v in project.env.items() if not k.startswith("GCPFARGATE_CONFIG")}
    proc = subprocess.run(
        [sys.executable, "-m", "gcpfargate", "init", "--family", "nightly", "--output", "json"],
        cwd=fresh,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["files"] == [
        str(fresh / "gcpfargate.toml"),
        str(fresh / "task-definition.json.j2"),
    ]
    from gcpfargate.config import load_settings

    settings = load_settings(fresh / "gcpfargate.toml", environ={})
    assert settings.family == "nightly" and settings.task.wire_credentials is True
    assert os.access(fresh / "task-definition.json.j2", os.R_OK)


def test_log_retention_must_be_one_cloudwatch_accepts(project: Project) -> None:
    project.write_config(project.base_config + "log_retention_days = 10\n")
    assert_one_clean_line(
        project.run("render"), 2, "task.log_retention_days = 10", "is not a CloudWatch retention"
    )


def test_init_off_a_terminal_never_prompts_and_says_what_is_left(
    project: Project, tmp_path: Path
) -> None:
    fresh = tmp_path / "fresh-init"
    fresh.mkdir()
    env = {k: v for k, v in project.env.items() if not k.startswith("GCPFARGATE_")}
    proc = subprocess.run(
        [sys.executable, "-m", "gcpfargate", "init", "--family", "nightly"],
        cwd=fresh,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert "?" not in proc.stderr  # no question was asked
    assert (
        "Next: Set gcp.project, set gcp.service_account in gcpfargate.toml, write a Dockerfile, "
        "then run `gcpfargate deploy`."
    ) in proc.stderr
    text = (fresh / "gcpfargate.toml").read_text()
    for section in ("# [run]", "# [schedule]", "# [service]"):
        assert section in text
    assert not (fresh / "Dockerfile").exists()

    (fresh / "Dockerfile").write_text("FROM busybox\n")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "gcpfargate",
            "init",
            "--family",
            "nightly",
            "--force",
            "--gcp-project",
            "my-project-1",
            "--service-account",
            "runner",
        ],
        cwd=fresh,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "Next: Run `gcpfargate deploy`." in done.stderr


def test_init_imports_the_hand_built_recipe_and_renders_first_time(
    project: Project, tmp_path: Path
) -> None:
    booted = project.run("bootstrap", "-o", "json")
    assert booted.returncode == 0, booted.output
    secret_arn = booted.json["secret_arn"]
    family = f"{project.family}-recipe"
    # The user built this family by hand, long after the role existed: register it past the strict
    # layer's IAM propagation delay (what is tested is the import, not PassRole timing).
    import boto3

    ecs = boto3.client(
        "ecs",
        region_name=REGION,
        endpoint_url=project.stack.moto_direct_url,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    ecs.register_task_definition(
        family=family,
        networkMode="awsvpc",
        requiresCompatibilities=["FARGATE"],
        cpu="256",
        memory="512",
        executionRoleArn=booted.json["execution_role_arn"],
        containerDefinitions=[
            {
                "name": "app",
                "image": "docker.io/library/python:3.12-slim",
                "essential": True,
                "command": [
                    "sh",
                    "-c",
                    'echo "$KEY" > /tmp/key.json && exec python main.py --daily',
                ],
                "environment": [
                    {"name": "GOOGLE_APPLICATION_CREDENTIALS", "value": "/tmp/key.json"},
                    {"name": "MODE", "value": "prod"},
                ],
                "secrets": [{"name": "KEY", "valueFrom": secret_arn}],
            }
        ],
    )
    fresh = tmp_path / "imported"
    fresh.mkdir()
    env = {k: v for k, v in project.env.items() if not k.startswith("GCPFARGATE_")}
    imported = subprocess.run(
        [sys.executable, "-m", "gcpfargate", "init", "--from-family", family],
        cwd=fresh,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert imported.returncode == 0, imported.stderr
    assert "outside the registry" in imported.stderr
    config = (fresh / "gcpfargate.toml").read_text()
    template_text = (fresh / "task-definition.json.j2").read_text()
    assert (
        "PRIVATE KEY" not in config + template_text and "private_key" not in config + template_text
    )
    from gcpfargate.config import load_settings

    settings = load_settings(fresh / "gcpfargate.toml", environ={})
    assert (settings.gcp.project, settings.gcp.service_account) == (
        project.gcp_project,
        project.email,
    )
    assert (settings.task.credentials_path, settings.task.credentials_env) == (
        "/tmp/key.json",
        "KEY",
    )
    assert settings.secret.name == project.secret_name
    assert settings.task.vars == {"image": "docker.io/library/python:3.12-slim"}
    assert "echo" not in template_text and "{{ vars.image | tojson }}" in template_text

    rendered = subprocess.run(
        [sys.executable, "-m", "gcpfargate", "render"],
        cwd=fresh,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert rendered.returncode == 0, rendered.stderr
    container = json.loads(rendered.stdout)["containerDefinitions"][0]
    assert container["image"] == "docker.io/library/python:3.12-slim"
    assert container["secrets"] == [{"name": "KEY", "valueFrom": secret_arn}]
    assert {"name": "GOOGLE_APPLICATION_CREDENTIALS", "value": "/tmp/key.json"} in container[
        "environment"
    ]
    assert container["entryPoint"][-3:] == ["python", "main.py", "--daily"]
