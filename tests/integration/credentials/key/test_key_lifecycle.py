"""The key lifecycle against the stack (issue 15; issue 12 items 3, 4, 10, 13; issue 13 item 6).

"A container started before rotation N" is modelled by keeping the key JSON it would hold in its
file in this test process's memory and exchanging it at the emulator's token endpoint, exactly as
google-auth in the container would when its cached token expires.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.conftest import Project, assert_one_clean_line, gets_token
from tests.integration.helpers import age, current, own
from tests.unit.helpers import create_keys


def user_keys(project: Project) -> list[str]:
    return project.stack.emulator.key_ids(project.email)


def test_a_task_started_before_rotation_n_works_until_rotation_n_plus_1(
    bootstrapped: Project,
) -> None:
    project = bootstrapped
    before_first = current(project)  # the file of a task started before rotation 1
    first = project.run("rotate-key", "--output", "json")
    assert first.returncode == 0, first.output
    assert gets_token(before_first), "a task started before rotation 1 lost access at rotation 1"
    before_second = current(project)
    second = project.run("rotate-key", "--output", "json")
    assert second.returncode == 0, second.output
    assert not gets_token(before_first)  # rotation 2 disabled the oldest key
    assert second.json["disabled_key_ids"] == [before_first["private_key_id"]]
    assert (
        f"Disabling key {before_first['private_key_id'][:12]}… (superseded by two rotations)"
        in second.stderr
    )
    assert gets_token(before_second) and gets_token(current(project))
    third = project.run("rotate-key", "--output", "json")
    assert third.returncode == 0, third.output
    # Rotation 3 deletes what rotation 2 disabled.
    assert third.json["deleted_key_ids"] == [before_first["private_key_id"]]
    assert (
        project.stack.emulator.key_state(project.email, before_first["private_key_id"]) == "deleted"
    )


def test_twelve_rotations_leave_at_most_three_keys(bootstrapped: Project) -> None:
    project = bootstrapped
    for number in range(12):
        rotated = project.run("rotate-key")
        assert rotated.returncode == 0, f"rotation {number + 1}: {rotated.output}"
        assert len(user_keys(project)) <= 3, f"after rotation {number + 1}: {user_keys(project)}"
    states = sorted(project.stack.emulator.key_state(project.email, k) for k in user_keys(project))
    assert states == ["disabled", "enabled", "enabled"]
    assert gets_token(current(project)) and gets_token(current(project, "AWSPREVIOUS"))


def test_full_account_recovers_with_prune_keys(bootstrapped: Project) -> None:
    project = bootstrapped
    stray = create_keys(project.stack, project.email, 9)
    own(project, stray)
    age(project, stray)
    assert len(user_keys(project)) == 10
    full = project.run("rotate-key")
    assert_one_clean_line(full, 1, "10 of 10", "gcpfargate prune-keys")
    # No terminal and no --yes: exit 2, nothing deleted.
    refused = project.run("prune-keys")
    assert_one_clean_line(refused, 2, "not confirmed")
    assert len(user_keys(project)) == 10
    listed = project.run("prune-keys", "--dry-run", "--output", "json")
    assert listed.returncode == 0, listed.output
    would = sorted(k["key_id"] for k in listed.json["keys"] if k["action"] == "delete")
    assert would == sorted(stray) and listed.json["deleted"] == []
    for entry in listed.json["keys"]:
        assert (
            entry["state"] == "enabled"
            and entry["age_hours"] >= 47
            and "no labelled version" in entry["why"]
        )
        assert entry["key_id"] in listed.stderr  # the listing a human sees
    pruned = project.run("prune-keys", "--yes", "--output", "json")
    assert pruned.returncode == 0, pruned.output
    assert sorted(pruned.json["deleted"]) == would
    rotated = project.run("rotate-key")
    assert rotated.returncode == 0, rotated.output
    assert len(user_keys(project)) == 2


def test_prune_keys_keeps_young_keys_and_referenced_ones(bootstrapped: Project) -> None:
    project = bootstrapped
    young = create_keys(project.stack, project.email, 1)
    own(project, young)
    age(project, user_keys(project))  # the secret's key is old too, but referenced
    age(project, young, hours=1)
    listed = project.run("prune-keys", "--dry-run", "--output", "json")
    assert [(k["key_id"], k["action"]) for k in listed.json["keys"]] == [
        (young[0], "keep (younger than 24 h)")
    ]
    pruned = project.run("prune-keys", "--yes")
    assert pruned.returncode == 0, pruned.output
    # The text form names what happened, never a Python dict or list repr.
    assert "deleted: none" in pruned.stdout and f"kept: {young[0]}" in pruned.stdout
    assert "{" not in pruned.stdout and "[" not in pruned.stdout, pruned.stdout
    assert young[0] in user_keys(project) and current(project)["private_key_id"] in user_keys(
        project
    )


def test_rotate_prune_runs_before_the_room_check(bootstrapped: Project) -> None:
    project = bootstrapped
    stray = create_keys(project.stack, project.email, 9)
    own(project, stray)
    age(project, stray)
    # The preview lists what pruning deletes, first, as changes; it asks nothing and deletes none.
    planned = project.run("rotate-key", "--prune", "--dry-run", "--output", "json")
    assert planned.returncode == 0, planned.output
    changes = planned.json["plan"]
    assert [(c["action"], c["resource"]) for c in changes] == [
        *[("delete", "service-account key")] * len(stray),
        ("create", "service-account key"),
        ("update", "service-account keys"),
    ]
    assert sorted(c["name"] for c in changes[: len(stray)]) == sorted(stray)
    assert changes[0]["text"].startswith(f"delete key {changes[0]['name']} (")
    assert len(user_keys(project)) == 10
    rotated = project.run("rotate-key", "--prune", "--yes", "--output", "json")
    assert rotated.returncode == 0, rotated.output
    assert sorted(rotated.json["pruned_key_ids"]) == sorted(stray)


def test_key_limit_answers_name_prune_keys(bootstrapped: Project) -> None:
    """The emulator's two key-limit answers (FAILED_PRECONDITION, RESOURCE_EXHAUSTED) past the room
    check."""
    project = bootstrapped
    emulator = project.stack.emulator
    for code in ("FAILED_PRECONDITION", "RESOURCE_EXHAUSTED"):
        emulator.set_key_limit(1, code)
        try:
            result = project.run("bootstrap", "--new-key")
        finally:
            emulator.reset_knobs()
        assert_one_clean_line(result, 1, "gcpfargate prune-keys")


def test_bootstrap_new_key_follows_the_lifecycle(bootstrapped: Project) -> None:
    """Issue 13.6: bootstrap, bootstrap --new-key, rotate-key leave no live key outside the
    secret."""
    project = bootstrapped
    first = current(project)["private_key_id"]
    assert project.run("bootstrap", "--new-key").returncode == 0
    assert project.stack.emulator.key_state(project.email, first) == "enabled"  # AWSPREVIOUS now
    assert project.run("rotate-key").returncode == 0
    assert project.stack.emulator.key_state(project.email, first) == "disabled"
    doctor = project.run("doctor", "--output", "json")
    check = next(
        c for c in doctor.json["checks"] if c["name"] == "every live key is in a secret version"
    )
    assert check["status"] == "OK", check
    loose = create_keys(project.stack, project.email, 1)[0]
    own(project, [loose])
    doctor = project.run("doctor", "--output", "json")
    check = next(
        c for c in doctor.json["checks"] if c["name"] == "every live key is in a secret version"
    )
    assert check["status"] == "WARN" and loose[:12] in check["detail"], check


def test_expired_key_is_not_live(bootstrapped: Project) -> None:
    """Issue 12.4: doctor WARNs within 7 days of expiry and FAILs past it; bootstrap replaces it."""
    project = bootstrapped
    emulator = project.stack.emulator
    key_id = current(project)["private_key_id"]

    def key_check() -> dict[str, Any]:
        out = project.run("doctor", "--output", "json").json
        return next(c for c in out["checks"] if c["name"] == "key exists and is enabled in GCP")

    emulator.set_key_valid_before(project.email, key_id, datetime.now(UTC) + timedelta(days=3))
    soon = key_check()
    assert soon["status"] == "WARN" and "within 7 days" in soon["detail"], soon
    emulator.set_key_valid_before(project.email, key_id, datetime.now(UTC) - timedelta(minutes=1))
    past = key_check()
    assert past["status"] == "FAIL" and "expired" in past["detail"], past
    replaced = project.run("bootstrap", "--output", "json")
    assert replaced.returncode == 0, replaced.output
    assert replaced.json["changed"] is True and replaced.json["key_id"] != key_id
    assert gets_token(current(project))


def test_tag_agrees_with_awscurrent(bootstrapped: Project) -> None:
    """Issue 14's bug: a failed TagResource left gcpfargate:key-id naming the old key. Retried now;
    a tag that still disagrees is repaired by the next run, and doctor compares it with the
    value."""
    from tests.stack.faultproxy import FaultProxy, Rule

    project = bootstrapped
    sm = project.aws("secretsmanager")

    def tag() -> str:
        tags = sm.describe_secret(SecretId=project.secret_name)["Tags"]
        return next(t["Value"] for t in tags if t["Key"] == "gcpfargate:key-id")

    with FaultProxy(project.stack.moto_url) as proxy:
        proxy.add(Rule("TagResource", status=500, code="InternalFailure", times=1))
        rotated = project.run(
            "rotate-key", env={"AWS_ENDPOINT_URL": proxy.url, "AWS_MAX_ATTEMPTS": "1"}
        )
        assert proxy.injected["secretsmanager.TagResource"] == 1
    assert rotated.returncode == 0, rotated.output
    assert tag() == current(project)["private_key_id"]
    by_tag = project.run("doctor", "--no-get-secret", "--output", "json").json
    check = next(c for c in by_tag["checks"] if c["name"] == "key exists and is enabled in GCP")
    assert check["status"] == "OK", check  # judged by the tag: the current key, not the old one
    # A tag that disagrees (say an older gcpfargate wrote it): doctor WARNs, bootstrap repairs it.
    sm.tag_resource(
        SecretId=project.secret_name, Tags=[{"Key": "gcpfargate:key-id", "Value": "0" * 40}]
    )
    doctor = project.run("doctor", "--output", "json").json
    check = next(c for c in doctor["checks"] if c["name"] == "secret holds a key of the account")
    assert check["status"] == "WARN" and "tag" in check["detail"], check
    assert project.run("bootstrap").returncode == 0
    assert tag() == current(project)["private_key_id"]


@pytest.mark.parametrize(
    ("setup", "fragments"),
    [
        (lambda emu, p: emu.exhaust_key_quota(1, project=p), ("quota",)),
        (
            lambda emu, p: emu.disable_service(p),
            ("not enabled", "gcloud services enable iam.googleapis.com"),
        ),
        (
            lambda emu, p: emu.enclose_in_perimeter(p),
            ("VPC Service Controls perimeter refused", "not a missing IAM role", "ingress rule"),
        ),
        (
            lambda emu, p: emu.deny_key_creation(p),
            ("constraints/iam.disableServiceAccountKeyCreation",),
        ),
        (
            lambda emu, p: emu.deny_key_creation(
                p, constraint="constraints/iam.managed.disableServiceAccountKeyCreation"
            ),
            ("constraints/iam.managed.disableServiceAccountKeyCreation",),
        ),
    ],
)
def test_google_refusals_are_one_clear_line(
    project: Project, setup: Any, fragments: tuple[str, ...]
) -> None:
    """Issue 12.13: quota, API not enabled, and the two org-policy constraints."""
    setup(project.stack.emulator, project.gcp_project)
    try:
        result = project.run("bootstrap")
    finally:
        project.stack.emulator.reset_knobs()
    line = assert_one_clean_line(result, 1, *fragments)
    assert "missing roles" not in line and "roles/iam" not in line


def test_rotation_lists_and_rolls_what_reads_the_secret(project: Project) -> None:
    """Secrets are tagged with the families that read them; rotate-key lists each family and service
    and rolls the services (issue 15)."""
    from tests.integration.helpers import add_service, deploy, prepare

    prepare(project)
    arn = deploy(project)["register-task"]["task_definition_arn"]
    cluster = add_service(project, arn)
    tags = project.aws("secretsmanager").describe_secret(SecretId=project.secret_name)["Tags"]
    assert {"Key": "gcpfargate:families", "Value": project.family} in tags
    rotated = project.run("rotate-key", "--output", "json")
    assert rotated.returncode == 0, rotated.output
    label = f"service web ({project.family}, cluster {cluster})"
    assert rotated.json["readers"] == [label] and rotated.json["rolled"] == [label]
    assert f"reads {project.secret_name}: {label}" in rotated.stderr
