"""Judge what an IAM role may do from its own policy documents.

A small, local evaluation of identity policies: explicit Deny beats Allow beats the implicit
deny; Action/NotAction and Resource/NotResource with `*` and `?` wildcards. Statements with a
Condition cannot be judged offline, so they are reported as "conditional" rather than guessed.
Used by bootstrap (warn before a task fails to start), doctor and run-local.
"""

from __future__ import annotations

import hashlib
import json
import re
import urllib.parse
from collections.abc import Iterable
from dataclasses import dataclass
from enum import Enum
from functools import lru_cache
from typing import Any

EXECUTION_ROLE_POLICY_ARN_SUFFIX = ":policy/service-role/AmazonECSTaskExecutionRolePolicy"
ECS_TASKS_PRINCIPAL = "ecs-tasks.amazonaws.com"
# The one inline policy older versions kept on the execution role, rewritten by every deploy to
# name only its own region's secret; now split into one policy per secret (secret_policy_name).
INLINE_POLICY_NAME = "gcpfargate-secret-access"
SECRET_POLICY_PREFIX = "gcpfargate-secret-"


class Decision(str, Enum):
    ALLOWED = "allowed"
    DENIED = "denied"  # an explicit Deny matches
    NOT_ALLOWED = "not allowed"  # nothing allows it (implicit deny)
    CONDITIONAL = "conditional"  # only statements with conditions allow it


@dataclass(frozen=True)
class Judgement:
    decision: Decision
    reason: str

    @property
    def allowed(self) -> bool:
        return self.decision is Decision.ALLOWED


@lru_cache(maxsize=512)
def _wildcard(pattern: str, case_insensitive: bool) -> re.Pattern[str]:
    body = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.compile(body, re.I | re.S if case_insensitive else re.S)


def _matches(patterns: Any, value: str, case_insensitive: bool) -> bool:
    items = [patterns] if isinstance(patterns, str) else list(patterns or [])
    return any(_wildcard(str(p), case_insensitive).fullmatch(value) for p in items)


def _applies(statement: dict[str, Any], action: str, resource: str) -> bool:
    if "Action" in statement:
        action_ok = _matches(statement["Action"], action, True)
    else:
        action_ok = "NotAction" in statement and not _matches(statement["NotAction"], action, True)
    if not action_ok:
        return False
    if "Resource" in statement:
        return _matches(statement["Resource"], resource, False)
    return "NotResource" in statement and not _matches(statement["NotResource"], resource, False)


def statements(documents: Iterable[Any]) -> list[dict[str, Any]]:
    """Flatten policy documents (dicts, JSON strings, or URL-encoded JSON as IAM returns) into
    statements."""
    found: list[dict[str, Any]] = []
    for document in documents:
        if isinstance(document, str):
            text = document if document.lstrip().startswith("{") else urllib.parse.unquote(document)
            document = json.loads(text)
        body = document.get("Statement", [])
        found.extend([body] if isinstance(body, dict) else body)
    return found


def judge(documents: Iterable[Any], action: str, resource: str) -> Judgement:
    allow = conditional = False
    for statement in statements(documents):
        if not _applies(statement, action, resource):
            continue
        if statement.get("Effect") == "Deny":
            if "Condition" not in statement:
                return Judgement(
                    Decision.DENIED, f"an explicit Deny matches {action} on {resource}"
                )
            conditional = True
        elif statement.get("Effect") == "Allow":
            if "Condition" in statement:
                conditional = True
            else:
                allow = True
    if allow and not conditional:
        return Judgement(Decision.ALLOWED, f"{action} is allowed on {resource}")
    if allow or conditional:
        return Judgement(
            Decision.CONDITIONAL, f"{action} on {resource} depends on policy conditions"
        )
    return Judgement(Decision.NOT_ALLOWED, f"no policy allows {action} on {resource}")


