"""The state of the world as content, for comparisons: after a clean run vs after fault + rerun
(`shape`, one project), and before vs after a failed command (`snapshot`, everything in the stack).

Both read real content (policy documents, tags, repository and log-group settings, schedules,
registry manifests), every page of every list, and hide only what legitimately differs between two
projects (their names, key ids, image digests, timestamps).
"""

from __future__ import annotations

import json
import re
import urllib.request
from typing import Any

from tests.conftest import Project
from tests.reliability.helpers import latest_revision_arn, pages, secret_exists, secret_versions

VOLATILE = (
    "registeredAt",
    "createdAt",
    "creationTime",
    "CreateDate",
    "LastModifiedDate",
    "CreatedDate",
    "LastChangedDate",
    "LastAccessedDate",
    "registeredBy",
    "RoleId",
    "VersionId",
    "ResponseMetadata",
    "arn",
    "storedBytes",
    "metricFilterCount",
    "registryId",
)


def _strip(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _strip(v) for k, v in sorted(value.items()) if k not in VOLATILE}
    if isinstance(value, list):
        return [_strip(v) for v in value]
    return value


def _anonymous(project: Project, value: Any) -> Any:
    """`value` with the project's own names replaced, so two projects' worlds compare equal."""
    text = json.dumps(_strip(value), sort_keys=True, default=str)
    for name, placeholder in (
        (project.email, "<email>"),
        (project.family, "<family>"),
        (project.gcp_project, "<gcp-project>"),
        (project.account_id, "<account>"),
    ):
        text = text.replace(name, placeholder)
    text = re.sub(r"sha256:[0-9a-f]{64}", "sha256:<digest>", text)
    # The execution role's per-secret policy name ends in a digest of the region and secret name.
    text = re.sub(r'(gcpfargate-secret-[^"]*)-[0-9a-f]{8}(?=")', r"\1-<digest>", text)
    # Secrets Manager's random six-character suffix of an ARN.
    text = re.sub(r"(:secret:[^\"\s]+)-[A-Za-z0-9]{6}(?=\")", r"\1-<suffix>", text)
    return json.loads(text)


def role_content(iam: Any, name: str) -> dict[str, Any] | None:
    try:
        role = iam.get_role(RoleName=name)["Role"]
    except iam.exceptions.NoSuchEntityException:
        return None
    inline = {
        p: iam.get_role_policy(RoleName=name, PolicyName=p)["PolicyDocument"]
        for p in pages(iam, "list_role_policies", "PolicyNames", RoleName=name)
    }
    attached = sorted(
        p["PolicyArn"]
        for p in pages(iam, "list_attached_role_policies", "AttachedPolicies", RoleName=name)
    )
    return {
        "trust": role["AssumeRolePolicyDocument"],
        "description": role.get("Description"),
        "max_session": role.get("MaxSessionDuration"),
        "tags": iam.list_role_tags(RoleName=name)["Tags"],
        "inline": inline,
        "attached": attached,
    }


def shape(project: Project) -> dict[str, Any]:
    """One project's world: what a clean run leaves and a fault + rerun must reach."""
    sm, ecs, iam, ecr, logs = (
        project.aws(s) for s in ("secretsmanager", "ecs", "iam", "ecr", "logs")
    )
    emulator = project.stack.emulator
    states = [
        emulator.key_state(project.email, key_id) for key_id in emulator.key_ids(project.email)
    ]  # live keys
    world: dict[str, Any] = {
        "keys": {state: states.count(state) for state in sorted(set(states))},
        "stages": sorted(secret_versions(project)),
    }
    if secret_exists(project):
        described = sm.describe_secret(SecretId=project.secret_name)
        world["secret"] = {
            "description": described.get("Description"),
            "kms": described.get("KmsKeyId"),
            "tags": sorted(
                (_tag_key(t), _tag_value(t))
                for t in described.get("Tags", [])
                if t["Key"] != "gcpfargate:key-id"
            ),
        }
    arns = pages(ecs, "list_task_definitions", "taskDefinitionArns", familyPrefix=project.family)
    world["revisions"] = len(arns)
    latest = latest_revision_arn(project)
    if latest:
        answer = ecs.describe_task_definition(taskDefinition=latest, include=["TAGS"])
        world["task_definition"] = {**answer["taskDefinition"], "tags": answer.get("tags", [])}
        world["task_definition"].pop("revision", None)
        world["task_definition"].pop("taskDefinitionArn", None)
    repositories = [
        r
        for r in pages(ecr, "describe_repositories", "repositories")
        if r["repositoryName"] == project.family
    ]
    world["repository"] = [
        {**r, "tags": ecr.list_tags_for_resource(resourceArn=r["repositoryArn"])["tags"]}
        for r in repositories
    ]
    world["role"] = role_content(iam, f"gcpfargate-{project.family}-execution")
    groups = pages(
        logs, "describe_log_groups", "logGroups", logGroupNamePrefix=f"/ecs/{project.family}"
    )
    world["log_groups"] = [
        {**g, "tags": logs.list_tags_log_group(logGroupName=g["logGroupName"])["tags"]}
        for g in groups
    ]
    return _anonymous(project, world)


