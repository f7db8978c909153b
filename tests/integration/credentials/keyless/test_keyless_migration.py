"""Switching a key-mode deployment to keyless (issue 19): the keys key mode left are offered for
retirement, never touched silently. Off a terminal one line says what is left and names
`bootstrap --retire-keys`; on a terminal the user is asked; `--retire-keys` agrees up front. Also:
an org-policy refusal of a key names keyless mode, and following that advice works."""

from __future__ import annotations

import contextlib
import sys
from typing import Any

from tests.conftest import Project, assert_one_clean_line
from tests.integration.helpers import Terminal

KEYLESS = {"GCPFARGATE_GCP_AUTH": "keyless"}


def key_mode(project: Project) -> str:
    """A key-mode deployment's GCP side: one key of the account, stored in the secret. Its id."""
    booted = project.run("bootstrap", "--output", "json")
    assert booted.returncode == 0, booted.output
    return str(booted.json["key_id"])


def secret(project: Project) -> dict[str, Any]:
    return dict(project.aws("secretsmanager").describe_secret(SecretId=project.secret_name))


def test_org_policy_refusal_names_keyless_and_keyless_then_works(project: Project) -> None:
    emulator = project.stack.emulator
    emulator.deny_key_creation(
        project.gcp_project, constraint="constraints/iam.managed.disableServiceAccountKeyCreation"
    )
    try:
        refused = project.run("bootstrap")
        assert_one_clean_line(
            refused,
            1,
            "iam.managed.disableServiceAccountKeyCreation",
            'set gcp.auth = "keyless"',
            "GCPFARGATE_GCP_AUTH=keyless",
        )
    finally:
        emulator.reset_knobs()
    # Key creation is allowed again, so an empty key list proves keyless mode minted none (under the
    # policy it could not have, whatever it tried).
    switched = project.run("bootstrap", env=KEYLESS)
    assert switched.returncode == 0, switched.output
    assert emulator.key_ids(project.email) == []


def test_off_a_terminal_the_keys_are_named_and_left_then_retire_keys_retires_them(
    project: Project,
) -> None:
    key_id = key_mode(project)
    emulator = project.stack.emulator
    switched = project.run("bootstrap", "--output", "json", env=KEYLESS)
    assert switched.returncode == 0, switched.output
    assert "retired_keys" not in switched.json
    note = [line for line in switched.stderr.splitlines() if "key mode left" in line]
    assert note == [
        f"note: key mode left 1 key(s) of {project.email} ({key_id}) held by secret "
        f"{project.secret_name}; "
        "nothing was done to them. Run `gcpfargate bootstrap --retire-keys` to delete them and "
        "schedule the secret's deletion"
    ], switched.stderr
    assert (
        emulator.key_ids(project.email) == [key_id]
        and emulator.key_state(project.email, key_id) == "enabled"
    )
    assert "DeletedDate" not in secret(project)

    assert_one_clean_line(
        project.run("bootstrap", "--retire-keys"), 2, "--retire-keys applies in keyless mode only"
    )
    assert emulator.key_ids(project.email) == [key_id]

    dry = project.run("bootstrap", "--retire-keys", "--dry-run", "--output", "json", env=KEYLESS)
    assert dry.returncode == 0, dry.output
    assert any(change["text"].startswith("retire 1 key(s)") for change in dry.json["plan"]), (
        dry.json
    )
    assert emulator.key_ids(project.email) == [key_id]

    retired = project.run("bootstrap", "--retire-keys", "--output", "json", env=KEYLESS)
    assert retired.returncode == 0, retired.output
    assert retired.json["retired_keys"] == [key_id] and retired.json["changed"] is True
    assert emulator.key_ids(project.email) == []
    assert "DeletedDate" in secret(project)  # restorable for 7 days; no task can start with the key

    emulator.reset_stats()
    again = project.run("bootstrap", "--retire-keys", "--output", "json", env=KEYLESS)
    assert again.returncode == 0, again.output
    assert again.json["changed"] is False and "key mode left" not in again.stderr
    assert emulator.stats()["mutating_calls"] == 0
    doctor = project.run("doctor", "--output", "json", env=KEYLESS)
    check = next(c for c in doctor.json["checks"] if c["name"] == "no key material")
    assert check["status"] == "OK", check


