"""New keys that Google has not propagated yet (issue 12 item 3): the token endpoint answers
invalid_grant "Invalid JWT Signature." for 60 s or more. rotate-key retries that answer with backoff
for over two minutes and never deletes a key because time ran out."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.conftest import Project, gets_token
from tests.integration.helpers import current


def test_rotation_with_a_45_second_propagation_delay(bootstrapped: Project) -> None:
    """The real clock: the emulator refuses the new key for 45 s; the default backoff waits it
    out."""
    project = bootstrapped
    emulator = project.stack.emulator
    before = current(project)["private_key_id"]
    emulator.set_propagation_delay(45, email=project.email)
    try:
        result = project.run("rotate-key", "--output", "json", timeout=400)
    finally:
        emulator.set_propagation_delay(0, email=project.email)
    assert result.returncode == 0, result.output
    assert result.json["verified"] is True
    now = current(project)
    assert now["private_key_id"] == result.json["key_id"] != before and gets_token(now)
    everything = emulator.key_ids(project.email, include_deleted=True)
    assert everything == emulator.key_ids(project.email), "a key was deleted"
    assert emulator.key_state(project.email, before) == "enabled"


def test_running_out_of_time_keeps_the_key(
    bootstrapped: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A short clock (injected) against a long delay: the key stays current and nothing is deleted
    or disabled; the warning says it is not verified yet and what to run later."""
    from gcpfargate.config import load_settings
    from gcpfargate.core.context import Context
    from gcpfargate.credentials.key.rotate import rotate_key

    project = bootstrapped
    emulator = project.stack.emulator
    for name in [k for k in os.environ if k.startswith(("AWS_", "GCPFARGATE_"))]:
        monkeypatch.delenv(name)
    for name, value in project.env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(project.dir)
    before = current(project)["private_key_id"]
    warnings: list[str] = []

    class Collect:
        def step(self, title: str) -> object:
            import contextlib

            return contextlib.nullcontext()

        def info(self, message: str) -> None: ...

        def warn(self, message: str) -> None:
            warnings.append(message)

        def detail(self, message: str) -> None: ...

    emulator.set_propagation_delay(600, email=project.email)
    try:
        ctx = Context(
            settings=load_settings(str(Path(project.dir) / "gcpfargate.toml")), reporter=Collect()
        )
        result = rotate_key(ctx, verify_schedule=(0.2, 0.2, 0.2))
    finally:
        emulator.set_propagation_delay(0, email=project.email)
    assert result.verified is False
    assert current(project)["private_key_id"] == result.key_id != before
    assert emulator.key_ids(project.email, include_deleted=True) == emulator.key_ids(project.email)
    assert {emulator.key_state(project.email, k) for k in emulator.key_ids(project.email)} == {
        "enabled"
    }
    assert any("not verified yet" in w and "gcpfargate doctor" in w for w in warnings), warnings
