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
    # '<name>' at 'roleName' failed to satisfy constraint: Member must have length less than or equal
    # to 64"; the pattern wording is the same framework's ("Member must satisfy regular expression
    # pattern: ..."). Limits: botocore iam/2010-05-08/service-2.json roleNameType, policyNameType.
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
    # 'repositoryName' failed to satisfy constraint: 'must have length greater than or equal to 2'");
    # limits from botocore ecr/2015-09-21 RepositoryName (min 2, max 256). botocore itself refuses a
    # name under 2 before sending, and moto checks the pattern (with ECR's text) but not the length.
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


RULES = [
    StrictRule("iam.name_limits", "iam", tuple(_IAM_LIMITS), before=iam_name_limits),
    StrictRule(
        "ecr.repository_name_length",
        "ecr",
        ("CreateRepository",),
        before=ecr_repository_name_length,
    ),
]
