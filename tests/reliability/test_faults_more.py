"""The fault matrix, continued: the conditional writes, the rollback calls, double faults, lost
answers of the AWS create calls and injected permission errors (issue 14 item 2).

Same discipline as test_faults.py: the calls of each scenario are discovered by a clean run with
GCPFARGATE_CALL_LOG, every mutating one fails in turn, and afterwards the failure is one clean line
naming the step, the invariants hold, and a rerun (the line's own advice) converges.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Project, assert_one_clean_line, record_figure
from tests.reliability.helpers import (
    FIGURES,
    Fault,
    check_invariants,
    current_key,
    faults_of,
    make_deployable,
    new_project,
    orphans,
    run_fault,
    run_logged,
    secret_versions,
    shape,
    unchanged_everywhere,
)
from tests.stack.faultproxy import FaultProxy, Rule
from tests.stack.local import LocalStack
from tests.stack.tcpproxy import Reset, TcpProxy

REFUSED = 1000  # token requests refused: verification gives up, the rotation rolls back
# A definitive refusal: "Invalid JWT Signature." is waited out as "not yet propagated"
# (core/verify.py; the key is kept, unverified, after ~135 s), so only another invalid_grant forces
# the rollback.
FOR_GOOD = "Invalid grant: account not found"


def _bootstrap(project: Project) -> None:
    result = project.run("bootstrap")
    assert result.returncode == 0, result.output


def _with_stray_key(project: Project) -> None:
    """bootstrap, then a key of this secret nobody stored (a run that died after minting and
    recording it): --prune's work. Recorded as the secret's own, as that run would have left it; a
    key nobody recorded is foreign and never pruned (tests/integration/deploy/test_sharing.py)."""
    _bootstrap(project)
    from tests.reliability.helpers import mint

    (stray,) = mint(project.stack, project.email, 1)
    project.aws("secretsmanager").tag_resource(
        SecretId=project.secret_name,
        Tags=[{"Key": f"gcpfargate:key:{stray.key_id}", "Value": "minted"}],
    )
    assert len(orphans(project)) == 1


def _refuse_verification(project: Project) -> None:
    _bootstrap(project)
    project.stack.emulator.refuse_grants(REFUSED, FOR_GOOD)


@dataclass(frozen=True)
class Scenario:
    id: str
    args: tuple[str, ...]
    setup: Callable[[Project], None]
    fails: bool = False  # the clean run itself fails (the rollback scenario)


SCENARIOS = [
    Scenario("bootstrap --new-key", ("bootstrap", "--new-key"), _bootstrap),
    Scenario("rotate-key --delete-previous", ("rotate-key", "--delete-previous"), _bootstrap),
    Scenario("rotate-key --prune", ("rotate-key", "--prune", "--yes"), _with_stray_key),
    Scenario("rotate-key rollback", ("rotate-key",), _refuse_verification, fails=True),
]


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.id for s in SCENARIOS])
def test_conditional_writes_survive_each_failing_call(
    scenario: Scenario, stack: LocalStack, proxy: FaultProxy, tmp_path: Path
) -> None:
    discover = new_project(stack, tmp_path / "clean")
    scenario.setup(discover)
    try:
        result, calls = run_logged(discover, *scenario.args)
    finally:
        stack.emulator.clear_faults()
    assert result.returncode == (1 if scenario.fails else 0), result.output
    faults = faults_of(
        "rotate-key", calls
    )  # the rotate-key step names apply to bootstrap --new-key too
    operations = {fault.call.operation for fault in faults}
    assert "CreateServiceAccountKey" in operations, operations
    if scenario.fails:  # the rollback's own calls are in the matrix: these are the double faults
        assert {"UpdateSecretVersionStage", "DeleteServiceAccountKey"} <= operations, operations
    broken: dict[str, list[str]] = {}
    for index, fault in enumerate(faults):
        project = new_project(stack, tmp_path / f"fault-{index}")
        scenario.setup(project)
        strays = set(
            orphans(project)
        )  # the setup's own unstored key (--prune): the rotation disables it
        if scenario.fails:
            record_figure(FIGURES, "faults injected: double")
        result, problems = run_fault(fault, project, stack, proxy, args=scenario.args)
        # A fault that stops the run before its disable step leaves the setup's stray as it was: not
        # this command's orphan. The rerun must still leave none (checked below).
        problems = [
            p
            for p in problems
            if not (
                p.startswith("orphan keys")
                and strays
                and all(k in strays for k in re.findall(r"[0-9a-f]{40}", p))
            )
        ]
        if scenario.fails:
            if "was refused" in "".join(result.stderr.strip().splitlines()[-1:]):
                # The second fault was absorbed (the key deletion is retried, the tags are best
                # effort, a left-over pending label is ignored): the line rightly names the refusal.
                problems = [
                    p for p in problems if not p.startswith("not one clean line naming the step")
                ]
            if result.returncode == 0:
                problems.append("verification was refused, yet the command succeeded")
        last = result.stderr.strip().splitlines()[-1] if result.returncode else ""
        _rerun_and_tally(project, _advice(scenario.args, last), fault.label, problems, broken)
    assert not broken, "\n".join(f"{label}: {problems}" for label, problems in broken.items())


def _advice(args: tuple[str, ...], last: str) -> tuple[str, ...]:
    """The rerun a user would do: the same command, with --prune when the error line says so."""
    if args[0] == "rotate-key" and "--prune" in last and "--prune" not in args:
        return (*args, "--prune", "--yes")
    return args


# -- double faults: the clean-up itself fails, and the line must say what to do by hand
# --------------
def _delete_key(project: Project, key_id: str) -> None:
    """What the line's `gcloud iam service-accounts keys delete` does."""
    import grpc
    from google.cloud import iam_admin_v1
    from google.cloud.iam_admin_v1.services.iam.transports import IAMGrpcTransport

    channel = grpc.insecure_channel(project.stack.emulator.grpc_address)
    client = iam_admin_v1.IAMClient(transport=IAMGrpcTransport(channel=channel))
    client.delete_service_account_key(
        name=f"projects/-/serviceAccounts/{project.email}/keys/{key_id}"
    )


