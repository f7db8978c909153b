"""The fault matrix: every mutating AWS and GCP call of `deploy` and `rotate-key` fails in turn.

The list of calls is not written down here: a clean run with GCPFARGATE_CALL_LOG discovers it, so a
call added to the product joins the matrix by itself. AWS faults travel the real HTTP path (the
fault proxy in front of moto, AWS_MAX_ATTEMPTS=1 so a 500 is not retried away); GCP faults come
from the IAM emulator, both "before" (nothing happened) and, where a lost response matters,
"after" (the call took effect but its answer was lost).

After every fault: the command succeeded (the fault was absorbed) or failed with one clean line
naming the step; the invariants hold (tests/reliability/helpers.py); a rerun without the fault
converges to the state a clean run leaves; and, for deploy, a third run changes nothing.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Project, Result, assert_one_clean_line, record_figure
from tests.reliability.helpers import (
    FIGURES,
    Fault,
    PrivateDockerd,
    check_invariants,
    faults_of,
    forget_shared_log_policy,
    injected,
    make_deployable,
    new_project,
    run_fault,
    run_logged,
    session_processes,
    shape,
    unchanged_everywhere,
)
from tests.stack.faultproxy import FaultProxy, Rule
from tests.stack.local import LocalStack
from tests.stack.tcpproxy import BLOB_UPLOAD, MANIFEST_PUT, Reset, TcpProxy


@pytest.fixture(scope="module")
def clean(stack: LocalStack, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One clean deploy and rotate-key: their calls, and the state each leaves (what reruns must
    reach)."""
    project = new_project(stack, tmp_path_factory.mktemp("clean"))
    make_deployable(project)
    forget_shared_log_policy(project)
    deployed, deploy_calls = run_logged(project, "deploy")
    assert deployed.returncode == 0, deployed.output
    deploy_state = shape(project)
    warm_up(project)
    rotated, rotate_calls = run_logged(project, "rotate-key")
    assert rotated.returncode == 0, rotated.output
    return {
        "deploy": faults_of("deploy", deploy_calls),
        "rotate-key": faults_of("rotate-key", rotate_calls),
        "deploy-state": deploy_state,
        "rotate-state": key_shape(project),
        "calls": deploy_calls,
    }


def warm_up(project: Project) -> None:
    """Two rotations: from then on each rotation also disables the key two rotations old and deletes
    the one the last rotation disabled (the steady state of the key lifecycle, issue 15), so the
    matrix covers those calls too."""
    for _ in range(2):
        rotated = project.run("rotate-key")
        assert rotated.returncode == 0, rotated.output


def key_shape(project: Project) -> dict[str, Any]:
    """The key side of `shape`: key states, staged versions and the secret's settings and tags."""
    world = shape(project)
    return {part: world.get(part) for part in ("keys", "stages", "secret")}


def test_discovery_found_the_mutating_calls(clean: dict[str, Any]) -> None:
    deploy_ops = {fault.call.operation for fault in clean["deploy"]}
    rotate_ops = {fault.call.operation for fault in clean["rotate-key"]}
    # The calls every first deploy must make; discovery may find more, never fewer.
    assert {
        "CreateServiceAccountKey",
        "CreateSecret",
        "CreateRole",
        "CreateRepository",
        "RegisterTaskDefinition",
    } <= deploy_ops, deploy_ops
    # Issue 15's lifecycle: the new key is stored under a pending label and made AWSCURRENT by
    # compare-and-set (UpdateSecretVersionStage); the key two rotations old is disabled, the one the
    # last rotation disabled deleted.
    assert {
        "CreateServiceAccountKey",
        "PutSecretValue",
        "UpdateSecretVersionStage",
        "DisableServiceAccountKey",
        "DeleteServiceAccountKey",
    } <= rotate_ops, rotate_ops


# The matrices run as SHARDS slices, each its own xdist group (tests/conftest.py), so they spread
# over the workers; each worker discovers the calls once (the module's `clean`). A slice is taken
# from the faults sorted by label, so every worker cuts the same matrix the same way.
SHARDS = 3


def shard_of(faults: list[Fault], shard: int) -> list[Fault]:
    mine = sorted(faults, key=lambda fault: fault.label)[shard::SHARDS]
    assert mine, f"shard {shard} of {len(faults)} faults is empty"
    return mine