def resource_policy_allows(document: Any, action: str, principals: Iterable[str]) -> bool:
    """Whether a resource policy (an ECR repository's) allows `action` to any of `principals` (an
    account id, its root ARN, a role ARN) by a statement without conditions, and no Deny names it.
    Conditions (aws:PrincipalOrgID, …) are not evaluated: such a grant does not count."""
    wanted = list(principals)

    def names(statement: dict[str, Any]) -> bool:
        principal = statement.get("Principal", {})
        if principal == "*":
            return True
        aws = principal.get("AWS", []) if isinstance(principal, dict) else []
        return any(_matches(aws, each, False) for each in wanted)

    allowed = False
    for statement in statements([document]):
        action_ok = (
            _matches(statement["Action"], action, True)
            if "Action" in statement
            else "NotAction" in statement and not _matches(statement["NotAction"], action, True)
        )
        if not action_ok or not names(statement):
            continue
        if statement.get("Effect") == "Deny":
            return False
        if statement.get("Effect") == "Allow" and "Condition" not in statement:
            allowed = True
    return allowed


def trusts(trust_policy: Any, service: str) -> bool:
    """Whether a role's trust policy lets `service` (such as ecs-tasks.amazonaws.com) assume the
    role."""
    for statement in statements([trust_policy]):
        if statement.get("Effect") != "Allow" or not _matches(
            statement.get("Action", []), "sts:AssumeRole", True
        ):
            continue
        principal = statement.get("Principal", {})
        services = principal.get("Service", []) if isinstance(principal, dict) else []
        if _matches(services, service, True) or principal == "*":
            return True
    return False


def trust_policy() -> dict[str, Any]:
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Service": ECS_TASKS_PRINCIPAL},
                "Action": "sts:AssumeRole",
            }
        ],
    }


def secret_access_policy(secret_arn: str, kms_key_arn: str = "") -> dict[str, Any]:
    """Exactly what the execution role needs to hand the secret to the container, nothing more."""
    body: list[dict[str, Any]] = [
        {
            "Sid": "ReadGcpKeySecret",
            "Effect": "Allow",
            "Action": "secretsmanager:GetSecretValue",
            "Resource": secret_arn,
        },
    ]
    if kms_key_arn:
        body.append(
            {
                "Sid": "DecryptGcpKeySecret",
                "Effect": "Allow",
                "Action": "kms:Decrypt",
                "Resource": kms_key_arn,
            }
        )
    return {"Version": "2012-10-17", "Statement": body}


def secret_policy_name(region: str, secret_name: str) -> str:
    """The execution role's inline policy for one secret: one per region and secret name, so a
    deploy in another region (IAM roles are global) adds its own and never replaces this one. A
    secret deleted and created again under its name keeps the slot, with the new ARN."""
    readable = re.sub(r"[^\w+=,.@-]", ".", secret_name)[:64]
    digest = hashlib.sha256(f"{region}/{secret_name}".encode()).hexdigest()[:8]
    return f"{SECRET_POLICY_PREFIX}{region}-{readable}-{digest}"


def secret_of_arn(arn: str) -> tuple[str, str]:
    """(region, secret name) of a Secrets Manager secret ARN (its 6-character suffix dropped)."""
    parts = arn.split(":", 6)
    if len(parts) < 7 or parts[2] != "secretsmanager":
        return "", ""
    name = parts[6]
    return parts[3], re.sub(r"-[A-Za-z0-9]{6}$", "", name)


def secret_arns(document: Any) -> list[str]:
    """The secret ARNs a policy document lets read (GetSecretValue statements' resources)."""
    found: list[str] = []
    for statement in statements([document]):
        if statement.get("Effect") != "Allow" or not _matches(
            statement.get("Action", []), "secretsmanager:GetSecretValue", True
        ):
            continue
        resources = statement.get("Resource", [])
        found += [resources] if isinstance(resources, str) else list(resources)
    return [arn for arn in found if ":secretsmanager:" in arn]
