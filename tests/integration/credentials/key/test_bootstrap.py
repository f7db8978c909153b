"""bootstrap against the stack: moto over HTTP, the gRPC IAM emulator and its token endpoint."""

from __future__ import annotations

import json

import google.auth.transport.requests
import pytest
from google.oauth2 import service_account

from tests.conftest import ACCOUNT_ID, Project, assert_one_clean_line
from tests.integration.helpers import change_kinds, in_process, secret_policy
from tests.reliability.helpers import role_content, snapshot, write_mark, writes_since
from tests.reliability.leakscan import find_keys, needles
from tests.stack.faultproxy import FaultProxy, Rule

# Every command here runs as a user's first does: botocore's cache empty (tests/conftest.py).
pytestmark = pytest.mark.cold_botocore_cache

SCOPES = ["https://www.googleapis.com/auth/cloud-platform"]


def _secret_value(project: Project) -> dict:
    # Name the stage: moto's stage-less read ignores UpdateSecretVersionStage (AWS reads
    # AWSCURRENT), and a new key becomes AWSCURRENT by that call (compare-and-set, issue 13.7).
    value = project.aws("secretsmanager").get_secret_value(
        SecretId=project.secret_name, VersionStage="AWSCURRENT"
    )
    return json.loads(value["SecretString"])


def test_bootstrap_stores_a_working_key_and_a_role_that_can_read_it(project: Project) -> None:
    result = project.run("bootstrap", "--output", "json")
    assert result.returncode == 0, result.output
    out = result.json
    assert set(out) == {"service_account", "key_id", "secret_arn", "execution_role_arn", "changed"}
    assert out["changed"] is True
    assert out["service_account"] == project.email

    info = _secret_value(project)
    assert info["client_email"] == project.email
    assert info["private_key_id"] == out["key_id"]
    # The key really authenticates: google-auth exchanges a signed JWT at the emulator's token
    # endpoint.
    credentials = service_account.Credentials.from_service_account_info(info, scopes=SCOPES)
    credentials.refresh(google.auth.transport.requests.Request())
    assert credentials.token

    described = project.aws("secretsmanager").describe_secret(SecretId=project.secret_name)
    tags = {tag["Key"]: tag["Value"] for tag in described["Tags"]}
    assert tags["gcpfargate:key-id"] == out["key_id"]
    assert tags["gcpfargate:service-account"] == project.email

    iam = project.aws("iam")
    role_name = f"gcpfargate-{project.family}-execution"
    assert out["execution_role_arn"].endswith(f":role/{role_name}")
    trust = iam.get_role(RoleName=role_name)["Role"]["AssumeRolePolicyDocument"]
    assert trust["Statement"][0]["Principal"]["Service"] == "ecs-tasks.amazonaws.com"
    attached = [
        p["PolicyArn"]
        for p in iam.list_attached_role_policies(RoleName=role_name)["AttachedPolicies"]
    ]
    assert attached == ["arn:aws:iam::aws:policy/service-role/AmazonECSTaskExecutionRolePolicy"]
    inline = iam.get_role_policy(RoleName=role_name, PolicyName=secret_policy(project))[
        "PolicyDocument"
    ]
    assert inline["Statement"] == [
        {
            "Sid": "ReadGcpKeySecret",
            "Effect": "Allow",
            "Action": "secretsmanager:GetSecretValue",
            "Resource": out["secret_arn"],
        }
    ]


def test_second_bootstrap_changes_nothing(project: Project) -> None:
    first = project.run("bootstrap", "--output", "json")
    assert first.returncode == 0, first.output
    versions_before = project.aws("secretsmanager").list_secret_version_ids(
        SecretId=project.secret_name
    )["Versions"]
    project.stack.emulator.reset_stats()

    second = project.run(
        "bootstrap", "--output", "json", env={"GCPFARGATE_CALL_LOG": str(project.dir / "calls")}
    )
    assert second.returncode == 0, second.output
    assert second.json["changed"] is False
    assert second.json["key_id"] == first.json["key_id"]
    versions_after = project.aws("secretsmanager").list_secret_version_ids(
        SecretId=project.secret_name
    )["Versions"]
    assert len(versions_after) == len(versions_before)
    assert project.stack.emulator.key_ids(project.email) == [first.json["key_id"]]
    assert project.stack.emulator.stats()["mutating_calls"] == 0
    writes = [
        line for line in (project.dir / "calls").read_text().splitlines() if line.endswith(" write")
    ]
    assert writes == []


def test_new_key_forces_a_fresh_key(project: Project) -> None:
    first = project.run("bootstrap", "--output", "json").json
    second = project.run("bootstrap", "--new-key", "--output", "json")
    assert second.returncode == 0, second.output
    assert second.json["changed"] is True and second.json["key_id"] != first["key_id"]
    assert _secret_value(project)["private_key_id"] == second.json["key_id"]


