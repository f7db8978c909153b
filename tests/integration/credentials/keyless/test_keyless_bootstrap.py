"""bootstrap in keyless mode: task role, workload identity pool and AWS provider, the binding.

Against moto (IAM) and the emulator's workload identity REST API and gRPC IAM policy methods."""

from __future__ import annotations

import json

import pytest
import requests

from tests.conftest import ACCOUNT_ID, Project, assert_one_clean_line
from tests.integration.helpers import change_kinds, in_process

KEYLESS = {"GCPFARGATE_GCP_AUTH": "keyless"}
USER = "roles/iam.workloadIdentityUser"


def bootstrap(project: Project, *args: str, env: dict[str, str | None] | None = None):  # type: ignore[no-untyped-def]
    return project.run("bootstrap", "--output", "json", *args, env={**KEYLESS, **(env or {})})


def pools_url(project: Project) -> str:
    return (
        f"{project.stack.emulator.http_url}/v1/projects/{project.gcp_project}/locations/global/"
        "workloadIdentityPools/gcpfargate"
    )


def test_keyless_bootstrap_creates_role_pool_provider_and_binding_and_no_key(
    project: Project,
) -> None:
    before = project.stack.emulator.stats()["keys_minted"]
    result = bootstrap(project)
    assert result.returncode == 0, result.output
    out = result.json
    number = project.stack.emulator.project_number(project.gcp_project)
    role = f"gcpfargate-{project.family}-task"
    assert out == {
        "auth": "keyless",
        "service_account": project.email,
        "task_role_arn": f"arn:aws:iam::{ACCOUNT_ID}:role/{role}",
        "execution_role_arn": (
            f"arn:aws:iam::{ACCOUNT_ID}:role/gcpfargate-{project.family}-execution"
        ),
        "pool": f"projects/{number}/locations/global/workloadIdentityPools/gcpfargate",
        "provider": f"aws-{ACCOUNT_ID}",
        "principal": (
            f"principalSet://iam.googleapis.com/projects/{number}/locations/global/workloadIdentityPools/"
            f"gcpfargate/attribute.aws_role/arn:aws:sts::{ACCOUNT_ID}:assumed-role/{role}"
        ),
        "changed": True,
    }
    assert project.stack.emulator.stats()["keys_minted"] == before
    assert project.stack.emulator.iam_policy_members(project.email, USER) == [out["principal"]]
    trust = project.aws("iam").get_role(RoleName=role)["Role"]["AssumeRolePolicyDocument"]
    assert trust["Statement"] == [
        {
            "Effect": "Allow",
            "Principal": {"Service": "ecs-tasks.amazonaws.com"},
            "Action": "sts:AssumeRole",
            "Condition": {"StringEquals": {"aws:SourceAccount": ACCOUNT_ID}},
        }
    ]
    provider = requests.get(pools_url(project) + f"/providers/aws-{ACCOUNT_ID}", timeout=10).json()
    assert provider["aws"] == {"accountId": ACCOUNT_ID} and provider["state"] == "ACTIVE"
    assert provider["attributeCondition"] == (
        f"attribute.aws_role.startsWith('arn:aws:sts::{ACCOUNT_ID}:assumed-role/gcpfargate-') && "
        "attribute.aws_role.endsWith('-task')"
    )
    # No secret, no secret policy on the execution role.
    assert not project.exists("secret", project.secret_name)
    policies = project.aws("iam").list_role_policies(
        RoleName=f"gcpfargate-{project.family}-execution"
    )
    assert policies["PolicyNames"] == []


def test_rerun_writes_nothing_and_dry_run_only_reads(project: Project) -> None:
    dry = bootstrap(project, "--dry-run", env={"GCPFARGATE_CALL_LOG": str(project.dir / "dry")})
    assert dry.returncode == 0, dry.output
    assert dry.json["changed"] is True and any(
        "create workload identity pool" in change["text"] for change in dry.json["plan"]
    )
    assert [
        line for line in (project.dir / "dry").read_text().splitlines() if line.endswith(" write")
    ] == []
    assert requests.get(pools_url(project), timeout=10).status_code == 404

    assert bootstrap(project).returncode == 0
    project.stack.emulator.reset_stats()
    again = bootstrap(project, env={"GCPFARGATE_CALL_LOG": str(project.dir / "calls")})
    assert again.returncode == 0, again.output
    assert again.json["changed"] is False
    assert project.stack.emulator.stats()["mutating_calls"] == 0
    assert [
        line for line in (project.dir / "calls").read_text().splitlines() if line.endswith(" write")
    ] == []


def test_soft_deleted_pool_and_edited_provider_are_restored(project: Project) -> None:
    assert bootstrap(project).returncode == 0
    provider_url = pools_url(project) + f"/providers/aws-{ACCOUNT_ID}"
    edited = requests.patch(
        provider_url,
        params={"updateMask": "attributeCondition"},
        timeout=10,
        json={"attributeCondition": "attribute.aws_role.startsWith('arn:aws:sts::999999999999:')"},
    )
    assert edited.status_code == 200, edited.text
    # The edit took: bootstrap below has something to restore.
    assert "999999999999" in requests.get(provider_url, timeout=10).json()["attributeCondition"]
    assert requests.delete(pools_url(project), timeout=10).status_code == 200
    result = bootstrap(project)
    assert result.returncode == 0, result.output
    pool = requests.get(pools_url(project), timeout=10).json()
    assert pool["state"] == "ACTIVE"
    assert "999999999999" not in requests.get(provider_url, timeout=10).json()["attributeCondition"]


