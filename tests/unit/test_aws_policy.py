"""docs/aws-policy.json covers every AWS operation the code can call, and nothing else.

moto does not enforce IAM, so a missing action is invisible to the integration suite. The
operations are found in the source (every `ctx.aws.call/find/paginate/read_ahead/paginate_ahead`
with a literal service and operation) and mapped to IAM actions through botocore's models; the
few that cannot be found that way are listed below with the reason.
"""

from __future__ import annotations

import ast
import json
from pathlib import Path

import botocore.session
from botocore import xform_name

ROOT = Path(__file__).resolve().parents[2]
METHODS = {"call", "find", "paginate", "read_ahead", "paginate_ahead"}
# Needed, but not as a literal call in the source:
IMPLIED = {
    # ecs/schedule.py chooses CreateSchedule or UpdateSchedule at run time.
    "scheduler:CreateSchedule",
    "scheduler:UpdateSchedule",
    # CreateRole and CreateScheduleGroup are called with Tags, which IAM authorises separately.
    "iam:TagRole",
    "scheduler:TagResource",
    # The run history's log group, its rule and the alert topic are created with tags (ecs/history.py,
    # ecs/alerts.py), which Logs, EventBridge and SNS authorise separately.
    "logs:TagResource",
    "events:TagResource",
    "sns:TagResource",
    # RegisterTaskDefinition, RunTask, UpdateService and CreateSchedule hand roles to ECS/Scheduler.
    "iam:PassRole",
    # The Docker engine's push and pull speak the registry protocol, which ECR authorises so.
    "ecr:BatchCheckLayerAvailability",
    "ecr:BatchGetImage",
    "ecr:CompleteLayerUpload",
    "ecr:DescribeImages",
    "ecr:GetDownloadUrlForLayer",
    "ecr:InitiateLayerUpload",
    "ecr:PutImage",
    "ecr:UploadLayerPart",
}


def called_operations() -> dict[str, set[str]]:
    """IAM action -> the source files that call it."""
    session = botocore.session.get_session()
    found: dict[str, set[str]] = {}
    for path in sorted((ROOT / "gcpfargate").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if not (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr in METHODS
                and len(node.args) >= 2
                and all(
                    isinstance(arg, ast.Constant) and isinstance(arg.value, str)
                    for arg in node.args[:2]
                )
            ):
                continue
            service, operation = (arg.value for arg in node.args[:2])  # type: ignore[attr-defined]
            model = session.get_service_model(service)
            names = {xform_name(name): name for name in model.operation_names}
            prefix = model.metadata.get("signingName", service)
            action = f"{prefix}:{names[operation]}"
            found.setdefault(action, set()).add(str(path.relative_to(ROOT)))
    return found


def policy_actions() -> set[str]:
    policy = json.loads((ROOT / "docs" / "aws-policy.json").read_text())
    actions: set[str] = set()
    for statement in policy["Statement"]:
        action = statement["Action"]
        actions |= {action} if isinstance(action, str) else set(action)
    return actions


def test_the_policy_allows_every_operation_the_code_calls() -> None:
    called = called_operations()
    missing = {
        action: sorted(files) for action, files in called.items() if action not in policy_actions()
    }
    assert missing == {}
    assert policy_actions() >= IMPLIED


def test_the_policy_allows_nothing_the_code_does_not_need() -> None:
    assert policy_actions() - set(called_operations()) - IMPLIED == set()