def test_dry_run_changes_nothing(project: Project) -> None:
    # The stack's write journal (AWS writes, IAM emulator mutations, registry uploads, engine
    # events; tests/reliability/helpers.py): its cost does not grow with the worker's stack, as a
    # snapshot of every role and secret does. Without the strict layer, the snapshot.
    journal = project.stack.strict is not None
    mark = write_mark(project) if journal else None
    before = None if journal else snapshot(project)
    result = project.run("bootstrap", "--dry-run")
    assert result.returncode == 0, result.output
    assert "create a key" in result.stderr
    assert project.stack.emulator.key_ids(project.email) == []
    assert not project.exists("secret", project.secret_name)
    assert role_content(project.aws("iam"), f"gcpfargate-{project.family}-execution") is None
    if mark is not None:
        assert writes_since(project, mark) == []
    else:
        assert snapshot(project) == before


def test_store_failure_leaves_no_orphan_key_and_rerun_succeeds(project: Project) -> None:
    # The emulator's call counts are the worker's: count only this test's calls.
    project.stack.emulator.reset_stats()
    with FaultProxy(project.stack.moto_url) as proxy:
        proxy.add(Rule("CreateSecret", status=500, code="InternalServiceError", message="injected"))
        env = {"AWS_ENDPOINT_URL": proxy.url, "AWS_MAX_ATTEMPTS": "1"}
        failed = project.run("bootstrap", env=env)
        assert_one_clean_line(failed, 1, "create secret", "InternalServiceError")
        assert proxy.injected["secretsmanager.CreateSecret"] == 1
    # The key was created, then deleted before the error was reported.
    assert project.stack.emulator.key_ids(project.email) == []
    assert project.stack.emulator.stats()["calls"].get("DeleteServiceAccountKey") == 1

    rerun = project.run("bootstrap", "--output", "json")
    assert rerun.returncode == 0, rerun.output
    assert project.stack.emulator.key_ids(project.email) == [rerun.json["key_id"]]


def test_throttled_secrets_manager_calls_are_retried(project: Project) -> None:
    with FaultProxy(project.stack.moto_url) as proxy:
        proxy.add(Rule("CreateSecret", kind="throttle", times=2))
        proxy.add(Rule("DescribeSecret", kind="throttle", times=2))
        result = project.run("bootstrap", "--output", "json", env={"AWS_ENDPOINT_URL": proxy.url})
        assert result.returncode == 0, result.output
        assert proxy.injected["secretsmanager.CreateSecret"] == 2
        assert proxy.seen["secretsmanager.CreateSecret"] == 3
    assert _secret_value(project)["private_key_id"] == result.json["key_id"]


def test_key_limit_is_one_clear_line(project: Project) -> None:
    from tests.unit.helpers import create_keys

    create_keys(project.stack, project.email, 10)
    result = project.run("bootstrap")
    line = assert_one_clean_line(
        result, 1, "already holds 10 of 10 user-managed keys", "gcpfargate prune-keys"
    )  # issue 15: every at-the-limit message names it
    assert "days" in line
    assert len(project.stack.emulator.key_ids(project.email)) == 10


def test_missing_account_names_account_and_project(project: Project) -> None:
    result = project.run("bootstrap", env={"GCPFARGATE_GCP_SERVICE_ACCOUNT": "nobody-here"})
    assert_one_clean_line(
        result,
        1,
        f"nobody-here@{project.gcp_project}.iam.gserviceaccount.com",
        f"project {project.gcp_project}",
        "create_service_account",
    )


def test_missing_account_is_created_when_allowed(project: Project) -> None:
    env = {
        "GCPFARGATE_GCP_SERVICE_ACCOUNT": "fresh-account",
        "GCPFARGATE_GCP_CREATE_SERVICE_ACCOUNT": "true",
    }
    result = project.run("bootstrap", "--output", "json", env=env)
    assert result.returncode == 0, result.output
    assert (
        result.json["service_account"]
        == f"fresh-account@{project.gcp_project}.iam.gserviceaccount.com"
    )


def test_org_policy_refusal_has_its_own_message(project: Project) -> None:
    project.stack.emulator.deny_key_creation(project.gcp_project, True)
    result = project.run("bootstrap")
    assert_one_clean_line(
        result,
        1,
        "organization policy",
        "iam.disableServiceAccountKeyCreation",
        'set gcp.auth = "keyless"',
    )  # issue 19: the way out that needs no exception


def test_malformed_config_is_one_line_exit_2(project: Project) -> None:
    (project.dir / "gcpfargate.toml").write_text("[gcp\nproject = 'x'\n")
    assert_one_clean_line(project.run("bootstrap"), 2, "cannot parse", "gcpfargate.toml")


def test_unknown_key_is_named(project: Project) -> None:
    with (project.dir / "gcpfargate.toml").open("a") as config:
        config.write('\n[secret]\nnmae = "x"\n')
    assert_one_clean_line(
        project.run("bootstrap"), 2, "unknown key secret.nmae", "did you mean name"
    )


def test_missing_config_reports_all_required_keys_together(project: Project) -> None:
    (project.dir / "gcpfargate.toml").unlink()
    line = assert_one_clean_line(
        project.run("bootstrap"), 2, "gcp.project", "gcp.service_account", "task.family"
    )
    assert line.count("GCPFARGATE_") == 3
    missing = project.run("--config", "nope.toml", "bootstrap")
    assert_one_clean_line(missing, 2, "nope.toml", "does not exist")


