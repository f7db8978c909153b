"""Race branches made deterministic (issue 14 item 4): the strict layer's forced collisions.

Two first runs at once (test_concurrency.py) reach the "already exists" branches only when the
processes happen to interleave. Here a private strict layer with only the `collisions.*` rules on
makes the first create of the secret, the execution role, the log group and the repository really
happen and then answer "already exists", as if another process had won the race by a hair. Every
branch must absorb it, the world must equal a clean deploy's, and the layer counts each collision.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.conftest import Project, record_figure
from tests.reliability.helpers import (
    check_invariants,
    differences,
    make_deployable,
    new_project,
    shape,
    unchanged_everywhere,
)
from tests.stack.local import ACCOUNT_ID, LocalStack
from tests.stack.strict import Settings, StrictLayer

FIGURES = "forced collisions"
RULES = (
    "collisions.create_secret",
    "collisions.create_role",
    "collisions.create_log_group",
    "collisions.create_repository",
)
OPERATIONS = {"CreateSecret", "CreateRole", "CreateLogGroup", "CreateRepository"}


@pytest.fixture
def colliding(stack: LocalStack) -> Iterator[StrictLayer]:
    with StrictLayer(stack.moto_direct_url, Settings(account_id=ACCOUNT_ID), only=RULES) as layer:
        yield layer


def test_every_create_loses_a_race_and_deploy_absorbs_it(
    project: Project, colliding: StrictLayer, tmp_path_factory: pytest.TempPathFactory
) -> None:
    make_deployable(project)
    result = project.run("deploy", "--output", "json", env={"AWS_ENDPOINT_URL": colliding.url})
    collisions = colliding.collisions
    for operation, count in collisions.items():
        record_figure(FIGURES, f"{operation} collisions", count)
    assert result.returncode == 0, result.output
    # Two log groups collide: the containers' awslogs group and the run history's.
    assert collisions == {**dict.fromkeys(OPERATIONS, 1), "CreateLogGroup": 2}, collisions
    assert check_invariants(project) == []
    assert (
        unchanged_everywhere(
            project.run("deploy", "--output", "json", env={"AWS_ENDPOINT_URL": colliding.url})
        )
        == []
    )
    assert colliding.collisions == collisions  # each name collides once: the rerun created nothing
    clean = new_project(project.stack, tmp_path_factory.mktemp("clean"))
    make_deployable(clean)
    assert clean.run("deploy").returncode == 0
    # The lost CreateSecret race leaves the winner's version as AWSPREVIOUS: the only allowed
    # difference.
    ours, theirs = shape(project), shape(clean)
    assert ours.pop("stages") == ["AWSCURRENT", "AWSPREVIOUS"] and theirs.pop("stages") == [
        "AWSCURRENT"
    ]
    # The log group's retention is the race winner's to set (core/logs.py leaves a group it did not
    # create alone); the layer plays the winner's create only, so only our side lacks it.
    for group in theirs["log_groups"]:
        assert group.pop("retentionInDays") == 30
    assert all("retentionInDays" not in group for group in ours["log_groups"])
    assert differences(ours, theirs) == []
    record_figure(FIGURES, "collisions absorbed", sum(collisions.values()))


def test_bootstrap_secret_collision_stores_the_minted_key(
    project: Project, colliding: StrictLayer
) -> None:
    """The secret collision on bootstrap alone: the key this run minted is the one stored, no
    orphan."""
    result = project.run("bootstrap", "--output", "json", env={"AWS_ENDPOINT_URL": colliding.url})
    assert result.returncode == 0, result.output
    assert colliding.collisions == {
        "CreateSecret": 1,
        "CreateRole": 1,
    }  # bootstrap makes the role too
    record_figure(FIGURES, "CreateSecret collisions")
    assert check_invariants(project) == []
    assert project.stack.emulator.key_ids(project.email) == [result.json["key_id"]]