def _fail_gcp(stack: LocalStack, method: str) -> None:
    """Fail every attempt: the adapter retries an INTERNAL key state change (clients/gcp.py
    `_idempotent`, three attempts), so one fault alone is absorbed and the clean-up succeeds."""
    for _ in range(3):
        stack.emulator.fail_nth(method, 1, "INTERNAL", "injected fault")


def test_rollback_cannot_move_awscurrent_back(project: Project, proxy: FaultProxy) -> None:
    """Verification refused and UpdateSecretVersionStage failing: the line names the new key, the
    AWS command that moves AWSCURRENT back and the gcloud command that deletes the key."""
    _bootstrap(project)
    project.stack.emulator.refuse_grants(REFUSED, FOR_GOOD)
    # The first UpdateSecretVersionStage makes the new key AWSCURRENT (issue 15's compare-and-set);
    # the second, the rollback's move back, fails.
    proxy.add(Rule("UpdateSecretVersionStage", code="InternalFailure", skip=1))
    try:
        failed = project.run(
            "rotate-key",
            "--output",
            "json",
            env={"AWS_ENDPOINT_URL": proxy.url, "AWS_MAX_ATTEMPTS": "1"},
        )
    finally:
        proxy.clear()
        project.stack.emulator.clear_faults()
    record_figure(FIGURES, "faults injected: double")
    new_key = current_key(project)[
        "private_key_id"
    ]  # the rollback failed: the secret holds the new key
    line = assert_one_clean_line(
        failed,
        1,
        new_key,
        "aws secretsmanager update-secret-version-stage",
        f"gcloud iam service-accounts keys delete {new_key}",
    )
    assert project.email in line
    assert check_invariants(project) == []  # the new key is valid once the refusals stop
    record_figure(FIGURES, "double faults with the manual command")


