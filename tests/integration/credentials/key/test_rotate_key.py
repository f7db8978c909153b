"""rotate-key against the stack: the new key works, the previous one keeps working until the next
rotation, nothing is orphaned. The lifecycle over many rotations is in test_key_lifecycle.py."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import google.auth.exceptions
import google.auth.transport.requests
import pytest
from google.oauth2 import service_account

from tests.conftest import Project, assert_one_clean_line
from tests.integration.helpers import change_kinds, in_process
from tests.stack.faultproxy import FaultProxy, Rule

SCOPES = ["https://www.googleapis.com/auth/cloud-platform"]


def _stage(project: Project, stage: str) -> dict:
    value = project.aws("secretsmanager").get_secret_value(
        SecretId=project.secret_name, VersionStage=stage
    )
    return json.loads(value["SecretString"])


def _token(info: dict) -> str:
    credentials = service_account.Credentials.from_service_account_info(info, scopes=SCOPES)
    credentials.refresh(google.auth.transport.requests.Request())
    return credentials.token


def test_rotation_switches_keys_and_keeps_the_previous_one_working(bootstrapped: Project) -> None:
    """Issue 15 changed this: the previous key stays enabled (a running task holds it in its
    file)."""
    project = bootstrapped
    old = _stage(project, "AWSCURRENT")
    result = project.run("rotate-key", "--output", "json")
    assert result.returncode == 0, result.output
    out = result.json
    assert (
        out["previous_key_ids"] == [old["private_key_id"]]
        and out["key_id"] != old["private_key_id"]
    )
    assert out["previous_action"] == "kept" and out["verified"] is True
    new = _stage(project, "AWSCURRENT")
    assert new["private_key_id"] == out["key_id"]
    assert _stage(project, "AWSPREVIOUS")["private_key_id"] == old["private_key_id"]
    assert _token(new) and _token(old)
    assert project.stack.emulator.key_state(project.email, old["private_key_id"]) == "enabled"
    # bootstrap now sees a live key and changes nothing.
    assert project.run("bootstrap", "--output", "json").json["changed"] is False


def test_revoke_and_delete_previous(bootstrapped: Project) -> None:
    project = bootstrapped
    first = _stage(project, "AWSCURRENT")
    revoked = project.run("rotate-key", "--revoke-previous", "--output", "json")
    assert revoked.returncode == 0, revoked.output
    assert revoked.json["previous_action"] == "disabled"
    assert project.stack.emulator.key_state(project.email, first["private_key_id"]) == "disabled"
    with pytest.raises(google.auth.exceptions.RefreshError):
        _token(first)
    assert _token(_stage(project, "AWSCURRENT"))
    second = _stage(project, "AWSCURRENT")["private_key_id"]
    assert project.run("rotate-key", "--delete-previous").returncode == 0
    assert project.stack.emulator.key_state(project.email, second) == "deleted"
    # --keep-previous is the default now, still accepted by old scripts.
    assert project.run("rotate-key", "--keep-previous").returncode == 0
    both = project.run("rotate-key", "--revoke-previous", "--delete-previous")
    assert_one_clean_line(both, 2, "exclude each other")


def test_failure_after_key_creation_leaves_no_orphan(bootstrapped: Project) -> None:
    project = bootstrapped
    before = project.stack.emulator.key_ids(project.email)
    with FaultProxy(project.stack.moto_url) as proxy:
        proxy.add(Rule("PutSecretValue", status=500, code="InternalServiceError"))
        failed = project.run(
            "rotate-key", env={"AWS_ENDPOINT_URL": proxy.url, "AWS_MAX_ATTEMPTS": "1"}
        )
    assert_one_clean_line(failed, 1, "InternalServiceError")
    assert project.stack.emulator.key_ids(project.email) == before
    current = _stage(project, "AWSCURRENT")
    assert current["private_key_id"] == before[0] and _token(current)


def test_final_refusal_rolls_back(bootstrapped: Project) -> None:
    """A refusal that is not "not yet" (here: the account is not found) is final: roll back at once.
    ("Invalid JWT Signature." is retried for minutes instead: see test_key_lifecycle.py.)"""
    project = bootstrapped
    before = project.stack.emulator.key_ids(project.email)
    old_version = project.aws("secretsmanager").get_secret_value(SecretId=project.secret_name)[
        "VersionId"
    ]
    project.stack.emulator.refuse_grants(100, "Invalid grant: account not found")
    try:
        result = project.run("rotate-key")
    finally:
        project.stack.emulator.clear_faults()
    assert_one_clean_line(result, 1, "was refused at", "account not found")
    # No orphan, and the secret's AWSCURRENT is the old, working key again.
    assert project.stack.emulator.key_ids(project.email) == before
    # Ask for the stage explicitly: moto's stage-less read ignores UpdateSecretVersionStage (AWS
    # does not).
    current = project.aws("secretsmanager").get_secret_value(
        SecretId=project.secret_name, VersionStage="AWSCURRENT"
    )
    assert current["VersionId"] == old_version
    assert _token(json.loads(current["SecretString"]))
    # The key-id tag names the key AWSCURRENT holds again (doctor --no-get-secret trusts it; issue
    # 14).
    tags = project.aws("secretsmanager").describe_secret(SecretId=project.secret_name)["Tags"]
    assert {t["Key"]: t["Value"] for t in tags}["gcpfargate:key-id"] == json.loads(
        current["SecretString"]
    )["private_key_id"]


def test_no_verify_skips_the_token_exchange(bootstrapped: Project) -> None:
    project = bootstrapped
    project.stack.emulator.reset_stats()
    assert project.run("rotate-key", "--no-verify").returncode == 0
    assert project.stack.emulator.stats()["tokens_issued"] == 0


def test_prune_deletes_only_unreferenced_keys_a_day_old(bootstrapped: Project) -> None:
    from tests.integration.helpers import own
    from tests.unit.helpers import create_keys

    project = bootstrapped
    emulator = project.stack.emulator
    original = _stage(project, "AWSCURRENT")["private_key_id"]
    stray = create_keys(project.stack, project.email, 3)
    own(project, stray)  # keys a dead run recorded: foreign ones are never pruned (test_sharing.py)
    for key_id in stray[:2]:
        emulator.set_key_valid_after(project.email, key_id, datetime.now(UTC) - timedelta(hours=25))
    # Without --yes (and no terminal to ask on) --prune refuses before changing anything.
    refused = project.run("rotate-key", "--prune")
    assert_one_clean_line(refused, 2, "--yes")
    assert set(stray) <= set(emulator.key_ids(project.email))
    pruned = project.run("rotate-key", "--prune", "--yes", "--output", "json")
    assert pruned.returncode == 0, pruned.output
    # The two day-old strays go; the young one stays (disabled: it is unreferenced), the original is
    # AWSPREVIOUS now and stays enabled.
    assert sorted(pruned.json["pruned_key_ids"]) == sorted(stray[:2])
    assert emulator.key_state(project.email, stray[2]) == "disabled"
    assert emulator.key_state(project.email, original) == "enabled"
    assert set(emulator.key_ids(project.email)) == {original, stray[2], pruned.json["key_id"]}


def test_rotate_without_secret_says_bootstrap_first(project: Project) -> None:
    assert_one_clean_line(project.run("rotate-key"), 2, "does not exist", "gcpfargate bootstrap")


def test_a_preview_records_exactly_the_changes_an_apply_makes(
    bootstrapped: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    from gcpfargate.credentials.key.rotate import rotate_key

    project = bootstrapped
    previous = _stage(project, "AWSCURRENT")["private_key_id"]
    preview = in_process(project, monkeypatch, apply=False)
    planned = rotate_key(preview, previous="revoke")
    assert planned.key_id is None and _stage(project, "AWSCURRENT")["private_key_id"] == previous
    applying = in_process(project, monkeypatch, apply=True)
    applied = rotate_key(applying, previous="revoke")
    assert (
        change_kinds(preview.plan.changes)
        == change_kinds(applying.plan.changes)
        == [
            ("create", "service-account key", project.email),
            ("update", "service-account key", previous),
            ("update", "service-account keys", project.email),
        ]
    )
    assert [change.text for change in planned.plan] == [
        f"create a key for {project.email} and store it as AWSCURRENT of {project.secret_name}",
        f"revoke previous key {previous}",
        "disable keys held by no labelled version; delete keys the last rotation disabled",
    ]
    assert applied.plan == [] and applied.key_id is not None
    assert project.stack.emulator.key_state(project.email, previous) == "disabled"
