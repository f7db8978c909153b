"""rotate-key against the stack: the new key works, the old one is refused, nothing is orphaned."""

from __future__ import annotations

import json

import google.auth.exceptions
import google.auth.transport.requests
import pytest
from google.oauth2 import service_account

from tests.conftest import Project, assert_one_clean_line
from tests.stack.faultproxy import FaultProxy, Rule

SCOPES = ["https://www.googleapis.com/auth/cloud-platform"]


def _stage(project: Project, stage: str) -> dict:
    value = project.aws("secretsmanager").get_secret_value(SecretId=project.secret_name, VersionStage=stage)
    return json.loads(value["SecretString"])


def _token(info: dict) -> str:
    credentials = service_account.Credentials.from_service_account_info(info, scopes=SCOPES)
    credentials.refresh(google.auth.transport.requests.Request())
    return credentials.token


@pytest.fixture
def bootstrapped(project: Project) -> Project:
    result = project.run("bootstrap")
    assert result.returncode == 0, result.output
    return project


def test_rotation_switches_keys_and_disables_the_old_one(bootstrapped: Project) -> None:
    project = bootstrapped
    old = _stage(project, "AWSCURRENT")
    result = project.run("rotate-key", "--output", "json")
    assert result.returncode == 0, result.output
    out = result.json
    assert out["previous_key_ids"] == [old["private_key_id"]] and out["key_id"] != old["private_key_id"]
    new = _stage(project, "AWSCURRENT")
    assert new["private_key_id"] == out["key_id"]
    assert _stage(project, "AWSPREVIOUS")["private_key_id"] == old["private_key_id"]
    assert _token(new)
    with pytest.raises(google.auth.exceptions.RefreshError):
        _token(old)
    assert project.stack.emulator.key_state(project.email, old["private_key_id"]) == "disabled"
    # bootstrap now sees a live key and changes nothing.
    assert project.run("bootstrap", "--output", "json").json["changed"] is False


def test_delete_and_keep_previous(bootstrapped: Project) -> None:
    project = bootstrapped
    first = _stage(project, "AWSCURRENT")["private_key_id"]
    assert project.run("rotate-key", "--delete-previous").returncode == 0
    assert project.stack.emulator.key_state(project.email, first) == "deleted"
    second = _stage(project, "AWSCURRENT")["private_key_id"]
    assert project.run("rotate-key", "--keep-previous").returncode == 0
    assert project.stack.emulator.key_state(project.email, second) == "enabled"
    both = project.run("rotate-key", "--keep-previous", "--delete-previous")
    assert_one_clean_line(both, 2, "exclude each other")


def test_failure_after_key_creation_leaves_no_orphan(bootstrapped: Project) -> None:
    project = bootstrapped
    before = project.stack.emulator.key_ids(project.email)
    with FaultProxy(project.stack.moto_url) as proxy:
        proxy.add(Rule("PutSecretValue", status=500, code="InternalServiceError"))
        failed = project.run("rotate-key", env={"AWS_ENDPOINT_URL": proxy.url, "AWS_MAX_ATTEMPTS": "1"})
    assert_one_clean_line(failed, 1, "InternalServiceError")
    assert project.stack.emulator.key_ids(project.email) == before
    current = _stage(project, "AWSCURRENT")
    assert current["private_key_id"] == before[0] and _token(current)


def test_failed_verification_rolls_back(bootstrapped: Project) -> None:
    project = bootstrapped
    before = project.stack.emulator.key_ids(project.email)
    old_version = project.aws("secretsmanager").get_secret_value(SecretId=project.secret_name)["VersionId"]
    project.stack.emulator.refuse_grants(100)  # every verification attempt is refused
    try:
        result = project.run("rotate-key")
    finally:
        project.stack.emulator.clear_faults()
    assert_one_clean_line(result, 1, "was refused at", "Invalid JWT Signature")
    # No orphan, and the secret's AWSCURRENT is the old, working key again.
    assert project.stack.emulator.key_ids(project.email) == before
    # Ask for the stage explicitly: moto's stage-less read ignores UpdateSecretVersionStage (AWS does not).
    current = project.aws("secretsmanager").get_secret_value(SecretId=project.secret_name, VersionStage="AWSCURRENT")
    assert current["VersionId"] == old_version
    assert _token(json.loads(current["SecretString"]))


def test_no_verify_skips_the_token_exchange(bootstrapped: Project) -> None:
    project = bootstrapped
    project.stack.emulator.reset_stats()
    assert project.run("rotate-key", "--no-verify").returncode == 0
    assert project.stack.emulator.stats()["tokens_issued"] == 0


def test_prune_deletes_only_unreferenced_keys(bootstrapped: Project) -> None:
    from tests.unit.iam_client import create_keys

    project = bootstrapped
    original = _stage(project, "AWSCURRENT")["private_key_id"]
    stray = create_keys(project.stack, project.email, 2)
    # Without --yes (and no terminal to ask on) nothing is pruned.
    first = project.run("rotate-key", "--keep-previous", "--prune", "--output", "json")
    assert first.returncode == 0, first.output
    assert "not confirmed" in first.stderr
    assert set(stray) <= set(project.stack.emulator.key_ids(project.email))
    second = project.run("rotate-key", "--keep-previous", "--prune", "--yes", "--output", "json")
    assert second.returncode == 0, second.output
    # After two rotations AWSCURRENT and AWSPREVIOUS hold the two new keys; the original lost its stage.
    assert sorted(second.json["pruned_key_ids"]) == sorted([*stray, original])
    assert set(project.stack.emulator.key_ids(project.email)) == {first.json["key_id"], second.json["key_id"]}


def test_rotate_without_secret_says_bootstrap_first(project: Project) -> None:
    assert_one_clean_line(project.run("rotate-key"), 2, "does not exist", "gcpfargate bootstrap")