@pytest.mark.parametrize("path", ["rollback", "store failed"])
def test_unstored_key_cannot_be_deleted(project: Project, proxy: FaultProxy, path: str) -> None:
    """The new key must go (verification refused, or storing failed), and deleting it fails too:
    the line names the key and the gcloud command, and the next rotation disables it."""
    _bootstrap(project)
    env: dict[str, str | None] = {}
    if path == "rollback":
        project.stack.emulator.refuse_grants(REFUSED, FOR_GOOD)
    else:
        proxy.add(Rule("PutSecretValue", code="InternalFailure"))
        env = {"AWS_ENDPOINT_URL": proxy.url, "AWS_MAX_ATTEMPTS": "1"}
    _fail_gcp(project.stack, "DeleteServiceAccountKey")
    try:
        failed = project.run("rotate-key", env=env)
    finally:
        proxy.clear()
        project.stack.emulator.clear_faults()
    record_figure(FIGURES, "faults injected: double")
    stray = project.stack.emulator.key_ids(project.email)[-1]  # the key this rotation minted
    assert project.stack.emulator.key_state(project.email, stray) == "enabled"
    assert_one_clean_line(failed, 1, stray, f"gcloud iam service-accounts keys delete {stray}")
    if path == "rollback":
        # Moving AWSCURRENT back made the unverified version AWSPREVIOUS: it is referenced, so
        # --prune keeps it; the line's gcloud command is the way out.
        assert secret_versions(project)["AWSPREVIOUS"]["private_key_id"] == stray
        _delete_key(project, stray)
    else:
        # Issue 15's lifecycle: the next rotation disables the unreferenced key (prune-keys deletes
        # it once it is 24 h old; test_key_lifecycle covers that).
        rerun = project.run("rotate-key")
        assert rerun.returncode == 0, rerun.output
        assert project.stack.emulator.key_state(project.email, stray) == "disabled"
    assert check_invariants(project) == []
    record_figure(FIGURES, "double faults with the manual command")


# -- lost answers of the AWS create calls
# ------------------------------------------------------------
CREATES = {  # operation -> the request bytes that identify it (query protocol: in the body)
    "CreateSecret": rb"X-Amz-Target: secretsmanager\.CreateSecret\r\n",
    "CreateRole": rb"Action=CreateRole&",
    "CreateRepository": rb"X-Amz-Target: "
    rb"AmazonEC2ContainerRegistry_V20150921\.CreateRepository\r\n",
    "CreateLogGroup": rb"X-Amz-Target: Logs_20140328\.CreateLogGroup\r\n",
    "RegisterTaskDefinition": rb"X-Amz-Target: "
    rb"AmazonEC2ContainerServiceV20141113\.RegisterTaskDefinition\r\n",
}


