"""What gcpfargate reads from ECS: task definitions, the cluster, and the network settings it runs
in.

One meaning of "not registered": `describe_task_definition` answers None, and a caller that cannot
go on without the revision raises `TaskDefinitionNotFound` through `require_task_definition`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gcpfargate.config import Settings
from gcpfargate.core.checks import Facts
from gcpfargate.core.context import Context
from gcpfargate.errors import AwsError, OperationError, TaskDefinitionNotFound

# What DescribeTaskDefinition answers for a family or revision that does not exist: ECS says
# ClientException ("Unable to describe task definition"); moto and some SDK versions say the others.
_NOT_REGISTERED = ("ClientException", "ResourceNotFoundException", "InvalidParameterException")
REGISTER_HINT = "Register it with `gcpfargate register-task` (or `gcpfargate deploy`)"


def describe_task_definition(
    ctx: Context, reference: str, tags: bool = False
) -> dict[str, Any] | None:
    """The revision `reference` names (`family` for its latest ACTIVE one, or `family:N`), with its
    tags under `tags` when asked for; None when it is not registered."""
    data = ctx.aws.find(
        "ecs",
        "describe_task_definition",
        _NOT_REGISTERED,
        f"read task definition {reference}",
        **_describe_params(reference, tags),
    )
    if data is None:
        return None
    definition = dict(data.get("taskDefinition") or {})
    if not definition:
        return None
    if data.get("tags"):
        definition["tags"] = data["tags"]
    return definition


def _describe_params(reference: str, tags: bool) -> dict[str, Any]:
    return {"taskDefinition": reference, **({"include": ["TAGS"]} if tags else {})}


def latest_active(ctx: Context, family: str) -> dict[str, Any] | None:
    """The latest ACTIVE revision of `family` with its tags (what register-task compares
    against)."""
    return describe_task_definition(ctx, family, tags=True)


def read_latest_ahead(ctx: Context, family: str) -> None:
    """Send `latest_active`'s read ahead (AwsClients.read_ahead)."""
    ctx.aws.read_ahead("ecs", "describe_task_definition", **_describe_params(family, True))


@dataclass(frozen=True)
class LatestRevision:
    """The family's latest ACTIVE revision as one step of `deploy` read it, handed to the next step
    so the read is made once; `definition` is None when the family has no ACTIVE revision."""

    definition: dict[str, Any] | None


def require_task_definition(
    ctx: Context, family: str, revision: int | None = None, hint: str = REGISTER_HINT
) -> dict[str, Any]:
    reference = f"{family}:{revision}" if revision else family
    definition = describe_task_definition(ctx, reference)
    if definition is None:
        raise TaskDefinitionNotFound(
            f"task definition {reference} does not exist (or has no ACTIVE revision)", hint
        )
    return definition


def runnable_task_definition(
    ctx: Context, family: str, revision: int | None = None
) -> dict[str, Any]:
    """The revision `run` and `schedule` start: registered, ACTIVE, and in the awsvpc mode Fargate
    needs."""
    definition = require_task_definition(ctx, family, revision)
    if definition.get("status") == "INACTIVE":
        raise OperationError(
            f"task definition {definition['taskDefinitionArn']} is INACTIVE (deregistered); "
            "ECS runs no new tasks from it",
            "Run the latest revision (omit --revision)",
        )
    mode = definition.get("networkMode")
    if mode and mode != "awsvpc":
        raise OperationError(
            f"task definition {definition['taskDefinitionArn']} uses network mode {mode}; "
            "Fargate needs awsvpc",
            'Set "networkMode": "awsvpc" in the template',
        )
    return definition


def network_configuration(settings: Settings, key_case: str = "lower") -> dict[str, Any]:
    """The awsvpcConfiguration from [run]: RunTask spells its keys camelCase, Scheduler
    PascalCase."""
    settings.require("run.subnets")
    subnets = list(settings.run.subnets)
    groups = list(settings.run.security_groups)
    public_ip = "ENABLED" if settings.run.assign_public_ip else "DISABLED"
    names = (
        ("subnets", "securityGroups", "assignPublicIp")
        if key_case == "lower"
        else ("Subnets", "SecurityGroups", "AssignPublicIp")
    )
    config: dict[str, Any] = {names[0]: subnets}
    if groups:  # none given: ECS uses the VPC's default security group
        config[names[1]] = groups
    config[names[2]] = public_ip
    return {"awsvpcConfiguration": config}


CLUSTER_HINT = "Create it (`aws ecs create-cluster --cluster-name NAME`) or set run.cluster"


def cluster_arn(ctx: Context, cluster: str) -> str:
    described = ctx.aws.call(
        "ecs", "describe_clusters", f"read ECS cluster {cluster}", clusters=[cluster]
    )
    for found in described.get("clusters") or []:
        if found.get("status", "ACTIVE") == "ACTIVE":
            return str(found["clusterArn"])
    raise AwsError(
        f"ECS cluster {cluster} does not exist (or is not ACTIVE)", CLUSTER_HINT
    ).with_code("ClusterNotFoundException")


def latest_revision(ctx: Context, facts: Facts) -> dict[str, Any] | None:
    """The family's latest ACTIVE revision, read once per doctor run."""
    if "revision_loaded" not in facts.extra:
        facts.revision = latest_active(ctx, ctx.settings.family)
        # Marked only once read: an unreadable revision is not "none".
        facts.extra["revision_loaded"] = True
    return facts.revision