@pytest.mark.parametrize("shard", range(SHARDS))
def test_deploy_survives_each_failing_call(
    stack: LocalStack, proxy: FaultProxy, clean: dict[str, Any], tmp_path: Path, shard: int
) -> None:
    broken: dict[str, list[str]] = {}
    for index, fault in enumerate(shard_of(clean["deploy"], shard)):
        project = new_project(stack, tmp_path / f"fault-{index}")
        make_deployable(project)
        _, problems = run_fault(fault, project, stack, proxy)
        rerun = project.run("deploy")
        if _rerun_converged(project, rerun, problems):
            third = project.run("deploy", "--output", "json")
            changed = unchanged_everywhere(third)
            if changed:
                problems.append(f"third run still changed {changed}")
            state = shape(project)
            if state != clean["deploy-state"]:
                problems.append(
                    f"rerun state {state} differs from a clean deploy's {clean['deploy-state']}"
                )
        if problems:
            broken[fault.label] = problems
        else:
            record_figure(FIGURES, "faults survived")
    assert not broken, "\n".join(f"{label}: {problems}" for label, problems in broken.items())


def _rerun_converged(project: Project, rerun: Any, problems: list[str]) -> bool:
    """Record why the rerun after a fault did not succeed or left a broken invariant; True when it
    ran."""
    if rerun.returncode != 0:
        problems.append(f"rerun failed: {rerun.stderr.strip().splitlines()[-1:]}")
        return False
    problems += [f"after rerun: {p}" for p in check_invariants(project)]
    return True


@pytest.mark.parametrize("shard", range(SHARDS))
def test_rotate_key_survives_each_failing_call(
    stack: LocalStack, proxy: FaultProxy, clean: dict[str, Any], tmp_path: Path, shard: int
) -> None:
    broken: dict[str, list[str]] = {}
    for index, fault in enumerate(shard_of(clean["rotate-key"], shard)):
        project = new_project(stack, tmp_path / f"fault-{index}")
        booted = project.run("bootstrap")
        assert booted.returncode == 0, booted.output
        warm_up(project)
        result, problems = run_fault(fault, project, stack, proxy)
        # The rerun a user would do: the error line's own advice (--prune when a retirement failed).
        last = result.stderr.strip().splitlines()[-1] if result.returncode else ""
        rerun = project.run("rotate-key", *(("--prune", "--yes") if "--prune" in last else ()))
        if _rerun_converged(project, rerun, problems):
            state, expected = key_shape(project), clean["rotate-state"]
            if "could not record the retired keys" in result.stderr:
                # Documented fallback (core/lifecycle.py): a key whose retirement record was lost
                # stays disabled until prune-keys deletes it after 24 h, so the counts of disabled
                # keys and recorded ids may differ; everything else must not.
                state, expected = _without_retirement(state), _without_retirement(expected)
            if state != expected:
                problems.append(
                    f"rerun state {state} differs from a clean rotation's {clean['rotate-state']}"
                )
        if problems:
            broken[fault.label] = problems
        else:
            record_figure(FIGURES, "faults survived")
    assert not broken, "\n".join(f"{label}: {problems}" for label, problems in broken.items())


def _without_retirement(state: dict[str, Any]) -> dict[str, Any]:
    tags = [
        tag
        for tag in (state.get("secret") or {}).get("tags", [])
        if tag[0] != "gcpfargate:retired-keys" and not tag[0].startswith("gcpfargate:key:")
    ]
    return {
        **state,
        "keys": {k: v for k, v in state["keys"].items() if k != "disabled"},
        "secret": {**(state.get("secret") or {}), "tags": tags},
    }


def test_throttling_of_every_call_is_absorbed(
    stack: LocalStack, proxy: FaultProxy, clean: dict[str, Any], project: Project
) -> None:
    """The first call of every AWS operation is throttled, and every GCP read is UNAVAILABLE once:
    the retries (botocore standard mode, the adapter's read retry) absorb all of it."""
    make_deployable(project)
    aws_ops = sorted({call.operation for call in clean["calls"] if call.system == "aws"})
    gcp_reads = sorted(
        {call.operation for call in clean["calls"] if call.system == "gcp" and not call.write}
    )
    for operation in aws_ops:
        proxy.add(Rule(operation, kind="throttle", times=1))
    for method in gcp_reads:
        stack.emulator.fail_nth(method, 1, "UNAVAILABLE", "The service is currently unavailable.")
    forget_shared_log_policy(project)
    before = injected(stack, proxy)
    try:
        result = project.run("deploy", "--output", "json", env={"AWS_ENDPOINT_URL": proxy.url})
    finally:
        proxy.clear()
        stack.emulator.clear_faults()
    fired = injected(stack, proxy) - before
    record_figure(FIGURES, "throttles injected", fired)
    assert result.returncode == 0, result.output
    assert fired == len(aws_ops) + len(gcp_reads)
    assert check_invariants(project) == []
    assert unchanged_everywhere(project.run("deploy", "--output", "json")) == []
    record_figure(FIGURES, "throttles survived", fired)