def given_role(project: Project, prefix: str) -> dict[str, str]:
    """An execution role the user made (ECS may assume it; it may read nothing), given by ARN."""
    trust = json.dumps(
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
    )
    role = project.aws("iam").create_role(
        RoleName=f"{prefix}-{project.family}", AssumeRolePolicyDocument=trust
    )
    return {"GCPFARGATE_TASK_EXECUTION_ROLE_ARN": role["Role"]["Arn"]}


def test_given_role_without_permission_warns_and_grant_fixes(project: Project) -> None:
    env = given_role(project, "own")
    warned = project.run("bootstrap", env=env)
    assert warned.returncode == 0, warned.output
    assert "may not read the secret" in warned.stderr and "--grant" in warned.stderr
    granted = project.run("bootstrap", "--grant", env=env)
    assert granted.returncode == 0, granted.output
    assert "may not read" not in granted.stderr
    again = project.run("bootstrap", env=env)
    assert "may not read" not in again.stderr


def test_no_key_material_in_any_output_or_file(project: Project) -> None:
    outputs = [
        project.run("bootstrap", "--debug", "--verbose"),
        project.run("bootstrap", "--debug", "--new-key"),
        project.run("bootstrap", "--output", "json", "--debug"),
    ]
    # Every line of every key minted for the account (both bootstraps' keys, the replaced one too),
    # in every form the leak scanner decodes (tests/reliability/leakscan.py).
    minted = [key for key in project.stack.emulator.minted_keys() if key.email == project.email]
    assert len(minted) == 2
    lines = needles(minted)
    for result in outputs:
        assert result.returncode == 0, result.output
        assert "PRIVATE KEY" not in result.output
        assert find_keys(result.output.encode(), lines) == set()
    for path in project.dir.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert b"PRIVATE KEY" not in data and find_keys(data, lines) == set(), path


def test_foreign_secret_is_not_overwritten(project: Project) -> None:
    sm = project.aws("secretsmanager")
    sm.create_secret(Name=project.secret_name, SecretString="db-password-of-another-team")
    result = project.run("bootstrap")
    assert_one_clean_line(result, 2, "was not created by gcpfargate", "refusing to overwrite")
    assert "db-password" not in result.output
    assert (
        sm.get_secret_value(SecretId=project.secret_name)["SecretString"]
        == "db-password-of-another-team"
    )
    assert project.stack.emulator.key_ids(project.email) == []


def test_a_role_that_cannot_read_the_secret_names_grant_and_strict_fails(project: Project) -> None:
    env = given_role(project, "byo")
    warned = project.run("bootstrap", env=env)
    assert warned.returncode == 0, warned.output
    assert "warning: ECS tasks will fail to start" in warned.stderr
    assert "`gcpfargate bootstrap --grant`" in warned.stderr
    assert (
        "changed: yes" in warned.stdout and "True" not in warned.stdout
    )  # yes/no, never Python's True
    strict = project.run("bootstrap", "--strict", "-o", "json", env=env)
    assert strict.returncode == 1, strict.output
    assert "1 warning with --strict" in strict.stderr
    assert strict.json["changed"] is False  # stdout keeps the one result object
    clean = project.run("--strict", "bootstrap", "--grant", env=env)
    assert clean.returncode == 0, clean.output


def test_a_preview_records_exactly_the_changes_an_apply_makes(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    from gcpfargate.credentials.key.bootstrap import bootstrap

    preview = in_process(project, monkeypatch, apply=False)
    planned = bootstrap(preview)
    assert project.stack.emulator.key_ids(project.email) == []
    applying = in_process(project, monkeypatch, apply=True)
    applied = bootstrap(applying)
    role = f"gcpfargate-{project.family}-execution"
    assert (
        change_kinds(preview.plan.changes)
        == change_kinds(applying.plan.changes)
        == [
            ("create", "service-account key", project.email),
            ("create", "IAM role", role),
        ]
    )
    # The preview's result lists them (the same text as its plan lines); the apply's lists none.
    assert planned.plan == preview.plan.changes and applied.plan == []
    assert [change.text for change in planned.plan] == [
        f"create a key for {project.email} and store it in secret {project.secret_name} (the "
        "secret does not exist)",
        f"create or update execution role arn:aws:iam::{ACCOUNT_ID}:role/{role}",
    ]

    # --new-key on the same state: one new key, previewed and applied alike.
    preview = in_process(project, monkeypatch, apply=False)
    bootstrap(preview, new_key=True)
    applying = in_process(project, monkeypatch, apply=True)
    bootstrap(applying, new_key=True)
    assert (
        change_kinds(preview.plan.changes)
        == change_kinds(applying.plan.changes)
        == [("create", "service-account key", project.email)]
    )

    # Nothing left to do: neither records a change.
    preview = in_process(project, monkeypatch, apply=False)
    assert bootstrap(preview).changed is False and preview.plan.changes == []
    applying = in_process(project, monkeypatch, apply=True)
    assert bootstrap(applying).changed is False and applying.plan.changes == []
