"""Name limits moto does not check: IAM role and inline policy names, ECR repository length."""

from __future__ import annotations

import re

from tests.stack.proxybase import Answer, Call, aws_error
from tests.stack.strict.layer import StrictLayer, StrictRule

# botocore's IAM model: roleNameType and policyNameType (min 1, max 64 / 128, pattern [\w+=,.@-]+).
_IAM_NAME = re.compile(r"[\w+=,.@-]+")
_IAM_LIMITS = {
    "CreateRole": (("RoleName", "roleName", 64),),
    "PutRolePolicy": (("RoleName", "roleName", 64), ("PolicyName", "policyName", 128)),
}


def iam_name_limits(layer: StrictLayer, call: Call) -> Answer | None:
    # Source (text and shape, HTTP 400, Code ValidationError): NixOS/nixops#328 and
    # legion-platform/legion#530 quote the IAM error document: "1 validation error detected: Value
    # '<name>' at 'roleName' failed to satisfy constraint: Member must have length less than or
    # equal to 64"; the pattern wording is the same framework's ("Member must satisfy regular
    # expression pattern: ..."). Limits: botocore iam/2010-05-08/service-2.json roleNameType,
    # policyNameType.
    form = call.form()
    for field, member, limit in _IAM_LIMITS.get(call.operation, ()):
        value = form.get(field)
        if value is None:
            continue
        if len(value) > limit:
            return aws_error(
                call,
                400,
                "ValidationError",
                f"1 validation error detected: Value '{value}' at "
                f"'{member}' failed to satisfy constraint: Member must have length less than or "
                f"equal to {limit}",
            )
        if not _IAM_NAME.fullmatch(value):
            return aws_error(
                call,
                400,
                "ValidationError",
                f"1 validation error detected: Value '{value}' at "
                f"'{member}' failed to satisfy constraint: Member must satisfy regular expression "
                r"pattern: [\w+=,.@-]+",
            )
    return None


def ecr_repository_name_length(layer: StrictLayer, call: Call) -> Answer | None:
    # Source: aws/aws-dotnet-deploy#549 ("InvalidParameterException: Invalid parameter at
    # 'repositoryName' failed to satisfy constraint: 'must have length greater than or equal to
    # 2'"); limits from botocore ecr/2015-09-21 RepositoryName (min 2, max 256). botocore itself
    # refuses a name under 2 before sending, and moto checks the pattern (with ECR's text) but not
    # the length.
    name = str(call.json().get("repositoryName", ""))
    if len(name) > 256:
        return aws_error(
            call,
            400,
            "InvalidParameterException",
            "Invalid parameter at 'repositoryName' failed "
            "to satisfy constraint: 'must have length less than or equal to 256'",
        )
    if len(name) < 2:
        return aws_error(
            call,
            400,
            "InvalidParameterException",
            "Invalid parameter at 'repositoryName' failed "
            "to satisfy constraint: 'must have length greater than or equal to 2'",
        )
    return None


# botocore scheduler/2021-06-30 model: Name and ScheduleGroupName are 1-64 of [0-9a-zA-Z-_.],
# EcsParameters.Group 1-255. botocore checks only the minimum lengths before sending; moto none.
_SCHEDULER_NAME = re.compile(r"[0-9a-zA-Z-_.]+")


def _scheduler_violation(value: str, member: str, limit: int, pattern: bool) -> str | None:
    # Source: webiny/webiny-js#5447 quotes EventBridge Scheduler's answer (ValidationException,
    # HTTP 400): "Value '...' at 'name' failed to satisfy constraint: Member must satisfy regular
    # expression pattern: [0-9a-zA-Z-_.]+; ... Member must have length less than or equal to 64",
    # under the framework's "1 validation error detected: " head (NixOS/nixops#328 for IAM). AWS
    # lists every violation ("2 validation errors detected: a; b"); the layer names the first.
    if len(value) > limit:
        return (
            f"1 validation error detected: Value '{value}' at '{member}' failed to satisfy "
            f"constraint: Member must have length less than or equal to {limit}"
        )
    if pattern and not _SCHEDULER_NAME.fullmatch(value):
        return (
            f"1 validation error detected: Value '{value}' at '{member}' failed to satisfy "
            "constraint: Member must satisfy regular expression pattern: [0-9a-zA-Z-_.]+"
        )
    return None


def scheduler_name_limits(layer: StrictLayer, call: Call) -> Answer | None:
    # REST: the schedule's (or group's) name is the last path segment; the group and the ECS
    # target's task group travel in the JSON body.
    from urllib.parse import unquote

    body = call.json() if call.body else {}
    checks = [
        (unquote(call.path.split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1]), "name", 64, True)
    ]
    if body.get("GroupName") is not None:
        checks.append((str(body["GroupName"]), "groupName", 64, True))
    group = ((body.get("Target") or {}).get("EcsParameters") or {}).get("Group")
    if group is not None:
        checks.append((str(group), "target.ecsParameters.group", 255, False))
    for value, member, limit, pattern in checks:
        if message := _scheduler_violation(value, member, limit, pattern):
            return aws_error(call, 400, "ValidationException", message)
    return None


RULES = [
    StrictRule(
        "scheduler.name_limits",
        "scheduler",
        ("CreateSchedule", "UpdateSchedule", "CreateScheduleGroup"),
        before=scheduler_name_limits,
    ),
    StrictRule("iam.name_limits", "iam", tuple(_IAM_LIMITS), before=iam_name_limits),
    StrictRule(
        "ecr.repository_name_length",
        "ecr",
        ("CreateRepository",),
        before=ecr_repository_name_length,
    ),
]