# -- the network and the engine
# ---------------------------------------------------------------------
def _via(project: Project, tcp: TcpProxy) -> dict[str, str | None]:
    return {"GCPFARGATE_ECR_REGISTRY": tcp.address}


def test_connection_reset_mid_blob_upload_is_retried(project: Project) -> None:
    """Docker retries a layer upload cut by a reset; the pushed, registered image is complete."""
    make_deployable(project)
    host, port = project.stack.registry.split(":")
    with TcpProxy(host, int(port)) as tcp:
        tcp.add(Reset(BLOB_UPLOAD, after_bytes=64 * 1024, times=1))
        result = project.run("deploy", "--output", "json", env=_via(project, tcp))
        record_figure(FIGURES, "connection resets injected", tcp.resets)
        assert tcp.resets == 1
        assert result.returncode == 0, result.output
        assert check_invariants(project) == []
        assert (
            unchanged_everywhere(project.run("deploy", "--output", "json", env=_via(project, tcp)))
            == []
        )
    digest = result.json["push-image"]["digest"]
    assert result.json["register-task"]["task_definition_arn"]
    definition = project.aws("ecs").describe_task_definition(taskDefinition=project.family)[
        "taskDefinition"
    ]
    assert definition["containerDefinitions"][0]["image"].endswith(f"@{digest}")
    record_figure(FIGURES, "connection resets survived")


def test_connection_reset_on_manifest_fails_cleanly_and_rerun_converges(project: Project) -> None:
    """Docker does not retry the manifest upload: the push fails, as one line, and a rerun
    finishes."""
    make_deployable(project)
    host, port = project.stack.registry.split(":")
    with TcpProxy(host, int(port)) as tcp:
        tcp.add(Reset(MANIFEST_PUT, after_bytes=0, times=-1))
        failed = project.run("deploy", env=_via(project, tcp))
        record_figure(FIGURES, "connection resets injected", tcp.resets)
        assert tcp.resets >= 1
        assert_one_clean_line(failed, 1, "push-image failed")
        assert check_invariants(project) == []
        assert (
            project.aws("ecs").list_task_definitions(familyPrefix=project.family)[
                "taskDefinitionArns"
            ]
            == []
        )
        tcp.clear()
        rerun = project.run("deploy", env=_via(project, tcp))
        assert rerun.returncode == 0, rerun.output
        assert check_invariants(project) == []
        assert (
            unchanged_everywhere(project.run("deploy", "--output", "json", env=_via(project, tcp)))
            == []
        )
    record_figure(FIGURES, "connection resets survived")


def test_engine_stopping_mid_build(project: Project, tmp_path: Path) -> None:
    """The Docker engine goes away while a RUN step runs: one clean line, exit 1, and gcpfargate
    leaves nothing behind: no process of its session, no temporary file. Checked before the test's
    own clean-up of the engine, which then must leave no trace of the engine either."""
    make_deployable(project, steps=("RUN sleep 30",))
    engine = PrivateDockerd().start()
    temp = tmp_path / "product-tmp"
    temp.mkdir()
    try:
        log = project.dir / "push.err"
        with log.open("w") as stderr:
            process = subprocess.Popen(
                [sys.executable, "-m", "gcpfargate", "push-image"],
                cwd=project.dir,
                env={**project.env, "DOCKER_HOST": engine.host, "TMPDIR": str(temp)},
                stdout=subprocess.PIPE,
                stderr=stderr,
                text=True,
                start_new_session=True,
            )
        deadline = time.monotonic() + 60
        # The build is under way when the RUN step runs: the classic builder makes a container for
        # it, BuildKit runs it itself and only prints the step.
        while not engine.note_containers() and "RUN sleep 30" not in log.read_text():
            assert process.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "the build never started"
            time.sleep(0.2)
        time.sleep(0.5)
        engine.stop(signal.SIGKILL)
        record_figure(FIGURES, "engine stops injected")
        stdout, _ = process.communicate(timeout=60)
        result = Result(process.returncode, stdout, log.read_text())
        assert_one_clean_line(result, 1, "Docker")
        assert session_processes(process.pid) == [], "gcpfargate left processes running"
        assert sorted(p.name for p in temp.iterdir()) == [], "gcpfargate left temporary files"
    finally:
        engine.cleanup()
    assert engine.leftover_pids() == [] and engine.mounts() == [] and not engine.root.exists()
    record_figure(FIGURES, "engine stops survived")
