"""ECS task definitions: what RegisterTaskDefinition refuses, what ECS fills in, how it sorts.

Refusals answer `ClientException` (HTTP 400) with the text ECS sends. Defaults are applied to the
request before moto stores it, the way ECS stores the filled-in definition: RegisterTaskDefinition,
DescribeTaskDefinition and DescribeTasks then all agree, as they do on AWS.
"""

from __future__ import annotations

import base64
import copy
import json
import re
from typing import Any

from tests.stack.proxybase import Answer, Call, aws_error
from tests.stack.strict.layer import StrictLayer, StrictRule

ECS_TARGET = "AmazonEC2ContainerServiceV20141113"
# <account>.dkr.ecr.<region>.amazonaws.com[.cn]/repo (also FIPS and dual-stack hosts).
_ECR_IMAGE = re.compile(r"^\d{12}\.dkr\.ecr(-fips)?\.[a-z0-9-]+\.(amazonaws\.com(\.cn)?|api\.aws)/")


def _containers(task_definition: dict[str, Any]) -> list[dict[str, Any]]:
    return list(task_definition.get("containerDefinitions") or [])


def _fargate(task_definition: dict[str, Any]) -> bool:
    return "FARGATE" in (task_definition.get("requiresCompatibilities") or [])


def _refuse(call: Call, message: str) -> Answer:
    return aws_error(call, 400, "ClientException", message)


# -- refusals ---------------------------------------------------------------------------------
def secrets_need_execution_role(layer: StrictLayer, call: Call) -> Answer | None:
    # Source: hashicorp/terraform-provider-aws#6503 and fabfuel/ecs-deploy#87 (the text as ECS sends
    # it);
    # https://docs.aws.amazon.com/AmazonECS/latest/developerguide/specifying-sensitive-data.html
    # ("the task execution role ... is required"). Any launch type.
    task_definition = call.json()
    if task_definition.get("executionRoleArn"):
        return None
    if any(container.get("secrets") for container in _containers(task_definition)):
        return _refuse(
            call,
            "When you are specifying container secrets, you must also specify a value for "
            "'executionRoleArn'.",
        )
    return None


def fargate_ecr_image_needs_execution_role(layer: StrictLayer, call: Call) -> Answer | None:
    # Source: hashicorp/terraform-provider-aws#3051, jenkinsci/amazon-ecs-plugin#53,
    # nathanpeck/aws-cloudformation-fargate#1 ("Fargate requires task definition to have execution
    # role ARN to support ECR images."). The stack's own registry counts as ECR
    # (Settings.ecr_hosts).
    task_definition = call.json()
    if task_definition.get("executionRoleArn") or not _fargate(task_definition):
        return None
    hosts = tuple(f"{host}/" for host in layer.settings.ecr_hosts)
    for container in _containers(task_definition):
        image = str(container.get("image", ""))
        if _ECR_IMAGE.match(image) or (hosts and image.startswith(hosts)):
            return _refuse(
                call,
                "Fargate requires task definition to have execution role ARN to support ECR "
                "images.",
            )
    return None


def fargate_awslogs_needs_execution_role(layer: StrictLayer, call: Call) -> Answer | None:
    # Source: virtual-kubelet/virtual-kubelet#193 ("ClientException: Fargate requires task
    # definition to have execution role ARN to support log driver awslogs.", status 400).
    task_definition = call.json()
    if task_definition.get("executionRoleArn") or not _fargate(task_definition):
        return None
    for container in _containers(task_definition):
        if (container.get("logConfiguration") or {}).get("logDriver") == "awslogs":
            return _refuse(
                call,
                "Fargate requires task definition to have execution role ARN to support log "
                "driver awslogs.",
            )
    return None


# Fargate's task sizes (cpu units -> memory MiB), from the ECS developer guide, "Task size"
# (docs.aws.amazon.com/AmazonECS/latest/developerguide/task_definition_parameters.html#task_size).
# Written out here, not imported from the product: the layer must not agree by construction.
_FARGATE_SIZES = {
    256: (512, 1024, 2048),
    512: tuple(range(1024, 4097, 1024)),
    1024: tuple(range(2048, 8193, 1024)),
    2048: tuple(range(4096, 16385, 1024)),
    4096: tuple(range(8192, 30721, 1024)),
    8192: tuple(range(16384, 61441, 4096)),
    16384: tuple(range(32768, 122881, 8192)),
}