def test_a_refused_pool_write_is_one_clear_line(project: Project) -> None:
    project.stack.emulator.deny_permission(
        "iam.workloadIdentityPools.create", project=project.gcp_project
    )
    try:
        result = bootstrap(project)
    finally:
        project.stack.emulator.deny_permission(
            "iam.workloadIdentityPools.create", project=project.gcp_project, deny=False
        )
    assert_one_clean_line(
        result,
        1,  # an operation failed (SPEC: exit codes)
        "create workload identity pool gcpfargate",
        "PERMISSION_DENIED",
        "roles/iam.workloadIdentityPoolAdmin",
    )
    assert json.dumps(result.output).count("PRIVATE KEY") == 0


def test_a_lost_etag_race_is_retried_and_keeps_the_other_writers_binding(project: Project) -> None:
    """Another writer changes the account's policy between bootstrap's read and its write: Google
    refuses the stale etag (ABORTED), bootstrap reads again and writes, keeping the other
    binding."""
    emulator = project.stack.emulator
    other = "user:another-team@example.com"
    emulator.race_policy_writes(1, other)
    try:
        result = bootstrap(project)
        raced = emulator.keyless.policies.races == 0  # the race happened after bootstrap's read
    finally:
        emulator.reset_knobs()
    assert raced
    assert result.returncode == 0, result.output
    with emulator.state.lock:
        bindings = {
            b.role: list(b.members)
            for b in emulator.keyless.policies.policies[project.email].bindings
        }
    assert bindings.get("roles/viewer") == [other], bindings  # the other writer's change survived
    assert any(
        m.startswith("principalSet:") for m in bindings.get("roles/iam.workloadIdentityUser", [])
    ), bindings


def test_a_disabled_google_api_is_refused_before_any_write_and_doctor_names_the_fix(
    project: Project,
) -> None:
    emulator = project.stack.emulator
    emulator.set_service_enabled(project.gcp_project, "sts.googleapis.com", False)
    emulator.reset_stats()
    result = bootstrap(project)
    line = assert_one_clean_line(result, 1, "sts.googleapis.com is not enabled", "SERVICE_DISABLED")
    assert (
        f"Enable it: gcloud services enable sts.googleapis.com --project {project.gcp_project}"
        in result.stderr
    ), result.output
    assert "iamcredentials" not in line
    assert emulator.stats()["mutating_calls"] == 0
    assert not project.exists("role", f"gcpfargate-{project.family}-task")

    emulator.set_service_enabled(project.gcp_project, "sts.googleapis.com", True)
    assert bootstrap(project).returncode == 0
    emulator.set_service_enabled(project.gcp_project, "iamcredentials.googleapis.com", False)
    try:
        doctor = project.run("doctor", "--output", "json", env=KEYLESS)
    finally:
        emulator.set_service_enabled(project.gcp_project, "iamcredentials.googleapis.com", True)
    check = next(
        c for c in doctor.json["checks"] if c["name"] == "Google APIs for keyless are enabled"
    )
    assert check["status"] == "FAIL", check
    assert check["detail"] == (
        f"iamcredentials.googleapis.com is not enabled in project {project.gcp_project}: every "
        "task's token exchange would fail with SERVICE_DISABLED; gcloud services enable "
        f"iamcredentials.googleapis.com --project {project.gcp_project}"
    )


def test_a_preview_records_exactly_the_changes_an_apply_makes(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    from gcpfargate.credentials.keyless.bootstrap import bootstrap_keyless

    preview = in_process(project, monkeypatch, apply=False, env=KEYLESS)
    planned = bootstrap_keyless(preview)
    assert requests.get(pools_url(project), timeout=10).status_code == 404
    applying = in_process(project, monkeypatch, apply=True, env=KEYLESS)
    bootstrap_keyless(applying)
    assert (
        change_kinds(preview.plan.changes)
        == change_kinds(applying.plan.changes)
        == [
            ("create", "IAM role", f"gcpfargate-{project.family}-task"),
            ("create", "IAM role", f"gcpfargate-{project.family}-execution"),
            ("create", "workload identity pool", "gcpfargate"),
            ("create", "workload identity provider", f"aws-{ACCOUNT_ID}"),
            ("update", "service account IAM policy", project.email),
        ]
    )
    assert planned.plan == preview.plan.changes

    preview = in_process(project, monkeypatch, apply=False, env=KEYLESS)
    applying = in_process(project, monkeypatch, apply=True, env=KEYLESS)
    assert bootstrap_keyless(preview).plan == [] and preview.plan.changes == []
    assert bootstrap_keyless(applying).changed is False and applying.plan.changes == []
