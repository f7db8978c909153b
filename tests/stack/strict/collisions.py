"""Forced collisions: the first create of a named resource loses a race it did not know it ran.

Two gcpfargate processes (two CI jobs) can both see "no secret" and both call CreateSecret; one gets
"already exists". The product's already-exists branches run only when such interleaving happens by
chance (gcpfargate issue 14, item 4). With this rule on, the FIRST create of each name is forwarded
(the resource really is created, as if by the other process) and then answered with the error the
service sends for a name that exists. `collisions_fired` counts how often, per operation.

Off by default: it is a fault to inject, not a rule AWS always applies.
"""

from __future__ import annotations

from collections import Counter

from tests.stack.proxybase import Answer, Call, aws_error
from tests.stack.strict.layer import StrictLayer, StrictRule


def _already_exists(layer: StrictLayer, call: Call) -> tuple[str, int, str, str] | None:
    """(name, status, code, message) of the refusal for this create, or None for other calls."""
    operation = call.operation
    if operation == "CreateRole":
        name = call.form().get("RoleName", "")
        # Source: botocore IAM model, EntityAlreadyExistsException (HTTP 409, code
        # EntityAlreadyExists); text as IAM sends it, "Role with name X already exists." (moto
        # mirrors it: iam/models.py).
        return name, 409, "EntityAlreadyExists", f"Role with name {name} already exists."
    body = call.json()
    if operation == "CreateSecret":
        name = str(body.get("Name", ""))
        # Source: getmoto/moto#9700, quoting real AWS: "ResourceExistsException ... The operation
        # failed because the secret Test already exists."
        return (
            name,
            400,
            "ResourceExistsException",
            f"The operation failed because the secret {name} already exists.",
        )
    if operation == "CreateLogGroup":
        name = str(body.get("logGroupName", ""))
        # Source:
        # https://docs.aws.amazon.com/AmazonCloudWatchLogs/latest/APIReference/API_CreateLogGroup.html
        # (ResourceAlreadyExistsException, HTTP 400: "The specified resource already exists."); the
        # message CloudWatch Logs sends for a log group is "The specified log group already exists".
        return name, 400, "ResourceAlreadyExistsException", "The specified log group already exists"
    if operation == "CreateRepository":
        name = str(body.get("repositoryName", ""))
        registry = str(body.get("registryId") or layer.settings.account_id)
        # Source: int128/create-ecr-repository-action and the ECR API reference
        # (RepositoryAlreadyExistsException, HTTP 400); text "The repository with name 'X' already
        # exists in the registry with id '123456789012'".
        return (
            name,
            400,
            "RepositoryAlreadyExistsException",
            (
                f"The repository with name '{name}' already exists in the registry with id "
                f"'{registry}'"
            ),
        )
    return None


def collide_first_create(layer: StrictLayer, call: Call) -> Answer | None:
    refusal = _already_exists(layer, call)
    if refusal is None:
        return None
    name, status, code, message = refusal
    key = (call.operation, name)
    with layer.state_lock:
        seen: set[tuple[str, str]] = layer.state.setdefault("collided", set())
        if key in seen:
            return None
        seen.add(key)
    created = layer.after(
        call, layer.forward(call)
    )  # other rules still see the create (role timing)
    if created.status >= 300:
        return (
            created  # a real refusal (it did exist, or the request was bad): pass it on unchanged
        )
    with layer.state_lock:
        fired: Counter[str] = layer.state.setdefault("collisions_fired", Counter())
        fired[call.operation] += 1
    return aws_error(call, status, code, message)


RULES = [
    StrictRule(
        "collisions.create_secret",
        "secretsmanager",
        ("CreateSecret",),
        before=collide_first_create,
        default=False,
    ),
    StrictRule(
        "collisions.create_role", "iam", ("CreateRole",), before=collide_first_create, default=False
    ),
    StrictRule(
        "collisions.create_log_group",
        "logs",
        ("CreateLogGroup",),
        before=collide_first_create,
        default=False,
    ),
    StrictRule(
        "collisions.create_repository",
        "ecr",
        ("CreateRepository",),
        before=collide_first_create,
        default=False,
    ),
]