def test_not_offered_while_a_family_still_reads_the_secret_in_key_mode(project: Project) -> None:
    key_id = key_mode(project)
    arn = secret(project)["ARN"]
    other = f"{project.family}-other"
    project.aws("secretsmanager").tag_resource(
        SecretId=arn, Tags=[{"Key": "gcpfargate:families", "Value": other}]
    )
    strict = project.stack.strict
    with strict.without("consistency.pass_role") if strict else contextlib.nullcontext():
        project.aws("ecs").register_task_definition(
            family=other,
            executionRoleArn=f"arn:aws:iam::123456789012:role/gcpfargate-{project.family}-execution",
            containerDefinitions=[
                {
                    "name": "job",
                    "image": "busybox",
                    "essential": True,
                    "memory": 128,
                    "secrets": [{"name": "GCP_CREDENTIALS_JSON", "valueFrom": arn}],
                }
            ],
        )
    result = project.run("bootstrap", "--retire-keys", env=KEYLESS)
    assert result.returncode == 0, result.output
    assert (
        f"not retiring them while {other} still take the key from the secret" in result.stderr
        and "switch them to keyless, then run `gcpfargate bootstrap --retire-keys`" in result.stderr
    ), result.stderr
    assert project.stack.emulator.key_ids(project.email) == [key_id]
    assert "DeletedDate" not in secret(project)


def test_on_a_terminal_the_user_is_asked(project: Project) -> None:
    key_id = key_mode(project)
    env = {k: v for k, v in {**project.env, **KEYLESS, "TERM": "xterm"}.items() if k != "CI"}
    question = "Delete the keys and schedule the secret's deletion?"

    declined = Terminal([sys.executable, "-m", "gcpfargate", "bootstrap"], project.dir, env)
    declined.answer(question, "")  # Enter: the default is no
    code, rest = declined.finish()
    assert code == 0, rest
    assert "nothing was done to them" in rest.replace("\r\n", " ").replace("\n", " "), rest
    assert project.stack.emulator.key_ids(project.email) == [key_id]

    agreed = Terminal([sys.executable, "-m", "gcpfargate", "bootstrap"], project.dir, env)
    agreed.answer(question, "y")
    code, rest = agreed.finish()
    assert code == 0, rest
    assert project.stack.emulator.key_ids(project.email) == []
    assert "DeletedDate" in secret(project)


def test_deploy_offers_it_after_the_keyless_revision_is_registered(
    project: Project,
    base_image: str,
) -> None:
    from tests.integration.helpers import latest, prepare

    key_id = key_mode(project)
    prepare(project)
    project.extra_env.update({**KEYLESS, "GCPFARGATE_IMAGE_SHIM_BASE_IMAGE": base_image})
    deployed = project.run("deploy", "--output", "json")
    assert deployed.returncode == 0, deployed.output
    assert "retired_keys" not in deployed.json["bootstrap"]
    assert "nothing was done to them" in deployed.stderr and "--retire-keys" in deployed.stderr, (
        deployed.stderr
    )
    assert project.stack.emulator.key_ids(project.email) == [key_id]

    retired = project.run("deploy", "--retire-keys", "--output", "json")
    assert retired.returncode == 0, retired.output
    assert retired.json["bootstrap"]["retired_keys"] == [key_id]
    assert project.stack.emulator.key_ids(project.email) == []
    assert "DeletedDate" in secret(project)
    assert (
        "secrets" not in latest(project)["containerDefinitions"][0]
    )  # the revision that runs needs no key
