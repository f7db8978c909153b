"""GCPFARGATE_GCP_TRANSPORT=rest (issue 12.13) against the emulator's REST face: the same commands,
the same refusals, over HTTPS/JSON instead of gRPC."""

from __future__ import annotations

import pytest

from tests.conftest import Project, assert_one_clean_line, gets_token
from tests.integration.helpers import current
from tests.stack.iam.admin_rest import mount_rest


@pytest.fixture
def rest(project: Project) -> dict[str, str]:
    mount_rest(project.stack.emulator)
    return {
        "GCPFARGATE_GCP_TRANSPORT": "rest",
        "IAM_EMULATOR_HOST": project.stack.emulator.http_url.removeprefix("http://"),
    }


def test_bootstrap_and_rotate_over_rest(project: Project, rest: dict[str, str]) -> None:
    emulator = project.stack.emulator
    emulator.reset_stats()
    booted = project.run("bootstrap", "--output", "json", env=rest)
    assert booted.returncode == 0, booted.output
    rotated = project.run("rotate-key", "--output", "json", env=rest)
    assert rotated.returncode == 0, rotated.output
    assert current(project)["private_key_id"] == rotated.json["key_id"] and gets_token(
        current(project)
    )
    assert emulator.stats()["calls"]["CreateServiceAccountKey"] == 2


def test_org_policy_refusal_over_rest(project: Project, rest: dict[str, str]) -> None:
    project.stack.emulator.deny_key_creation(project.gcp_project)
    try:
        result = project.run("bootstrap", env=rest)
    finally:
        project.stack.emulator.reset_knobs()
    assert_one_clean_line(result, 1, "constraints/iam.disableServiceAccountKeyCreation")