def _units(text: str, per_unit: int) -> int | None:
    """ECS takes "1024", "1 vCPU", "2 GB" (ECS API TaskDefinition `cpu`/`memory`)."""
    match = re.fullmatch(r"\s*(\d*\.?\d+)\s*([A-Za-z]*)\s*", text)
    if not match:
        return None
    number = float(match.group(1)) * (per_unit if match.group(2) else 1)
    return int(number) if number == int(number) else None


def fargate_task_rules(layer: StrictLayer, call: Call) -> Answer | None:
    """What RegisterTaskDefinition refuses when requiresCompatibilities names FARGATE. ECS checks
    these at register, not at RunTask; texts as ECS sends them, each with its source."""
    task_definition = call.json()
    if not _fargate(task_definition):
        return None
    if task_definition.get("networkMode") != "awsvpc":
        # Source: aws/amazon-ecs-cli#1145 and awslabs/ecs-nginx-reverse-proxy#1 ("ClientException:
        # Fargate only supports network mode ‘awsvpc’.", with typographic quotes).
        return _refuse(call, "Fargate only supports network mode \u2018awsvpc\u2019.")
    for container in _containers(task_definition):
        if container.get("links"):
            # Source: aws-observability/aws-otel-collector#1359 ("Links are not supported when
            # networkMode=awsvpc."); any awsvpc definition, so any Fargate one.
            return _refuse(call, "Links are not supported when networkMode=awsvpc.")
    for volume in task_definition.get("volumes") or []:
        if (volume.get("host") or {}).get("sourcePath"):
            # Source: cloudposse/terraform-aws-ecs-alb-service-task#174 ("ClientException: Fargate
            # compatible task definitions do not support sourcePath"); older answers said
            # "host.sourcePath should not be set for volumes in Fargate." (aws/amazon-ecs-cli#501).
            return _refuse(call, "Fargate compatible task definitions do not support sourcePath")
    if task_definition.get("ipcMode"):
        # Source: cn-terraform/terraform-aws-ecs-fargate#2 ("ClientException: Tasks using the
        # Fargate launch type do not support ipcMode.", status 400).
        return _refuse(call, "Tasks using the Fargate launch type do not support ipcMode.")
    for name in ("cpu", "memory"):
        if not task_definition.get(name):
            # Source: mongodb/terraform-aws-ecs-task-definition#38, hashicorp/terraform-provider-
            # aws#6879 ('cpu'); aws/amazon-ecs-cli#982 ('memory').
            return _refuse(call, f"Fargate requires that '{name}' be defined at the task level.")
    cpu = _units(str(task_definition["cpu"]), 1024)
    memory = _units(str(task_definition["memory"]), 1024)
    if cpu not in _FARGATE_SIZES or memory not in _FARGATE_SIZES[cpu]:
        # Source: aws-games/cloud-game-development-toolkit#737 ("ClientException: No Fargate
        # configuration exists for given values: 1024 CPU, 1024 memory. See the Amazon ECS
        # documentation for the valid values."); towardsthecloud/aws-cdk-examples#1.
        return _refuse(
            call,
            f"No Fargate configuration exists for given values: {task_definition['cpu']} CPU, "
            f"{task_definition['memory']} memory. See the Amazon ECS documentation for the valid "
            "values.",
        )
    return None


# Fargate Linux platform versions before 1.4.0 have no tmpfs support (tmpfs shipped on Fargate in
# 2026-01, aws/containers-roadmap#736, after 1.4.0 became LATEST). ECS registers such a definition
# and refuses to start it on an older pinned version.
_TMPFS_PLATFORM = (1, 4, 0)


def _platform(version: str) -> tuple[int, ...] | None:
    parts = version.split(".")
    return tuple(int(p) for p in parts) if version and all(p.isdigit() for p in parts) else None


