"""Two gcpfargate processes on the same configuration at the same moment (two CI jobs, two people).

Both are started together with Popen; whatever the interleaving, the world must end consistent:
one AWSCURRENT key that authenticates, no enabled key that no staged secret version references,
and the latest task-definition revision taking its key from the secret. Both processes must
succeed: every step is idempotent, so losing a race is not an error.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import Project, Result, record_figure
from tests.reliability.helpers import (
    check_invariants,
    current_key,
    make_deployable,
    unchanged_everywhere,
)

FIGURES = "concurrency"


def race(project: Project, *args: str, copies: int = 2) -> list[Result]:
    """Start `copies` identical commands at once and wait for all of them."""
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "gcpfargate", *args],
            cwd=project.dir,
            env=project.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(copies)
    ]
    results = []
    for process in processes:
        stdout, stderr = process.communicate(timeout=300)
        results.append(Result(process.returncode, stdout, stderr))
    record_figure(FIGURES, "processes raced", copies)
    record_figure(FIGURES, "processes succeeded", sum(result.returncode == 0 for result in results))
    return results


def assert_all_succeeded(results: list[Result]) -> None:
    failures = [
        result.stderr.strip().splitlines()[-1:] for result in results if result.returncode != 0
    ]
    assert not failures, failures


@pytest.mark.parametrize("first", ["bootstrap", "deploy"])
def test_two_first_runs_at_once(project: Project, first: str) -> None:
    """The first run creates everything (secret, role, repository, log group): the likeliest
    collisions."""
    make_deployable(project)
    results = race(project, first, "--output", "json")
    assert_all_succeeded(results)
    boot = [result.json if first == "bootstrap" else result.json["bootstrap"] for result in results]
    # Both minted a key: they collided on creating the secret, and the loser stored into it.
    record_figure(FIGURES, "secret-creation collisions", len({b["key_id"] for b in boot}) - 1)
    assert check_invariants(project) == []
    # Whoever lost the race, a rerun finds nothing left to do.
    followup = project.run("deploy", "--output", "json")
    assert followup.returncode == 0, followup.output
    assert unchanged_everywhere(project.run("deploy", "--output", "json")) == []
    assert check_invariants(project) == []
    record_figure(FIGURES, "races consistent")


def test_two_rotations_at_once(project: Project) -> None:
    make_deployable(project)
    assert project.run("deploy").returncode == 0
    before = current_key(project)["private_key_id"]
    results = race(project, "rotate-key", "--output", "json")
    assert_all_succeeded(results)
    assert check_invariants(project) == []
    new_ids = {result.json["key_id"] for result in results}
    assert len(new_ids) == 2 and current_key(project)["private_key_id"] in new_ids
    assert project.stack.emulator.key_state(project.email, before) == "disabled"
    record_figure(FIGURES, "races consistent")


def test_four_rotations_at_once(project: Project) -> None:
    """Issue 13.7: writers of one secret are serialised (compare-and-set on AWSCURRENT), so any
    number of concurrent rotations ends with no orphan: two enabled keys (current, previous), the
    rest disabled."""
    make_deployable(project)
    assert project.run("deploy").returncode == 0
    before = current_key(project)["private_key_id"]
    results = race(project, "rotate-key", "--output", "json", copies=4)
    assert_all_succeeded(results)
    assert check_invariants(project) == []
    new_ids = {result.json["key_id"] for result in results}
    assert len(new_ids) == 4 and current_key(project)["private_key_id"] in new_ids
    emulator = project.stack.emulator
    states = {
        key_id: emulator.key_state(project.email, key_id)
        for key_id in emulator.key_ids(project.email)
    }
    # Current and previous enabled; the rest disabled (a run that started late may already have
    # deleted the first key, which an earlier run disabled and recorded).
    assert sorted(states.values()).count("enabled") == 2 and set(states.values()) <= {
        "enabled",
        "disabled",
    }, states
    assert states.get(before, "deleted") in ("disabled", "deleted")
    record_figure(FIGURES, "concurrent rotations", 4)
    record_figure(FIGURES, "races consistent")
