"""Interrupts after the key exists (issue 13 items 3 and 4): Ctrl-C, SIGTERM and SIGHUP while an AWS
answer is pending. The write has landed; the answer has not. gcpfargate must find out what landed
before deleting anything: a key that became AWSCURRENT is kept, one that did not is deleted, and in
every case the secret's current key works and no live key is left outside the secret."""

from __future__ import annotations

import signal
import subprocess
import sys

import pytest

from tests.conftest import Project, gets_token, record_figure
from tests.integration.helpers import current
from tests.reliability.helpers import check_invariants
from tests.stack.faultproxy import FaultProxy, Rule

EXIT = {signal.SIGINT: 130, signal.SIGTERM: 143, signal.SIGHUP: 129}
FIGURES = "signals"


def _interrupt(
    project: Project, operation: str, sig: signal.Signals, *args: str
) -> tuple[int, str]:
    with FaultProxy(project.stack.moto_url) as proxy:
        proxy.add(Rule(operation, kind="hold", hold_s=6, times=1))
        process = subprocess.Popen(
            [sys.executable, "-m", "gcpfargate", *args],
            cwd=project.dir,
            env={**project.env, "AWS_ENDPOINT_URL": proxy.url},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert proxy.held.wait(120), "the held call never came"
            process.send_signal(sig)
            record_figure(FIGURES, "signals sent")
            _, stderr = process.communicate(timeout=120)
        finally:
            if process.poll() is None:
                process.kill()
    return process.returncode, stderr


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_signal_while_the_new_version_is_stored(bootstrapped: Project, sig: signal.Signals) -> None:
    """PutSecretValue landed (under the run's pending label), its answer is pending: the new key is
    not current, so it is deleted; the old key stays current and working."""
    project = bootstrapped
    before = current(project)["private_key_id"]
    code, stderr = _interrupt(project, "PutSecretValue", sig, "rotate-key")
    assert code == EXIT[sig], stderr
    assert "Traceback" not in stderr
    assert current(project)["private_key_id"] == before and gets_token(current(project))
    assert project.stack.emulator.key_ids(project.email) == [before]
    assert check_invariants(project) == []
    record_figure(FIGURES, "signals survived")


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_signal_while_the_new_key_becomes_current(
    bootstrapped: Project, sig: signal.Signals
) -> None:
    """The move of AWSCURRENT landed, its answer is pending: the new key is current, so it is kept
    (deleting it would break every task start), and the previous key stays enabled."""
    project = bootstrapped
    before = current(project)["private_key_id"]
    code, stderr = _interrupt(project, "UpdateSecretVersionStage", sig, "rotate-key")
    assert code == EXIT[sig], stderr
    now = current(project)
    assert now["private_key_id"] != before and gets_token(now)
    assert current(project, "AWSPREVIOUS")["private_key_id"] == before
    assert project.stack.emulator.key_state(project.email, before) == "enabled"
    assert check_invariants(project) == []
    record_figure(FIGURES, "signals survived")


def test_sigterm_during_bootstrap_new_key(bootstrapped: Project) -> None:
    project = bootstrapped
    before = current(project)["private_key_id"]
    code, stderr = _interrupt(project, "PutSecretValue", signal.SIGTERM, "bootstrap", "--new-key")
    assert code == 143, stderr
    assert current(project)["private_key_id"] == before
    assert check_invariants(project) == []
    record_figure(FIGURES, "signals survived")


@pytest.mark.parametrize(
    ("args", "sig"),
    [
        (("rotate-key",), signal.SIGINT),
        (("rotate-key",), signal.SIGHUP),
        (("bootstrap", "--new-key"), signal.SIGINT),
        (("bootstrap", "--new-key"), signal.SIGTERM),
    ],
)
def test_signal_while_googles_answer_to_create_key_is_in_flight(
    bootstrapped: Project, args: tuple[str, ...], sig: signal.Signals
) -> None:
    """The key exists in Google, its answer has not arrived: the run finds the key it minted (not
    listed before, created since) and deletes it, so no live key is left that no secret holds."""
    project = bootstrapped
    before = current(project)["private_key_id"]
    held = project.stack.emulator.hold_key_answer(8)
    process = subprocess.Popen(
        [sys.executable, "-m", "gcpfargate", *args],
        cwd=project.dir,
        env=project.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert held.wait(120), "CreateServiceAccountKey never came"
        process.send_signal(sig)
        record_figure(FIGURES, "signals sent")
        _, stderr = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == EXIT[sig], stderr
    assert "Traceback" not in stderr
    minted = [k for k in project.stack.emulator.key_ids(project.email, True) if k != before]
    assert len(minted) == 1, minted
    assert project.stack.emulator.key_state(project.email, minted[0]) == "deleted"
    assert f"deleted key {minted[0]}" in stderr
    assert project.stack.emulator.key_ids(project.email) == [before]
    assert current(project)["private_key_id"] == before and gets_token(current(project))
    assert check_invariants(project) == []
    record_figure(FIGURES, "signals survived")