def _tag_key(tag: dict[str, str]) -> str:
    """Key ids differ between projects: a key's ownership record compares by its state alone."""
    from gcpfargate.credentials.key.lifecycle import TAG_OWNED

    return f"{TAG_OWNED}<id>" if tag["Key"].startswith(TAG_OWNED) else tag["Key"]


def _tag_value(tag: dict[str, str]) -> str:
    """Key ids differ between projects: the retired-keys record compares by how many it holds."""
    from gcpfargate.credentials.key.lifecycle import TAG_RETIRED

    return f"{len(tag['Value'].split())} key id(s)" if tag["Key"] == TAG_RETIRED else tag["Value"]


def registry_content(registry: str) -> dict[str, Any]:
    """Repository -> its tags, from the registry's own API, following every `Link: rel="next"` page."""

    def walk(path: str, key: str) -> list[str]:
        found: list[str] = []
        while path:
            with urllib.request.urlopen(f"http://{registry}{path}", timeout=10) as answer:
                found += json.loads(answer.read() or b"{}").get(key) or []
                link = re.match(r'<([^>]+)>;\s*rel="next"', answer.headers.get("Link") or "")
            path = link.group(1) if link else ""
        return found

    return {
        repository: sorted(walk(f"/v2/{repository}/tags/list?n=100", "tags"))
        for repository in walk("/v2/_catalog?n=100", "repositories")
    }


def snapshot(project: Project) -> dict[str, Any]:
    """Everything in the stack a failed command could have half-made or changed."""
    sm, iam, ecr, ecs, logs = (
        project.aws(s) for s in ("secretsmanager", "iam", "ecr", "ecs", "logs")
    )
    emulator = project.stack.emulator
    secrets = {}
    every = project.aws("secretsmanager", truth=True)  # ListSecrets without the simulated lag
    for secret in pages(every, "list_secrets", "SecretList", IncludePlannedDeletion=True):
        described = sm.describe_secret(SecretId=secret["ARN"])
        secrets[secret["Name"]] = {
            "stages": described.get("VersionIdsToStages"),
            "tags": described.get("Tags"),
            "description": described.get("Description"),
        }
    roles = {
        r["RoleName"]: role_content(iam, r["RoleName"]) for r in pages(iam, "list_roles", "Roles")
    }
    repositories = {
        r["repositoryName"]: r for r in pages(ecr, "describe_repositories", "repositories")
    }
    groups = {g["logGroupName"]: g for g in pages(logs, "describe_log_groups", "logGroups")}
    world = {
        "keys": {
            key_id: emulator.key_state(project.email, key_id)
            for key_id in emulator.key_ids(project.email, include_deleted=True)
        },
        "secrets": secrets,
        "roles": roles,
        "repositories": repositories,
        "task_definitions": pages(ecs, "list_task_definitions", "taskDefinitionArns"),
        "log_groups": groups,
        "schedules": _schedules(project),
        "registry": registry_content(project.stack.registry),
    }
    return json.loads(json.dumps(world, sort_keys=True, default=str))


def _schedules(project: Project) -> dict[str, Any]:
    scheduler = project.aws("scheduler")
    found = {}
    for item in pages(scheduler, "list_schedules", "Schedules"):
        group = item.get("GroupName", "default")
        found[f"{group}/{item['Name']}"] = _strip(
            scheduler.get_schedule(Name=item["Name"], GroupName=group)
        )
    return found


def differences(left: Any, right: Any, path: str = "") -> list[str]:
    """The paths where two worlds differ, with both values (for a readable assertion message)."""
    if isinstance(left, dict) and isinstance(right, dict):
        return [
            d
            for key in sorted(set(left) | set(right), key=str)
            for d in differences(left.get(key), right.get(key), f"{path}.{key}")
        ]
    if isinstance(left, list) and isinstance(right, list) and len(left) == len(right):
        return [
            d
            for index, (a, b) in enumerate(zip(left, right, strict=True))
            for d in differences(a, b, f"{path}[{index}]")
        ]
    return [] if left == right else [f"{path}: {left!r} != {right!r}"]
