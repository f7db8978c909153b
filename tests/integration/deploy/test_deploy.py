"""deploy and run-local against the stack: the whole job, and a rehearsal of the Fargate start."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from tests.conftest import Project, assert_one_clean_line
from tests.integration.helpers import (
    ROOT,
    deploy,
    latest,
    prepare,
    register_variant,
    secret_policy,
)
from tests.reliability.helpers import check_invariants

# Every command here runs as a user's first does: botocore's cache empty (tests/conftest.py).
pytestmark = pytest.mark.cold_botocore_cache


def test_deploy_from_empty_then_a_second_deploy_changes_nothing(project: Project) -> None:
    prepare(project)
    first = deploy(project)
    assert set(first) == {"bootstrap", "push-image", "register-task", "run-history"}
    assert all(first[step]["changed"] for step in first)
    definition = latest(project)
    container = definition["containerDefinitions"][0]
    assert (
        container["image"]
        == f"{project.stack.registry}/{project.family}@{first['push-image']['digest']}"
    )
    assert container["secrets"] == [
        {"name": "GCP_CREDENTIALS_JSON", "valueFrom": first["bootstrap"]["secret_arn"]}
    ]
    assert first["register-task"]["task_definition_arn"] == definition["taskDefinitionArn"]

    calls = project.dir / "calls.log"
    project.stack.emulator.reset_stats()
    result = project.run("deploy", "--output", "json", env={"GCPFARGATE_CALL_LOG": str(calls)})
    assert result.returncode == 0, result.output
    assert not any(result.json[step]["changed"] for step in result.json)
    assert result.json["register-task"]["revision"] == definition["revision"]
    # Zero mutating calls: botocore's before-call hook for AWS, the emulator's own counter for GCP.
    lines = calls.read_text().splitlines()
    assert lines and [line for line in lines if line.endswith(" write")] == []
    assert project.stack.emulator.stats()["mutating_calls"] == 0


def test_deploy_failure_names_the_step(project: Project) -> None:
    prepare(project)
    (project.dir / "Dockerfile").write_text('FROM scratch\nRUN ["/nonexistent"]\n')
    result = project.run("deploy")
    assert_one_clean_line(result, 1, "push-image failed")
    # The first step's work stays consistent: a stored key that authenticates, nothing orphaned,
    # tags that agree with it (tests/reliability/helpers.py; test_invariants.py shows each check can
    # fail).
    assert check_invariants(project) == []
    assert len(project.stack.emulator.key_ids(project.email)) == 1


def _demo_project(project: Project) -> None:
    for name in ("gcpfargate.toml", "task-definition.json.j2", "Dockerfile", "app.py"):
        shutil.copyfile(ROOT / "examples" / "demo" / name, project.dir / name)
    text = (project.dir / "gcpfargate.toml").read_text()
    text = text.replace('"demo-project"', f'"{project.gcp_project}"').replace(
        '"nightly-batch"', f'"{project.account_id}"'
    )
    text = text.replace('"demo-nightly"', f'"{project.family}"')
    (project.dir / "gcpfargate.toml").write_text(text)


def test_run_local_runs_the_registered_job_which_authenticates(
    project: Project, base_image: str
) -> None:

    _demo_project(project)
    emulator = project.stack.emulator
    # As with real Google, the new key is refused at first ("60 seconds or more"): deploy's
    # verification waits it out, so the job run right after it authenticates.
    emulator.set_propagation_delay(refusals=2, email=project.email)
    refused = emulator.stats()["rejected_grants"]
    try:
        deploy(project)
        assert emulator.stats()["rejected_grants"] >= refused + 2  # the knob was met
        before = emulator.stats()["authenticated_calls"]
        result = project.run("run-local", "--network", "host")
    finally:
        emulator.reset_knobs()
    assert result.returncode == 0, result.output
    assert "called the GCP API as " + project.email in result.stderr
    assert "mode 600; key text in environment: False" in result.stderr
    # The image's own ENTRYPOINT/CMD ran, arguments intact.
    assert "args=['--date', 'today', '--note', 'it\\'s a \"quoted\" $ARG']" in result.stderr
    assert emulator.stats()["authenticated_calls"] == before + 1
    # The container is gone: nothing holding the key lingers in the engine.
    import docker

    engine = docker.DockerClient(base_url=project.stack.docker_host)
    assert engine.containers.list(all=True, filters={"label": "gcpfargate=run-local"}) == []


def test_run_local_passes_the_exit_code_through(project: Project) -> None:
    prepare(project, steps=('ENTRYPOINT ["/bin/sh", "-c", "echo failing job; exit 7"]',))
    deploy(project)
    result = project.run("run-local")
    assert result.returncode == 7, result.output
    assert "failing job" in result.stderr
    assert "exited with 7" in result.stderr


def test_run_local_reports_a_missing_secret(project: Project) -> None:
    prepare(project)
    deploy(project)
    arn = latest(project)["containerDefinitions"][0]["secrets"][0]["valueFrom"]

    def point_at_missing(definition: dict) -> None:
        definition["containerDefinitions"][0]["secrets"][0]["valueFrom"] = arn + "-gone"

    register_variant(project, point_at_missing)
    result = project.run("run-local", "--skip-role-check")
    assert_one_clean_line(result, 1, "does not exist", "GCP_CREDENTIALS_JSON")


def test_run_local_fails_like_fargate_when_the_role_cannot_read_the_secret(
    project: Project,
) -> None:
    prepare(project)
    deploy(project)
    project.aws("iam").delete_role_policy(
        RoleName=f"gcpfargate-{project.family}-execution", PolicyName=secret_policy(project)
    )
    result = project.run("run-local")
    assert_one_clean_line(
        result, 1, "would fail to start", "may not read secret GCP_CREDENTIALS_JSON", "--grant"
    )


def test_run_local_resolves_json_key_and_ssm_forms(project: Project) -> None:
    prepare(project, steps=('ENTRYPOINT ["/bin/sh", "-c", "echo A=$A B=$B"]',))
    deploy(project)
    sm, ssm = project.aws("secretsmanager"), project.aws("ssm")
    other = sm.create_secret(
        Name=f"{project.family}/other", SecretString='{"user": "alice", "n": 2}'
    )
    ssm.put_parameter(Name=f"/{project.family}/b", Value="from-ssm", Type="SecureString")

    def add_secrets(definition: dict) -> None:
        definition["containerDefinitions"][0]["secrets"] += [
            {"name": "A", "valueFrom": f"{other['ARN']}:user:AWSCURRENT:"},
            {"name": "B", "valueFrom": f"/{project.family}/b"},
        ]

    register_variant(project, add_secrets)
    result = project.run("run-local", "--skip-role-check")
    assert result.returncode == 0, result.output
    assert "A=alice B=from-ssm" in result.stderr


def test_dry_run_of_a_no_op_deploy_says_nothing_would_change(project: Project) -> None:
    prepare(project)
    deploy(project)
    text = project.run("deploy", "--dry-run")
    assert text.returncode == 0, text.output
    assert "gcpfargate deploy (dry run): nothing would change." in text.stdout
    assert "yes" not in text.stdout and "Plan (dry run" not in text.stderr
    planned = project.run("deploy", "--dry-run", "-o", "json").json
    assert [step for step in planned if planned[step].get("plan")] == []
    assert not any(planned[step]["changed"] for step in planned)


def test_dry_run_text_prints_the_json_plan_step_by_step(project: Project) -> None:
    prepare(project)
    planned = project.run("deploy", "--dry-run", "-o", "json")
    assert planned.returncode == 0, planned.output
    text = project.run("deploy", "--dry-run")
    assert text.returncode == 0, text.output
    assert (
        planned.json["bootstrap"]["key_id"] is None and planned.json["push-image"]["digest"] is None
    )
    for step, result in planned.json.items():
        assert f"{step}:" in text.stdout
        for change in result.get("plan", []):
            line = change["text"] if isinstance(change, dict) else change
            assert f"  - {line}" in text.stdout
    assert "changed" not in text.stdout.replace("(dry run, nothing changed)", "")


def test_run_local_command_and_env_overrides(project: Project) -> None:
    # ENTRYPOINT only: the override is the whole command, whichever way the wiring keeps a CMD.
    prepare(project, steps=('ENTRYPOINT ["/bin/sh", "-c"]',))
    deploy(project)
    result = project.run(
        "run-local", "--command", "'echo mode=$MODE; exit 4'", "--env", "MODE=backfill"
    )
    assert result.returncode == 4, result.output
    assert "mode=backfill" in result.stderr


def test_deploy_removes_the_local_tag_of_an_image_it_did_not_push(project: Project) -> None:
    import time

    import docker

    prepare(project)
    config = project.dir / "gcpfargate.toml"
    config.write_text(
        config.read_text().replace('tag = "v1"', "")
    )  # derived tags (a UTC timestamp here)
    first = deploy(project)
    time.sleep(1.1)  # the next derived tag differs
    second = deploy(project)
    assert second["push-image"]["changed"] is False and second["push-image"]["image"].startswith(
        f"{project.stack.registry}/{project.family}@"
    )
    time.sleep(1.1)
    # The no-op summary names the digest-pinned image once, not its digest a second time.
    text = project.run("deploy")
    assert text.returncode == 0, text.output
    digest = second["push-image"]["digest"]
    assert digest and text.stdout.count(digest) == 1, text.stdout
    assert f"changed no, {second['push-image']['image']}\n" in text.stdout, text.stdout
    engine = docker.DockerClient(base_url=project.stack.docker_host)
    # Identical busybox builds of other tests share the image id: look at this repository's names
    # only.
    repository = f"{project.stack.registry}/{project.family}:"
    names = {
        tag
        for image in engine.images.list(name=repository[:-1])
        for tag in image.tags
        if tag.startswith(repository)
    }
    assert names == {first["push-image"]["image"]}


@pytest.mark.parametrize("breakage", ["no-dockerfile", "no-engine", "bad-template"])
def test_cheap_local_checks_fail_before_anything_is_created(
    project: Project, breakage: str
) -> None:
    prepare(project)
    env: dict[str, str | None] = {}
    if breakage == "no-dockerfile":
        (project.dir / "Dockerfile").unlink()
        expected, code = "Dockerfile", 2
    elif breakage == "no-engine":
        env["DOCKER_HOST"] = "tcp://127.0.0.1:1"
        expected, code = "push-image failed", 1
    else:
        template = project.dir / "task-definition.json.j2"
        template.write_text(
            template.read_text().replace("{{ family | tojson }}", "{{ family | tojson }")
        )
        expected, code = "register-task failed", 2
    result = project.run("deploy", env=env)
    assert_one_clean_line(result, code, expected)
    assert project.stack.emulator.key_ids(project.email) == []
    # Asked by name, not by scanning a listing: ListSecrets and ListRoles page at 100 in the shared
    # moto.
    assert not project.exists("secret", project.secret_name)
    assert not project.exists("role", f"gcpfargate-{project.family}-execution")


def test_dry_run_after_a_commit_that_leaves_the_image_as_it_was(project: Project) -> None:
    prepare(project, tag="")  # the default tag: the git commit

    def git(*args: str) -> None:
        subprocess.run(
            ["git", "-c", "user.email=dev@example.com", "-c", "user.name=dev", *args],
            cwd=project.dir,
            check=True,
            capture_output=True,
            timeout=60,
        )

    (project.dir / ".gitignore").write_text(".home/\n")
    git("init", "-q")
    git("add", "-A")
    git("commit", "-qm", "first")
    first = deploy(project)
    assert first["push-image"]["changed"] is True

    # A commit outside the image: the real deploy would be a no-op, and the dry run says so.
    (project.dir / "NOTES.md").write_text("what changed, for people\n")
    git("add", "-A")
    git("commit", "-qm", "notes")
    text = project.run("deploy", "--dry-run")
    assert text.returncode == 0, text.output
    assert "gcpfargate deploy (dry run): nothing would change." in text.stdout, text.output
    assert "not checked yet" not in text.output and "is not in registry" not in text.output
    planned = project.run("deploy", "--dry-run", "-o", "json").json
    assert [step for step in planned if planned[step].get("plan")] == [], planned
    local = project.run("deploy", "--dry-run")  # the rehearsal's build left no local name behind
    assert local.returncode == 0 and "nothing would change" in local.stdout

    # A template change on top: the dry run shows the task-definition diff register-task would.
    template = project.dir / "task-definition.json.j2"
    template.write_text(template.read_text().replace('"memory": "512"', '"memory": "1024"'))
    changed = project.run("deploy", "--dry-run")
    assert changed.returncode == 0, changed.output
    assert '+  "memory": "1024",' in changed.stdout and "not checked yet" not in changed.output
    assert "push-image: nothing would change" in changed.stdout, changed.stdout

    again = deploy(project)  # and the real deploy agrees with the first dry run's push-image
    assert again["push-image"]["changed"] is False and again["register-task"]["changed"] is True


def test_run_local_build_runs_the_local_code_and_pushes_or_registers_nothing(
    project: Project,
) -> None:
    from tests.stack.images import write_busybox_context
    from tests.unit.helpers import key_json

    prepare(project)
    deploy(project)
    ecs, ecr = project.aws("ecs"), project.aws("ecr")

    def revisions() -> list[str]:
        return list(ecs.list_task_definitions(familyPrefix=project.family)["taskDefinitionArns"])

    def pushed() -> list[dict[str, str]]:
        return list(ecr.list_images(repositoryName=project.family)["imageIds"])

    before = (revisions(), pushed())
    # An edit not deployed: --build runs it, with the secret delivered as on Fargate.
    write_busybox_context(
        project.dir,
        ('CMD ["sh", "-c", "echo local edit ran; test -s \\"$GOOGLE_APPLICATION_CREDENTIALS\\""]',),
    )
    result = project.run("run-local", "--build")
    assert result.returncode == 0, result.output
    assert "local edit ran" in result.stderr and "job ran" not in result.stderr
    assert (revisions(), pushed()) == before  # nothing pushed, nothing registered
    # Without --build the registered revision still runs the deployed image.
    registered = project.run("run-local")
    assert registered.returncode == 0 and "job ran" in registered.stderr, registered.output

    # The same key guard as push-image: a key file in the context is refused before the build.
    (project.dir / "sa.json").write_bytes(key_json())
    refused = project.run("run-local", "--build")
    last = assert_one_clean_line(refused, 1, "refusing to run it locally", "sa.json")
    assert "--allow-embedded-credentials" not in last and "local edit ran" not in refused.stderr
    assert_one_clean_line(
        project.run("run-local", "--build", "--revision", "1"), 2, "exclude each other"
    )
