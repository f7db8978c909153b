"""IAM eventual consistency: a role that was just created or changed is not usable at once.

AWS documents that IAM changes take time to reach other services
(https://docs.aws.amazon.com/IAM/latest/UserGuide/troubleshoot_general.html#troubleshoot_general_eventual-consistency:
"changes ... take time to become visible ... we recommend that you do not include such IAM changes
in the critical, high-availability code paths"). moto applies them instantly, so retries in the
product never run. Here, after CreateRole, PutRolePolicy, AttachRolePolicy or UpdateAssumeRolePolicy
on a role, the calls that hand that role to a service are refused the way those services refuse
them: the first `Settings.consistency_refusals` uses by each service (ECS, Scheduler) are refused,
counted rather than timed so a test sees the same refusals on a fast and a slow machine; and, when
`Settings.consistency_delay` is above 0, every use for that many seconds after the change.
"""

from __future__ import annotations

import time
from typing import Any

from tests.stack.proxybase import Answer, Call, aws_error
from tests.stack.strict.ecs import ECS_TARGET
from tests.stack.strict.layer import StrictLayer, StrictRule

CHANGES = ("CreateRole", "PutRolePolicy", "AttachRolePolicy", "UpdateAssumeRolePolicy")


def _role_name(arn: str) -> str:
    return arn.rsplit("/", 1)[-1]


def track(layer: StrictLayer, call: Call, answer: Answer) -> Answer:
    name = call.form().get("RoleName")
    if name:
        with layer.state_lock:
            layer.state.setdefault("role_changed", {})[name] = time.monotonic()
            pending = layer.state.setdefault("role_refusals", {})
            for service in SERVICES:
                pending[(name, service)] = layer.settings.consistency_refusals
    return answer


SERVICES = ("ecs", "scheduler")  # each learns of an IAM change on its own


def _unsettled(layer: StrictLayer, service: str, *arns: Any) -> str | None:
    """The first of `arns` whose role `service` may not use yet; a counted refusal is spent."""
    now = time.monotonic()
    with layer.state_lock:
        changed = layer.state.get("role_changed", {})
        pending = layer.state.setdefault("role_refusals", {})
        for arn in arns:
            if not (isinstance(arn, str) and arn):
                continue
            name = _role_name(arn)
            if pending.get((name, service), 0) > 0:
                pending[(name, service)] -= 1
                return arn
            since = changed.get(name)
            if since is not None and now - since < layer.settings.consistency_delay:
                return arn
    return None


def register_pass_role(layer: StrictLayer, call: Call) -> Answer | None:
    # Source: terraform-aws-modules/terraform-aws-ecs#414 (RegisterTaskDefinition right after
    # CreateRole: "AccessDeniedException: User: ... is not authorized to perform: iam:PassRole on
    # resource: <the role the same apply just created>"; a rerun a few seconds later succeeds) and
    # #415 (the fix: wait for propagation). ECS lists AccessDeniedException for
    # RegisterTaskDefinition.
    task_definition = call.json()
    arn = _unsettled(
        layer, "ecs", task_definition.get("executionRoleArn"), task_definition.get("taskRoleArn")
    )
    if arn is None:
        return None
    caller = (
        f"arn:aws:iam::{layer.settings.account_id}:user/moto"  # moto's identity for any test key
    )
    return aws_error(
        call,
        400,
        "AccessDeniedException",
        f"User: {caller} is not authorized to perform: iam:PassRole on resource: {arn}",
    )


def run_task_assume_role(layer: StrictLayer, call: Call) -> Answer | None:
    # Source: a Terraform module quoted in the search index ("An error occurred (ClientException)
    # when calling the RunTask operation: ECS was unable to assume the role 'arn:...' that was
    # provided for this task.", avoided there with a 30 s time_sleep after the role policies); the
    # full sentence as in aws-samples/aws-modern-application-workshop#88 and
    # telia-oss/terraform-aws-ecs-fargate#58.
    request = call.json()
    overrides = request.get("overrides") or {}
    described = layer.upstream_json(
        call,
        f"{ECS_TARGET}.DescribeTaskDefinition",
        {"taskDefinition": request.get("taskDefinition", "")},
    )
    task_definition = described.get("taskDefinition", {})
    arn = _unsettled(
        layer,
        "ecs",
        overrides.get("executionRoleArn") or task_definition.get("executionRoleArn"),
        overrides.get("taskRoleArn") or task_definition.get("taskRoleArn"),
    )
    if arn is None:
        return None
    return aws_error(
        call,
        400,
        "ClientException",
        f"ECS was unable to assume the role '{arn}' that was provided for this task. Please verify "
        "that the role being passed has the proper trust relationship and permissions and that "
        "your IAM user has permissions to pass this role.",
    )


def scheduler_role(layer: StrictLayer, call: Call) -> Answer | None:
    # Source: aws/aws-sdk-js-v3#6494 (CreateSchedule: "ValidationException: The execution role you
    # provide must allow AWS EventBridge Scheduler to assume the role."); Scheduler checks that it
    # can assume the role when the schedule is created or updated, which fails until the trust
    # policy has propagated. botocore scheduler model: ValidationException, HTTP 400, member
    # `Message`.
    arn = _unsettled(layer, "scheduler", (call.json().get("Target") or {}).get("RoleArn"))
    if arn is None:
        return None
    return aws_error(
        call,
        400,
        "ValidationException",
        "The execution role you provide must allow AWS EventBridge Scheduler to assume the role.",
    )


RULES = [
    # Switching this one off forgets nothing already tracked but stops tracking new changes.
    StrictRule("consistency.track_iam_changes", "iam", CHANGES, after=track),
    StrictRule(
        "consistency.pass_role", "ecs", ("RegisterTaskDefinition",), before=register_pass_role
    ),
    StrictRule("consistency.run_task", "ecs", ("RunTask",), before=run_task_assume_role),
    StrictRule(
        "consistency.scheduler",
        "scheduler",
        ("CreateSchedule", "UpdateSchedule"),
        before=scheduler_role,
    ),
]
