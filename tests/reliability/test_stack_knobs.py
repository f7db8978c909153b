"""Product paths the lenient stack never ran (issue 14 item 7), run with the stack's real-world
knobs: new keys refused a few times before they are accepted (propagation), a caller without the
permission (the hint), and IAM roles that Scheduler cannot use for a few seconds (the retry).
"""

from __future__ import annotations

from tests.conftest import Project, assert_one_clean_line, record_figure
from tests.integration.helpers import prepare_schedule as prepare
from tests.reliability.helpers import check_invariants, current_key
from tests.stack.local import ACCOUNT_ID
from tests.stack.strict import Settings, StrictLayer

FIGURES = "stack knobs"


def test_new_key_refused_a_few_times_then_accepted(project: Project) -> None:
    """Google accepts a new key only after it propagated: the first token requests get
    invalid_grant. rotate-key verifies the new key before retiring the old one, so it must wait the
    refusals out (bootstrap waits for its new key the same way:
    tests/integration/deploy/test_deploy.py)."""
    command = "rotate-key"
    assert project.run("bootstrap").returncode == 0
    emulator = project.stack.emulator
    refused_before = int(emulator.stats()["rejected_grants"])
    emulator.set_propagation_delay(0, refusals=3, email=project.email)
    try:
        result = project.run(command, "--output", "json")
    finally:
        emulator.set_propagation_delay(0, 0, email=project.email)
    assert result.returncode == 0, result.output
    assert current_key(project)["private_key_id"] == result.json["key_id"]
    assert check_invariants(project) == []
    refused = int(emulator.stats()["rejected_grants"]) - refused_before
    record_figure(FIGURES, "propagation refusals absorbed", refused)
    assert refused >= 3, emulator.stats()  # the verification met the refusals and waited them out


def test_permission_denied_caller_gets_the_hint(project: Project) -> None:
    emulator = project.stack.emulator
    emulator.deny_permission("iam.serviceAccountKeys.create", project=project.gcp_project)
    try:
        result = project.run("bootstrap")
    finally:
        emulator.deny_permission(
            "iam.serviceAccountKeys.create", project=project.gcp_project, deny=False
        )
    assert_one_clean_line(result, 1, "roles/iam.serviceAccountKeyAdmin")
    assert emulator.key_ids(project.email) == []
    assert not [
        s
        for s in project.aws("secretsmanager", truth=True).list_secrets()["SecretList"]
        if s["Name"] == project.secret_name
    ]
    record_figure(FIGURES, "permission-denied hints shown")


def test_schedule_waits_for_a_new_role(project: Project) -> None:
    """Scheduler refuses a role IAM made seconds ago; `schedule` retries until the role is
    usable."""
    prepare(project)
    rules = ("consistency.track_iam_changes", "consistency.scheduler")
    settings = Settings(consistency_delay=3.0, account_id=ACCOUNT_ID)
    with StrictLayer(project.stack.moto_direct_url, settings, only=rules) as layer:
        result = project.run(
            "schedule", "--rate", "1 hour", "--output", "json", env={"AWS_ENDPOINT_URL": layer.url}
        )
        refusals = layer.fired["consistency.scheduler"]
    record_figure(FIGURES, "scheduler role refusals retried", refusals)
    assert result.returncode == 0, result.output
    assert refusals >= 1, "the role was usable at once: the retry did not run"
    assert result.json["state"] == "ENABLED"