@pytest.fixture(scope="module")
def clean_deploy(stack: LocalStack, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    project = new_project(stack, tmp_path_factory.mktemp("clean-deploy"))
    make_deployable(project)
    result = project.run("deploy")
    assert result.returncode == 0, result.output
    return shape(project)


@pytest.mark.parametrize("operation", sorted(CREATES))
def test_lost_answer_of_a_create_call(
    project: Project, operation: str, clean_deploy: dict[str, Any]
) -> None:
    """The create took effect, its answer was lost (AWS_MAX_ATTEMPTS=1): one clean line or success,
    the invariants hold, a rerun converges to a clean deploy's world, a third run changes
    nothing."""
    make_deployable(project)
    host, port = project.stack.moto_url.removeprefix("http://").split(":")
    with TcpProxy(host, int(port)) as tcp:
        tcp.add(Reset(CREATES[operation], lose_response=True))
        result = project.run(
            "deploy", env={"AWS_ENDPOINT_URL": f"http://{tcp.address}", "AWS_MAX_ATTEMPTS": "1"}
        )
        record_figure(FIGURES, "faults injected")
        record_figure(FIGURES, "faults injected: aws lost answer")
        assert tcp.resets == 1, f"{operation} was not called"
    if result.returncode != 0:
        assert_one_clean_line(result, 1, "failed")
    assert (
        check_invariants(
            project, expect_secret=operation != "CreateSecret" or result.returncode == 0
        )
        == []
    )
    rerun = project.run("deploy")
    assert rerun.returncode == 0, rerun.output
    assert check_invariants(project) == []
    assert unchanged_everywhere(project.run("deploy", "--output", "json")) == []
    assert shape(project) == clean_deploy
    record_figure(FIGURES, "faults survived")


# -- permission errors
# --------------------------------------------------------------------------------
def test_deploy_permission_errors_name_the_step_and_the_permission(
    stack: LocalStack, proxy: FaultProxy, tmp_path: Path
) -> None:
    """Each distinct mutating operation of a first deploy is denied once (AccessDenied[Exception] /
    PERMISSION_DENIED): one clean line naming the step and the refusal, invariants intact, and the
    rerun (permission granted) converges."""
    discover = new_project(stack, tmp_path / "clean")
    make_deployable(discover)
    result, calls = run_logged(discover, "deploy")
    assert result.returncode == 0, result.output
    firsts = {
        f.call.operation: Fault("deploy", f.call, 1, denied=True)
        for f in faults_of("deploy", calls)
        if f.nth == 1 and f.when == "before"
    }
    broken: dict[str, list[str]] = {}
    for index, fault in enumerate(firsts.values()):
        project = new_project(stack, tmp_path / f"denied-{index}")
        make_deployable(project)
        result, problems = run_fault(fault, project, stack, proxy)
        if result.returncode == 0:
            problems.append("a denied call was not reported")
        elif not any(
            word in result.stderr.splitlines()[-1]
            for word in ("AccessDenied", "not authorized", "PERMISSION_DENIED", "roles/")
        ):
            problems.append(
                f"the line does not say the call was denied: {result.stderr.splitlines()[-1]}"
            )
        _rerun_and_tally(project, ("deploy",), fault.label, problems, broken)
    assert len(firsts) >= 5
    assert not broken, "\n".join(f"{label}: {problems}" for label, problems in broken.items())


# -- lost responses: the call took effect, the caller never heard
# -----------------------------------
@pytest.mark.parametrize(
    ("command", "target"),
    [
        ("rotate-key", b"secretsmanager.PutSecretValue"),
        ("bootstrap", b"secretsmanager.CreateSecret"),
    ],
)
def test_lost_response_of_storing_the_key(project: Project, command: str, target: bytes) -> None:
    """The key was stored but the answer was lost (AWS_MAX_ATTEMPTS=1: no idempotent retry saves
    it): the new key must not be deleted while the secret points at it."""
    if command == "rotate-key":
        assert project.run("bootstrap").returncode == 0
    host, port = project.stack.moto_url.removeprefix("http://").split(":")
    with TcpProxy(host, int(port)) as tcp:
        tcp.add(Reset(rb"X-Amz-Target: " + target.replace(b".", rb"\."), lose_response=True))
        result = project.run(
            command, env={"AWS_ENDPOINT_URL": f"http://{tcp.address}", "AWS_MAX_ATTEMPTS": "1"}
        )
        record_figure(FIGURES, "faults injected")
        assert tcp.resets == 1
    if result.returncode != 0:
        assert_one_clean_line(result, 1)
    assert check_invariants(project) == []
    rerun = project.run(command)
    assert rerun.returncode == 0, rerun.output
    assert check_invariants(project) == []
    record_figure(FIGURES, "faults survived")


def test_lost_response_of_key_creation_is_deleted_at_once(project: Project) -> None:
    """GCP made a key but its answer (the only copy of the private key) was lost. Nobody can use
    that key: rotate-key finds it (not listed before the call, created since) and deletes it before
    it fails with one clean line, so nothing is left for prune-keys, and the rerun rotates."""
    assert project.run("bootstrap").returncode == 0
    before = set(project.stack.emulator.key_ids(project.email))
    project.stack.emulator.fail_nth(
        "CreateServiceAccountKey", 1, "INTERNAL", "injected fault", when="after"
    )
    try:
        failed = project.run("rotate-key")
    finally:
        project.stack.emulator.clear_faults()
    record_figure(FIGURES, "faults injected")
    assert_one_clean_line(failed, 1, "INTERNAL")
    lost = set(project.stack.emulator.key_ids(project.email, include_deleted=True)) - before
    assert len(lost) == 1, lost  # the fault fired after the key was made
    assert [project.stack.emulator.key_state(project.email, k) for k in lost] == ["deleted"]
    assert orphans(project) == []
    rotated = project.run("rotate-key")
    assert rotated.returncode == 0, rotated.output
    assert check_invariants(project) == []
    record_figure(FIGURES, "faults survived")


def _rerun_and_tally(
    project: Project,
    args: Sequence[str],
    label: str,
    problems: list[str],
    broken: dict[str, list[str]],
) -> None:
    """The rerun the error line advises must succeed and leave the invariants whole; tally the
    fault."""
    rerun = project.run(*args)
    if rerun.returncode != 0:
        problems.append(f"rerun failed: {rerun.stderr.strip().splitlines()[-1:]}")
    else:
        problems += [f"after rerun: {p}" for p in check_invariants(project)]
    if problems:
        broken[label] = problems
    else:
        record_figure(FIGURES, "faults survived")
