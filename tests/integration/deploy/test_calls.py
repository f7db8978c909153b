"""How many AWS, GCP and registry calls `deploy` makes (GCPFARGATE_CALL_LOG), against the stack.

A first deploy does the job with one read of each resource before it writes; a no-op deploy makes
only reads, none of them repeated beyond the allowance documented in docs/calls.md.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from tests.conftest import Project
from tests.integration.helpers import add_service, prepare

# How often one no-op deploy may make each read. One each, except where the job needs two distinct
# resources of a kind: the registry manifest under the new tag (absent) and the one the registered
# revision pins; see docs/calls.md. No STS GetCallerIdentity: the execution role's ARN comes from
# bootstrap's GetRole (issue 18). Reads sent ahead (AwsClients.read_ahead) count as sent, so one
# sent ahead and then asked again would show here as two.
NOOP_ALLOWANCE = {
    "gcp iam GetServiceAccount": 1,
    "aws secretsmanager DescribeSecret": 1,
    "aws secretsmanager GetSecretValue": 1,
    "gcp iam GetServiceAccountKey": 1,
    "aws iam GetRole": 1,
    "aws iam ListAttachedRolePolicies": 1,
    "aws iam GetRolePolicy": 1,
    "aws ecs DescribeTaskDefinition": 1,
    "aws ecr GetAuthorizationToken": 1,
    "registry GET manifests": 2,
    "registry GET blobs": 1,
    # Two groups: the task's awslogs group and the run history (/gcpfargate/<family>/runs).
    "aws logs DescribeLogGroups": 2,
    # The run history's EventBridge rule, its target and the Logs resource policy that lets
    # EventBridge write to the group (ecs/history.py).
    "aws logs DescribeResourcePolicies": 1,
    "aws events DescribeRule": 1,
    "aws events ListTargetsByRule": 1,
}
# A first deploy on an empty account: each write exactly once, each read at most once, except the
# registry manifest: under the new tag before the push (absent), by digest after it (for the image's
# ENTRYPOINT/CMD and to pin it).
FIRST_READ_ALLOWANCE = {"registry GET manifests": 2, "aws logs DescribeLogGroups": 2}
FIRST_WRITES = {
    "gcp iam CreateServiceAccountKey": 1,
    "aws secretsmanager CreateSecret": 1,
    "aws iam CreateRole": 1,
    "aws iam AttachRolePolicy": 1,
    "aws iam PutRolePolicy": 1,
    "aws ecr CreateRepository": 1,
    # The task's awslogs group and the run history's, each with task.log_retention_days.
    "aws logs CreateLogGroup": 2,
    "aws logs PutRetentionPolicy": 2,
    "aws ecs RegisterTaskDefinition": 1,
    # The run history: its group (with retention) and its rule with the group as target; a new
    # rule has no targets to read. Its region-wide Logs resource policy is counted apart: the
    # worker's stack is shared, so an earlier test's deploy may have written it already.
    "aws events PutRule": 1,
    "aws events PutTargets": 1,
}
SHARED_WRITES = {"aws logs PutResourcePolicy"}


def calls(path: Path) -> tuple[Counter[str], Counter[str]]:
    """(reads, writes) by "<system> <service> <Operation>" (registry: "registry <METHOD>
    <kind>")."""
    reads: Counter[str] = Counter()
    writes: Counter[str] = Counter()
    for line in path.read_text().splitlines():
        words = line.split()
        if words[0] == "registry":
            (writes if words[1] in ("PUT", "POST", "PATCH", "DELETE") else reads)[line] += 1
        else:
            (writes if words[-1] == "write" else reads)[" ".join(words[:-1])] += 1
    return reads, writes


def test_first_then_noop_deploy_make_the_minimum_calls(project: Project) -> None:
    prepare(project)
    first_log = project.dir / "first.calls"
    # The count of a first deploy with IAM settled: the strict layer refuses the first PassRole of a
    # role just created, so RegisterTaskDefinition is retried by design
    # (tests/integration/stack/test_real_rules.py); here the change has propagated.
    layer, saved = project.stack.strict, None
    if layer is not None:
        saved = (layer.settings.consistency_refusals, layer.settings.consistency_delay)
        layer.settings.consistency_refusals, layer.settings.consistency_delay = 0, 0
    try:
        first = project.run(
            "deploy", "--output", "json", env={"GCPFARGATE_CALL_LOG": str(first_log)}
        )
    finally:
        if layer is not None and saved is not None:
            layer.settings.consistency_refusals, layer.settings.consistency_delay = saved
    assert first.returncode == 0, first.output
    reads, writes = calls(first_log)
    assert all(writes.pop(name, 0) <= 1 for name in SHARED_WRITES), writes
    assert dict(writes) == FIRST_WRITES
    over = {
        name: count for name, count in reads.items() if count > FIRST_READ_ALLOWANCE.get(name, 1)
    }
    assert over == {}, f"reads over the allowance: {over}; all reads: {dict(reads)}"

    project.stack.emulator.reset_stats()
    noop_log = project.dir / "noop.calls"
    noop = project.run("deploy", "--output", "json", env={"GCPFARGATE_CALL_LOG": str(noop_log)})
    assert noop.returncode == 0, noop.output
    assert not any(step["changed"] for step in noop.json.values())
    reads, writes = calls(noop_log)
    assert writes == Counter()
    # The emulator counts what reached it, independently of the product's own log.
    assert project.stack.emulator.stats()["mutating_calls"] == 0
    over = {name: count for name, count in reads.items() if count > NOOP_ALLOWANCE.get(name, 0)}
    assert over == {}, f"reads over the allowance: {over}; all reads: {dict(reads)}"


def test_noop_deploy_with_a_service_reads_it_once_and_writes_nothing(project: Project) -> None:
    prepare(project)
    first = project.run("deploy", "--output", "json")
    assert first.returncode == 0, first.output
    add_service(project, first.json["register-task"]["task_definition_arn"])
    noop_log = project.dir / "noop.calls"
    noop = project.run("deploy", "--output", "json", env={"GCPFARGATE_CALL_LOG": str(noop_log)})
    assert noop.returncode == 0, noop.output
    assert noop.json["service"]["status"] == "UNCHANGED"
    reads, writes = calls(noop_log)
    assert writes == Counter()
    # The only reads a service adds: one DescribeServices.
    allowance = {**NOOP_ALLOWANCE, "aws ecs DescribeServices": 1}
    over = {name: count for name, count in reads.items() if count > allowance.get(name, 0)}
    assert over == {}, f"reads over the allowance: {over}; all reads: {dict(reads)}"
    assert reads["aws ecs DescribeServices"] == 1