def tmpfs_platform_version(layer: StrictLayer, call: Call) -> Answer | None:
    """RunTask, CreateService, UpdateService with a pinned platformVersion older than 1.4.0 for a
    task definition that mounts a tmpfs."""
    request = call.json()
    version = _platform(str(request.get("platformVersion") or ""))
    if version is None or version >= _TMPFS_PLATFORM or not request.get("taskDefinition"):
        return None
    described = layer.upstream_json(
        call,
        f"{ECS_TARGET}.DescribeTaskDefinition",
        {"taskDefinition": request["taskDefinition"]},
    )
    task_definition = described.get("taskDefinition") or {}
    if not any(
        (container.get("linuxParameters") or {}).get("tmpfs")
        for container in _containers(task_definition)
    ):
        return None
    # Source: the capability refusal ECS sends when the pinned platform version lacks a feature the
    # task definition uses, as reported for EFS volumes on 1.3.0 (ansible/ansible#70625,
    # CreateService; jenkinsci/amazon-ecs-plugin#218, RunTask): code
    # PlatformTaskDefinitionIncompatibilityException, "One or more of the requested capabilities
    # are not supported." No public report quotes it for tmpfs yet; it is the same check.
    return aws_error(
        call,
        400,
        "PlatformTaskDefinitionIncompatibilityException",
        "One or more of the requested capabilities are not supported.",
    )


# -- what ECS fills in -------------------------------------------------------------------------
def _rewrite(call: Call, change: Any) -> Call | None:
    """The call with `change` applied to its task definition; None when nothing changed."""
    original = call.json()
    task_definition = copy.deepcopy(original)
    change(task_definition)
    if task_definition == original:
        return None
    return Call(call.method, call.path, call.headers, json.dumps(task_definition).encode())


def health_check_defaults(layer: StrictLayer, call: Call) -> Call | None:
    # Source: https://docs.aws.amazon.com/AmazonECS/latest/APIReference/API_HealthCheck.html
    # (interval default 30, timeout 5, retries 3; startPeriod "disabled by default", so absent);
    # eagletmt/hako#56 ("DescribeTaskDefinition returns interval=30 even if RegisterTaskDefinition
    # is called without" it); terraform-aws-modules/terraform-aws-ecs#149 (a new revision on every
    # apply).
    def change(task_definition: dict[str, Any]) -> None:
        for container in _containers(task_definition):
            check = container.get("healthCheck")
            if isinstance(check, dict):
                for key, default in (("interval", 30), ("timeout", 5), ("retries", 3)):
                    check.setdefault(key, default)

    return _rewrite(call, change)


def drop_empty_environment(layer: StrictLayer, call: Call) -> Call | None:
    # Source: hashicorp/terraform-provider-aws#39533 ("AWS seems to filter out those environment
    # variables" whose value is "" or null: a permanent diff); aws-actions/amazon-ecs-deploy-task-
    # definition#216/#224 (an entry without a value is removed, so the container never sees it).
    def change(task_definition: dict[str, Any]) -> None:
        for container in _containers(task_definition):
            if "environment" in container:
                container["environment"] = [
                    entry
                    for entry in container["environment"] or []
                    if entry.get("value") not in (None, "")
                ]

    return _rewrite(call, change)


def efs_volume_defaults(layer: StrictLayer, call: Call) -> Call | None:
    # Source:
    # https://docs.aws.amazon.com/AmazonECS/latest/APIReference/API_EFSVolumeConfiguration.html
    # (rootDirectory: omitted means the root, "/"; transitEncryption: "If this parameter is omitted,
    # the default value of DISABLED is used"); hashicorp/terraform-provider-aws#19549 (the "/" that
    # comes back makes the definition "always changed"); eagletmt/hako#105 (compares root_directory
    # with a default of "/").
    def change(task_definition: dict[str, Any]) -> None:
        for volume in task_definition.get("volumes") or []:
            efs = volume.get("efsVolumeConfiguration")
            if isinstance(efs, dict):
                efs.setdefault("rootDirectory", "/")
                efs.setdefault("transitEncryption", "DISABLED")

    return _rewrite(call, change)


