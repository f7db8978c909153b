"""Generate docs/aws-policy.json from the AWS operations gcpfargate makes.

    make policy                                    record, then write the policy
    python scripts/aws_policy.py record            run the recorded integration tests, write
                                                   docs/aws-operations.txt
    python scripts/aws_policy.py write             docs/aws-operations.txt -> docs/aws-policy.json
    python scripts/aws_policy.py check             exit 1 when the policy is not what `write` gives

The recording comes from the strict layer in front of moto (tests/stack/strict/recorder.py): every
request the product itself sends during RECORDED_TESTS, named by its IAM action. A few actions
no request on the local stack can show are added from IMPLIED, and the few calls no recorded test
reaches yet from UNRECORDED, each with its reason. Resources are
scoped to gcpfargate's own names where AWS allows it (RESOURCES); an action no rule places is an
error, so a new service cannot slip in with `Resource: "*"` unseen.

tests/unit/test_aws_policy_generated.py checks that the committed policy is exactly what `write`
gives from the committed recording; tests/unit/test_aws_policy.py checks both against the
operations found in the source, so a call added without re-recording fails CI either way.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RECORDING = ROOT / "docs" / "aws-operations.txt"
POLICY = ROOT / "docs" / "aws-policy.json"

# The integration tests whose AWS requests make the recording: together they run every command
# that talks to AWS (deploy and its steps, run, run-local, rotate-key, doctor, schedule, service
# updates and rollback, deregister, push-image, prune-keys).
RECORDED_TESTS = (
    "tests/integration/deploy/test_deploy.py",
    "tests/integration/doctor/test_doctor.py",
    "tests/integration/credentials/key/test_rotate_key.py",
    "tests/integration/ecs/test_schedule.py",
    "tests/integration/ecs/test_run.py",
    "tests/integration/ecs/test_service.py",
    "tests/integration/taskdef/test_register_task.py",
    "tests/integration/credentials/key/test_key_lifecycle.py",
    "tests/integration/local/test_run_local_secrets.py",
    # bootstrap's repair of an edited trust policy (UpdateAssumeRolePolicy)
    "tests/integration/stack/test_real_rules.py::test_schedule_waits_out_a_trust_policy_it_just_corrected",
)

# Needed, but no request to the local stack shows them.
IMPLIED = {
    # Scheduler: `schedule` creates or updates; one recorded run rarely sees both.
    "scheduler:CreateSchedule": "schedule chooses CreateSchedule or UpdateSchedule at run time",
    "scheduler:UpdateSchedule": "schedule chooses CreateSchedule or UpdateSchedule at run time",
    # Tags on create are authorised as a separate action (IAM user guide, "Controlling access
    # during AWS requests"); moto does not check them.
    "iam:TagRole": "CreateRole is called with Tags",
    "scheduler:TagResource": "CreateScheduleGroup is called with Tags",
    # The run history's log group, its rule and the alert topic are created with tags
    # (ecs/history.py, ecs/alerts.py), which Logs, EventBridge and SNS authorise separately.
    "logs:TagResource": "CreateLogGroup is called with tags",
    "events:TagResource": "PutRule is called with Tags",
    "sns:TagResource": "CreateTopic is called with Tags",
    # Handing a role to ECS or Scheduler needs PassRole on it; moto does not check it.
    "iam:PassRole": "RegisterTaskDefinition, RunTask and CreateSchedule hand roles to AWS",
    # The Docker engine pushes and pulls with the registry protocol, which ECR authorises with
    # these actions; the local stack's registry is not ECR, so no request shows them.
    "ecr:BatchCheckLayerAvailability": "docker push to ECR",
    "ecr:InitiateLayerUpload": "docker push to ECR",
    "ecr:UploadLayerPart": "docker push to ECR",
    "ecr:CompleteLayerUpload": "docker push to ECR",
    "ecr:PutImage": "docker push to ECR",
    "ecr:BatchGetImage": "docker pull from ECR (run-local, the digest check)",
    "ecr:GetDownloadUrlForLayer": "docker pull from ECR (run-local)",
    "ecr:DescribeImages": "the image check of doctor and push-image against ECR",
    # The local registry deletes through the Registry API; ECR through BatchDeleteImage.
    "ecr:BatchDeleteImage": "push-image deletes an image it pushed when it cannot finish",
}

# Calls the code makes (tests/unit/test_aws_policy.py finds them in the source) that no recorded
# test reaches yet; each names where it is made. Recording the tests that reach them (keyless,
# fault injection) moves an entry out of here: `write` refuses an entry that is also recorded.
UNRECORDED = {
    "logs:DeleteLogGroup": "ecs/logs.py: a log group whose retention cannot be set is removed",
    "kms:DescribeKey": "credentials/key/secret.py: a secret encrypted with aws.kms_key",
    "secretsmanager:DeleteSecret": "credentials/keyless/retire.py: keyless retires the key secret",
    "sts:AssumeRole": "credentials/keyless/task_role.py: keyless run-local takes the task role",
    "ecr:GetRepositoryPolicy": "deploy: with image.registry_id, may the execution role pull",
    # The run history and failure alerts (added after the last recording):
    "logs:FilterLogEvents": "ecs/tail.py, ecs/history.py: `logs` and `jobs` read logs and history",
    "logs:DescribeResourcePolicies": "ecs/history.py: deploy reads the Logs resource policy",
    "logs:PutResourcePolicy": "ecs/history.py: deploy lets EventBridge write the run history",
    "events:DescribeRule": "ecs/history.py, ecs/alerts.py: deploy reads its rules",
    "events:ListTargetsByRule": "ecs/history.py, ecs/alerts.py: deploy reads the rules' targets",
    "events:PutRule": "ecs/history.py, ecs/alerts.py: deploy writes its rules",
    "events:PutTargets": "ecs/history.py, ecs/alerts.py: deploy sets the rules' targets",
    "sns:GetTopicAttributes": "ecs/alerts.py: deploy reads the alert topic's policy",
    "sns:SetTopicAttributes": "ecs/alerts.py: deploy lets EventBridge publish to the topic",
    "sns:CreateTopic": "ecs/alerts.py: notify.create_topic",
    "sns:Subscribe": "ecs/alerts.py: notify.email",
    "sns:ListSubscriptionsByTopic": "ecs/alerts.py: deploy reads the topic's subscriptions",
}

ACCOUNT = "ACCOUNT_ID"  # replaced by the user with their account id (README, "AWS permissions")
# replaced by the user with aws, aws-cn or aws-us-gov (README, "AWS permissions")
PARTITION = "PARTITION"
ROLES = f"arn:{PARTITION}:iam::{ACCOUNT}:role/gcpfargate-*"


def _prefix(prefix: str) -> Callable[[str], bool]:
    return lambda action: action.startswith(prefix)


def _exactly(*actions: str) -> Callable[[str], bool]:
    return lambda action: action in actions


# (Sid, which actions, their resources), first match wins. The resource forms are AWS's (Service
# Authorization Reference, "Resource types defined by ..."): gcpfargate's secrets, roles and
# parameters have gcpfargate names; ECR repositories, ECS and Logs carry the user's names.
RESOURCES: list[tuple[str, Callable[[str], bool], str | list[str]]] = [
    ("Identity", _exactly("sts:GetCallerIdentity"), "*"),
    ("FindSecretsByTag", _exactly("secretsmanager:ListSecrets"), "*"),
    (
        "SecretsOfGcpfargate",
        _prefix("secretsmanager:"),
        f"arn:{PARTITION}:secretsmanager:*:{ACCOUNT}:secret:gcpfargate/*",
    ),
    (
        "ExecutionRoles",
        lambda action: action.startswith("iam:") or action == "sts:AssumeRole",
        [ROLES, f"arn:{PARTITION}:iam::aws:policy/*"],
    ),
    ("Images", _exactly("ecr:GetAuthorizationToken"), "*"),
    ("Repositories", _prefix("ecr:"), f"arn:{PARTITION}:ecr:*:{ACCOUNT}:repository/*"),
    ("TaskDefinitionsServicesAndTasks", _prefix("ecs:"), "*"),
    ("Logs", _prefix("logs:"), "*"),
    ("Schedules", _prefix("scheduler:"), "*"),
    (
        "RunHistoryAndAlertRules",
        _prefix("events:"),
        f"arn:{PARTITION}:events:*:{ACCOUNT}:rule/gcpfargate-*",
    ),
    ("AlertTopics", _prefix("sns:"), "*"),
    ("CustomerManagedKeyOnly", _prefix("kms:"), "*"),
    ("TaskParametersForRunLocal", _prefix("ssm:"), f"arn:{PARTITION}:ssm:*:{ACCOUNT}:parameter/*"),
]


def read_recording(path: Path = RECORDING) -> set[str]:
    return {
        line.strip()
        for line in path.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }


def render(recorded: set[str]) -> str:
    """The policy for the recorded actions, IMPLIED and UNRECORDED (docs/aws-policy.json)."""
    both = recorded & set(UNRECORDED)
    if both:
        raise SystemExit(
            f"aws_policy: recorded now, drop from UNRECORDED: {', '.join(sorted(both))}"
        )
    actions = sorted(recorded | set(IMPLIED) | set(UNRECORDED))
    placed: dict[str, list[str]] = {}
    for action in actions:
        sid = next((sid for sid, matches, _ in RESOURCES if matches(action)), None)
        if sid is None:
            raise SystemExit(f"aws_policy: no resource rule for {action}; add one to RESOURCES")
        placed.setdefault(sid, []).append(action)
    statements = [
        {"Sid": sid, "Effect": "Allow", "Action": placed[sid], "Resource": resource}
        for sid, _, resource in RESOURCES
        if sid in placed
    ]
    return json.dumps({"Version": "2012-10-17", "Statement": statements}, indent=2) + "\n"


def record(jobs: str) -> int:
    """Run RECORDED_TESTS with the recorder on; write the actions they made to RECORDING."""
    with tempfile.TemporaryDirectory() as scratch:
        out = Path(scratch) / "actions"
        out.touch()
        env = {**os.environ, "GCPF_STACK_RECORD": str(out)}
        argv = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"]
        if jobs != "0":
            argv += ["-n", jobs, "--dist", "loadgroup"]
        code = subprocess.run([*argv, *RECORDED_TESTS], cwd=ROOT, env=env, check=False).returncode
        actions = sorted(read_recording(out))
    if not actions:
        sys.stderr.write("aws_policy: the run recorded no AWS request of gcpfargate\n")
        return 1
    RECORDING.write_text(
        "# AWS actions gcpfargate's requests needed during scripts/aws_policy.py's recorded\n"
        "# tests (written by `make policy`; do not edit).\n" + "".join(f"{a}\n" for a in actions)
    )
    sys.stderr.write(f"aws_policy: {len(actions)} actions recorded\n")
    if code != 0:
        # A test that stopped early can only leave calls out; the source check
        # (tests/unit/test_aws_policy.py) still names any the policy then misses.
        sys.stderr.write(f"aws_policy: some recorded tests failed (pytest exit {code})\n")
    return code


def main(argv: list[str]) -> int:
    command = argv[0] if argv else "write"
    if command == "record":
        return record(os.environ.get("TEST_JOBS", "2"))
    if command == "write":
        POLICY.write_text(render(read_recording()))
        return 0
    if command == "check":
        if POLICY.read_text() != render(read_recording()):
            sys.stderr.write("aws_policy: docs/aws-policy.json is stale; run `make policy`\n")
            return 1
        return 0
    sys.stderr.write(__doc__ or "")
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
