"""The real-service rules gcpfargate must meet (issue 12, issue 17), each against the strict stack.

The session's stack runs the strict layer (tests/stack/strict): RegisterTaskDefinition refuses
what ECS refuses, DescribeTaskDefinition answers with the defaults ECS fills in, IAM names are
limited and a role changed a moment ago is not yet usable. Every test here failed on the code
before the fix it names.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import boto3
import pytest

from tests.conftest import REGION, Project, assert_one_clean_line
from tests.integration.helpers import READ_ONLY, deploy, latest, prepare

CHECK_WIRING = "task definition delivers the key safely"


@pytest.fixture(autouse=True)
def _strict(stack: Any) -> None:
    assert stack.strict is not None, (
        "these tests need the strict layer (GCPF_STACK_STRICT is on by default)"
    )


def write_template(
    project: Project,
    container_extra: dict[str, Any],
    top_extra: dict[str, Any] | None = None,
    *,
    role: bool = False,
) -> None:
    """The default template's shape, without executionRoleArn unless `role`, plus what the test
    needs."""
    container: dict[str, Any] = {
        "name": "app",
        "image": "@@image@@",
        "essential": True,
        "logConfiguration": {
            "logDriver": "awslogs",
            "options": {
                "awslogs-group": f"/ecs/{project.family}",
                "awslogs-region": REGION,
                "awslogs-stream-prefix": "gcpfargate",
            },
        },
        **container_extra,
    }
    definition: dict[str, Any] = {
        "family": "@@family@@",
        "requiresCompatibilities": ["FARGATE"],
        "networkMode": "awsvpc",
        "cpu": "256",
        "memory": "512",
        "containerDefinitions": [container],
        **(top_extra or {}),
    }
    if role:
        definition["executionRoleArn"] = "@@role@@"
    text = json.dumps(definition, indent=2)
    text = (
        text.replace('"@@image@@"', "{{ image | tojson }}")
        .replace('"@@family@@"', "{{ family | tojson }}")
        .replace('"@@role@@"', "{{ execution_role_arn | tojson }}")
    )
    (project.dir / "task-definition.json.j2").write_text(text + "\n")


@contextmanager
def unsettled_role(project: Project, role_arn: str, refusals: int) -> Iterator[None]:
    """The strict layer treats `role_arn` as just changed: ECS refuses its next `refusals` uses,
    however long the command takes to reach them (counted, not timed)."""
    layer = project.stack.strict
    name = role_arn.rsplit("/", 1)[-1]
    with layer.state_lock:
        layer.state.setdefault("role_refusals", {})[(name, "ecs")] = refusals
    try:
        yield
    finally:
        with layer.state_lock:
            left = layer.state["role_refusals"].pop((name, "ecs"), 0)
        assert left == 0, f"{left} of {refusals} refusals were never met"


def doctor_checks(project: Project) -> tuple[int, dict[str, dict[str, str]]]:
    result = project.run("doctor", "--output", "json")
    assert "Traceback" not in result.output, result.output
    return result.returncode, {check["name"]: check for check in result.json["checks"]}


# -- issue 12 "done when" + items 1, 2 -------------------------------------------------------------
def test_health_check_empty_env_and_no_execution_role_deploy_redeploy_and_doctor(
    project: Project,
) -> None:
    prepare(project)
    write_template(
        project,
        {
            "healthCheck": {"command": ["CMD-SHELL", "true"]},
            "environment": [
                {"name": "OPTIONAL_FLAG", "value": ""},
                {"name": "MODE", "value": "batch"},
            ],
            "portMappings": [{"containerPort": 8080}],
        },
    )
    first = deploy(project)
    rendered = project.run("render")
    assert rendered.returncode == 0, rendered.output
    assert "OPTIONAL_FLAG" in rendered.stderr and "empty" in rendered.stderr  # warned at render
    definition = latest(project)
    # The wiring added the execution role bootstrap made (real ECS refuses secrets without one).
    assert definition["executionRoleArn"] == first["bootstrap"]["execution_role_arn"]
    second = deploy(project)
    assert second["register-task"]["changed"] is False, second
    assert second["register-task"]["revision"] == definition["revision"]
    code, checks = doctor_checks(project)
    assert code == 0 and [n for n, c in checks.items() if c["status"] == "FAIL"] == [], checks


def test_a_template_that_names_another_role_keeps_it(project: Project) -> None:
    prepare(project)
    other = "arn:aws:iam::123456789012:role/team-provided-execution"
    write_template(project, {}, {"executionRoleArn": other})
    result = project.run("bootstrap")
    assert result.returncode == 0, result.output
    pushed = project.run("push-image", "--output", "json")
    assert pushed.returncode == 0, pushed.output
    rendered = project.run("render", "--image", pushed.json["image"])
    assert rendered.returncode == 0, rendered.output
    assert json.loads(rendered.stdout)["executionRoleArn"] == other


def test_doctor_fails_a_revision_with_secrets_and_no_execution_role(project: Project) -> None:
    prepare(project)
    deploy(project)
    definition = {
        k: v for k, v in latest(project).items() if k not in (*READ_ONLY, "executionRoleArn")
    }
    # Registered behind the strict layer's back: real ECS would refuse it, older tools or a console
    # import may still have left such a revision behind.
    direct = boto3.client(
        "ecs",
        region_name=REGION,
        endpoint_url=project.stack.moto_direct_url,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    direct.register_task_definition(**definition)
    code, checks = doctor_checks(project)
    assert code == 3  # doctor's exit code for a FAIL
    assert (
        checks[CHECK_WIRING]["status"] == "FAIL"
        and "executionRoleArn" in checks[CHECK_WIRING]["detail"]
    )


def test_efs_volume_and_port_mappings_redeploy_without_a_new_revision(project: Project) -> None:
    prepare(project)
    efs = {"name": "shared", "efsVolumeConfiguration": {"fileSystemId": "fs-0123456789abcdef0"}}
    write_template(
        project,
        {
            "portMappings": [{"containerPort": 80}],
            "mountPoints": [{"sourceVolume": "shared", "containerPath": "/data"}],
        },
        {"volumes": [efs]},
        role=True,
    )
    first = deploy(project)
    second = deploy(project)
    assert second["register-task"]["changed"] is False
    assert second["register-task"]["revision"] == first["register-task"]["revision"]


# -- item 5: names --------------------------------------------------------------------------------
def test_a_long_family_gets_an_execution_role_name_iam_accepts(project: Project) -> None:
    long_family = ("nightly-reporting-pipeline-for-the-finance-department-" + project.family)[
        :80
    ].rstrip("-")
    text = (
        (project.dir / "gcpfargate.toml")
        .read_text()
        .replace(f'"{project.family}"', f'"{long_family}"')
    )
    project.write_config(text)
    project.family = long_family
    prepare(project)
    first = deploy(project)
    name = first["bootstrap"]["execution_role_arn"].rsplit("/", 1)[-1]
    assert len(name) <= 64 and name.startswith("gcpfargate-")
    again = deploy(project)
    assert (
        again["bootstrap"]["execution_role_arn"] == first["bootstrap"]["execution_role_arn"]
    )  # stable


def test_a_family_that_is_no_repository_name_fails_before_the_build(project: Project) -> None:
    text = (
        (project.dir / "gcpfargate.toml")
        .read_text()
        .replace(f'"{project.family}"', '"Nightly_Batch"')
    )
    project.write_config(text)
    prepare(project)
    config = project.dir / "gcpfargate.toml"
    config.write_text(config.read_text().replace(f'repository = "{project.family}"\n', ""))
    result = project.run("push-image")
    assert_one_clean_line(result, 2, "Nightly_Batch", "image.repository")
    assert "Building" not in result.output


# -- item 6: the secret's own KMS key ------------------------------------------------------------
def test_the_role_may_decrypt_with_the_key_that_encrypts_the_secret(project: Project) -> None:
    prepare(project)
    key_arn = project.aws("kms").create_key(Description="team key")["KeyMetadata"]["Arn"]
    # An existing (adopted) secret under a customer key; gcpfargate's config names no key.
    project.aws("secretsmanager").create_secret(
        Name=project.secret_name,
        KmsKeyId=key_arn,
        Tags=[{"Key": "managed-by", "Value": "gcpfargate"}],
    )
    result = project.run("bootstrap", "--output", "json")
    assert result.returncode == 0, result.output
    role = result.json["execution_role_arn"].rsplit("/", 1)[-1]
    iam = project.aws("iam")
    documents = [
        iam.get_role_policy(RoleName=role, PolicyName=name)["PolicyDocument"]
        for name in iam.list_role_policies(RoleName=role)["PolicyNames"]
    ]
    text = json.dumps(documents)
    assert "kms:Decrypt" in text and key_arn in text


# -- item 7: eventual consistency after our own IAM changes ---------------------------------------
def test_register_waits_out_passrole_right_after_the_role_is_created(project: Project) -> None:
    prepare(project)
    booted = project.run("bootstrap", "--output", "json")
    assert booted.returncode == 0, booted.output
    pushed = project.run("push-image", "--output", "json")
    assert pushed.returncode == 0, pushed.output
    # As if bootstrap had just created the role: ECS refuses iam:PassRole on it three times, past
    # the product's first two pauses (1 s, 2 s); the 60 s budget is proven on a fake clock
    # (tests/unit/stack/test_real_rules.py).
    with unsettled_role(project, booted.json["execution_role_arn"], 3):
        registered = project.run("register-task", "--image", pushed.json["image"])
    assert registered.returncode == 0, registered.output
    assert (
        "iam:PassRole" in registered.stderr and "retrying" in registered.stderr
    )  # refused, then waited


def test_key_creation_waits_for_a_new_service_account(project: Project) -> None:
    prepare(project)
    config = project.dir / "gcpfargate.toml"
    fresh = f"fresh-{project.account_id}"[:30]
    config.write_text(
        config.read_text().replace(
            f'service_account = "{project.account_id}"',
            f'service_account = "{fresh}"\ncreate_service_account = true',
        )
    )
    project.stack.emulator.set_account_visibility_delay(seconds=3)
    try:
        result = project.run("bootstrap")
    finally:
        project.stack.emulator.set_account_visibility_delay(0, 0)
    assert result.returncode == 0, result.output


# -- item 11: read-only root file system -----------------------------------------------------------
def test_read_only_root_without_a_mount_gets_a_tmpfs_for_the_key_and_runs_locally(
    project: Project,
) -> None:
    # Fargate mounts tmpfs since 2026-01 (aws/containers-roadmap#736): the key lives in memory.
    # The program checks the key arrived, the root is read-only, and the directory is a tmpfs.
    check = (
        'test -s \\"$GOOGLE_APPLICATION_CREDENTIALS\\" && ! touch /x && '
        "grep ' /tmp/gcp tmpfs ' /proc/mounts && echo key-on-tmpfs"
    )
    prepare(project, (f'CMD ["sh", "-c", "{check}"]',))
    write_template(project, {"readonlyRootFilesystem": True}, role=True)
    deploy(project)
    app = latest(project)["containerDefinitions"][0]
    assert app["linuxParameters"]["tmpfs"] == [
        {"containerPath": "/tmp/gcp", "size": 4, "mountOptions": ["mode=0700"]}
    ]
    result = project.run("run-local")
    assert result.returncode == 0, result.output
    assert "key-on-tmpfs" in result.output and "mode=700" in result.output
    again = project.run("deploy", "--output", "json")
    assert again.returncode == 0 and not again.json["register-task"]["changed"], again.output


def test_read_only_root_with_a_mount_for_the_key_runs_locally(project: Project) -> None:
    # The program checks the key arrived and that the root file system really is read-only.
    prepare(
        project,
        ('CMD ["sh", "-c", "test -s \\"$GOOGLE_APPLICATION_CREDENTIALS\\" && ! touch /x"]',),
    )
    credentials = "/run/gcp"
    config = project.dir / "gcpfargate.toml"
    write_template(
        project,
        {
            "readonlyRootFilesystem": True,
            "mountPoints": [{"sourceVolume": "creds", "containerPath": credentials}],
        },
        {"volumes": [{"name": "creds"}]},
        role=True,
    )
    text = config.read_text().replace(
        "[task]\n", f'[task]\ncredentials_path = "{credentials}/key.json"\n', 1
    )
    config.write_text(text)
    deploy(project)
    result = project.run("run-local")
    assert result.returncode == 0, result.output


# -- issue 17 item 3 -------------------------------------------------------------------------------
def test_deploy_refuses_when_the_template_runs_another_image(project: Project) -> None:
    prepare(project)
    write_template(project, {"entryPoint": ["sh", "-c", "echo old image"]}, role=True)
    template = project.dir / "task-definition.json.j2"
    fixed = '"public.ecr.aws/docker/library/busybox:1"'
    template.write_text(template.read_text().replace("{{ image | tojson }}", fixed))
    assert project.run("bootstrap").returncode == 0
    rendered = project.run("render")
    assert rendered.returncode == 0, rendered.output
    assert "image" in rendered.stderr and "{{ image }}" in rendered.stderr
    result = project.run("deploy")
    assert_one_clean_line(result, 2, "{{ image }}")


# -- issue 17 item 5 -------------------------------------------------------------------------------
def test_render_and_diff_use_the_latest_revisions_image_without_image(project: Project) -> None:
    prepare(project)
    config = project.dir / "gcpfargate.toml"
    config.write_text(
        config.read_text().replace('tag = "v1"\n', "")
    )  # a derived tag: not in the config
    first = deploy(project)
    image = latest(project)["containerDefinitions"][0]["image"]
    rendered = project.run("render")
    assert rendered.returncode == 0, rendered.output
    assert json.loads(rendered.stdout)["containerDefinitions"][0]["image"] == image
    diffed = project.run("diff", "--output", "json")
    assert diffed.returncode == 0 and diffed.json["changed"] is False, diffed.output
    assert first["push-image"]["changed"]


def test_render_of_a_template_that_is_not_json_shows_the_numbered_text(project: Project) -> None:
    prepare(project)
    # bootstrap checks the template before it writes anything: run it while the template is good.
    assert project.run("bootstrap").returncode == 0
    (project.dir / "task-definition.json.j2").write_text(
        '{\n  "family": {{ family }},\n  "x": 1\n}\n'
    )
    result = project.run("render", "--image", "busybox:latest")
    assert result.returncode == 2
    assert f'   2 |   "family": {project.family},' in result.stderr, result.stderr


def test_run_waits_out_a_role_ecs_cannot_assume_yet(project: Project) -> None:
    from tests.integration.helpers import prepare_run

    ecs = prepare_run(project)
    role = latest(project)["executionRoleArn"]
    with unsettled_role(project, role, 3):
        result = project.run("run", "--no-wait", "--output", "json")
    assert result.returncode == 0, result.output
    assert "unable to assume the role" in result.stderr and "retrying" in result.stderr
    assert project.aws("ecs").describe_tasks(cluster=ecs.cluster, tasks=[result.json["task_arn"]])[
        "tasks"
    ]


def test_schedule_waits_out_a_trust_policy_it_just_corrected(project: Project) -> None:
    from tests.integration.helpers import prepare_schedule

    prepare_schedule(project)
    first = project.run("schedule", "--cron", "0 3 * * ? *")
    assert first.returncode == 0, first.output
    # Someone broke the scheduler role's trust policy; the next schedule corrects it
    # (UpdateAssumeRolePolicy) and then updates the schedule, which Scheduler refuses until the
    # change has propagated.
    role = f"gcpfargate-{project.family}-scheduler"
    project.aws("iam").update_assume_role_policy(
        RoleName=role,
        PolicyDocument=json.dumps(
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
        ),
    )
    layer = project.stack.strict
    layer.settings.consistency_delay, before = 10, layer.settings.consistency_delay
    try:
        result = project.run("schedule", "--cron", "0 4 * * ? *", "--output", "json")
    finally:
        layer.settings.consistency_delay = before
    assert result.returncode == 0, result.output
    assert "retrying" in result.stderr
    assert (
        project.aws("scheduler").get_schedule(Name=f"gcpfargate-{project.family}")[
            "ScheduleExpression"
        ]
        == "cron(0 4 * * ? *)"
    )