def awsvpc_port_mappings(layer: StrictLayer, call: Call) -> Call | None:
    # Source: https://docs.aws.amazon.com/AmazonECS/latest/APIReference/API_PortMapping.html
    # (awsvpc: "hostPort can be left blank or it must be the same value as the containerPort";
    # protocol "The default is tcp"); hashicorp/terraform-provider-aws
    # task_definition_equivalency.go (sets hostPort = containerPort for awsvpc before comparing,
    # because ECS returns it so).
    def change(task_definition: dict[str, Any]) -> None:
        awsvpc = task_definition.get("networkMode") == "awsvpc"
        for container in _containers(task_definition):
            for mapping in container.get("portMappings") or []:
                if "containerPort" in mapping:
                    mapping.setdefault("protocol", "tcp")
                    if awsvpc:
                        mapping.setdefault("hostPort", mapping["containerPort"])

    return _rewrite(call, change)


# -- ListTaskDefinitions sort -----------------------------------------------------------------
def list_sort(layer: StrictLayer, call: Call) -> Answer | None:
    # Source: https://docs.aws.amazon.com/AmazonECS/latest/APIReference/API_ListTaskDefinitions.html
    # ("sort: The order to sort the results in ... DESC ... newest revisions first"); moto returns
    # ascending whatever `sort` says (gcpfargate issue 14, item 3). We read every page from moto,
    # sort by family and revision, and page the result ourselves.
    request = call.json()
    arns: list[str] = []
    query = {k: v for k, v in request.items() if k in ("familyPrefix", "status")}
    while True:
        page = layer.upstream_json(call, f"{ECS_TARGET}.ListTaskDefinitions", query)
        arns.extend(page.get("taskDefinitionArns", []))
        if not page.get("nextToken"):
            break
        query["nextToken"] = page["nextToken"]

    def key(arn: str) -> tuple[str, int]:
        family, _, revision = arn.rpartition("/")[2].rpartition(":")
        return family, int(revision or 0)

    arns.sort(key=key, reverse=request.get("sort") == "DESC")
    start = int(base64.b64decode(request["nextToken"]).decode()) if request.get("nextToken") else 0
    size = int(request.get("maxResults") or 100)
    answer: dict[str, Any] = {"taskDefinitionArns": arns[start : start + size]}
    if start + size < len(arns):
        answer["nextToken"] = base64.b64encode(str(start + size).encode()).decode()
    return Answer(
        200, json.dumps(answer).encode(), [("Content-Type", "application/x-amz-json-1.1")]
    )


REGISTER = ("RegisterTaskDefinition",)
RULES = [
    StrictRule(
        "ecs.secrets_need_execution_role", "ecs", REGISTER, before=secrets_need_execution_role
    ),
    StrictRule(
        "ecs.fargate_ecr_image_needs_execution_role",
        "ecs",
        REGISTER,
        before=fargate_ecr_image_needs_execution_role,
    ),
    StrictRule(
        "ecs.fargate_awslogs_needs_execution_role",
        "ecs",
        REGISTER,
        before=fargate_awslogs_needs_execution_role,
    ),
    StrictRule("ecs.fargate_task_rules", "ecs", REGISTER, before=fargate_task_rules),
    StrictRule("ecs.health_check_defaults", "ecs", REGISTER, before=health_check_defaults),
    StrictRule("ecs.drop_empty_environment", "ecs", REGISTER, before=drop_empty_environment),
    StrictRule("ecs.efs_volume_defaults", "ecs", REGISTER, before=efs_volume_defaults),
    StrictRule("ecs.awsvpc_port_mappings", "ecs", REGISTER, before=awsvpc_port_mappings),
    StrictRule("ecs.list_sort", "ecs", ("ListTaskDefinitions",), before=list_sort),
    StrictRule(
        "ecs.tmpfs_platform_version",
        "ecs",
        ("RunTask", "CreateService", "UpdateService"),
        before=tmpfs_platform_version,
    ),
]
