"""What ECS and Fargate do to a task definition, which a rendered template must allow for.

Pure functions over the definition (no AWS, no Docker), each rule with where it comes from:

- **Execution role.** ECS refuses a definition with container `secrets`, an ECR image on Fargate,
  or the awslogs driver on Fargate when it has no `executionRoleArn` (texts in
  tests/stack/strict/ecs.py; hashicorp/terraform-provider-aws#6503, #3051;
  virtual-kubelet/virtual-kubelet#193).
- **Defaults ECS fills in.** DescribeTaskDefinition answers values the template never sent, so a
  comparison must drop them on both sides: `healthCheck` interval 30 / timeout 5 / retries 3
  (ECS API `HealthCheck`; eagletmt/hako#56), environment entries whose value is empty are dropped
  (hashicorp/terraform-provider-aws#39533), EFS volumes get `rootDirectory "/"` and
  `transitEncryption "DISABLED"` (ECS API `EFSVolumeConfiguration`; terraform-provider-aws#19549).
  Contract fixtures: tests/fixtures/ecs/.
- **Read-only root file system.** ECS supports `linuxParameters.tmpfs` on Fargate since 2026-01
  (aws/containers-roadmap#736; before, the API reference said "not supported for tasks run on
  Fargate"), so every wired container gets a small tmpfs at the credentials directory
  (wiring.credentials_tmpfs) unless a writable task volume covers it.
- **tmpfs and the platform version.** Fargate's Linux platform versions before 1.4.0 predate
  tmpfs support (1.4.0 is the version whose revisions shipped it, and what LATEST means), so a
  task with a tmpfs mount on a pinned older version (`run.platform_version`) is refused at
  RunTask/CreateService with ECS's capability refusal, "One or more of the requested capabilities
  are not supported." (PlatformTaskDefinitionIncompatibilityException; the text as reported for
  EFS on 1.3.0 in ansible/ansible#70625 and jenkinsci/amazon-ecs-plugin#218).
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from gcpfargate.errors import TemplateError

# <account>.dkr.ecr[-fips].<region>.<partition suffix>/repository
_ECR_IMAGE = re.compile(r"^\d{12}\.dkr\.ecr(-fips)?\.[a-z0-9-]+\.[a-z0-9.-]+/")
_HEALTH_CHECK_DEFAULTS = {"interval": 30, "timeout": 5, "retries": 3}
_EFS_DEFAULTS = {"rootDirectory": "/", "transitEncryption": "DISABLED"}


# The first Fargate Linux platform version that mounts tmpfs (see the module docstring).
TMPFS_PLATFORM = (1, 4, 0)


def platform_tuple(version: str) -> tuple[int, ...] | None:
    """`1.3.0` → (1, 3, 0); None for LATEST or what is not a version number (ECS judges those)."""
    parts = version.strip().split(".")
    if not version.strip() or not all(part.isdigit() for part in parts):
        return None
    return tuple(int(part) for part in parts)


def tmpfs_containers(definition: Mapping[str, Any]) -> list[str]:
    """The containers of `definition` that mount a tmpfs."""
    return [
        str(container.get("name"))
        for container in _containers(definition)
        if (container.get("linuxParameters") or {}).get("tmpfs")
    ]


def refuse_tmpfs_platform(names: Iterable[str], platform_version: str, where: str) -> None:
    """Refuse tmpfs mounts in the containers `names` when run.platform_version pins a Fargate
    platform version older than tmpfs support: ECS would register the definition and refuse every
    task, so the refusal comes before anything is written."""
    shown = sorted(set(names))
    version = platform_tuple(platform_version)
    if not shown or version is None or version >= TMPFS_PLATFORM:
        return
    pinned = ".".join(str(part) for part in TMPFS_PLATFORM)
    raise TemplateError(
        f"{where}: container {', '.join(shown)} mounts a tmpfs (the key's, or the template's own), "
        f"but run.platform_version pins Fargate platform version {platform_version.strip()}, "
        f"which has no tmpfs support (it needs {pinned} or later); ECS would refuse every task",
        f'Set run.platform_version = "{pinned}" or "LATEST" (GCPFARGATE_RUN_PLATFORM_VERSION)',
    )


def _containers(definition: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [c for c in definition.get("containerDefinitions") or [] if isinstance(c, dict)]


def needs_execution_role(definition: Mapping[str, Any], registry_host: str = "") -> str:
    """Why ECS would refuse `definition` without an executionRoleArn; "" when it would not."""
    fargate = "FARGATE" in (definition.get("requiresCompatibilities") or [])
    for container in _containers(definition):
        if container.get("secrets"):
            return f"container {container.get('name')} has secrets"
        if not fargate:
            continue
        image = str(container.get("image", ""))
        if _ECR_IMAGE.match(image) or (registry_host and image.startswith(registry_host + "/")):
            return f"container {container.get('name')} runs an ECR image on Fargate"
        if (container.get("logConfiguration") or {}).get("logDriver") == "awslogs":
            return f"container {container.get('name')} logs to awslogs on Fargate"
    return ""


def missing_execution_role(definition: Mapping[str, Any], registry_host: Callable[[], str]) -> str:
    """Why `definition` needs the executionRoleArn it lacks; "" when it has one or needs none. The
    registry host (it may cost a request) is asked for only when nothing else already decides."""
    if definition.get("executionRoleArn"):
        return ""
    return needs_execution_role(definition) or needs_execution_role(definition, registry_host())


def empty_environment(definition: Mapping[str, Any]) -> list[str]:
    """One warning per environment entry ECS will drop because its value is empty."""
    return [
        f"container {container.get('name')}: environment variable {item.get('name')} has an empty "
        "value; ECS drops it, so the container will not see it (leave it out, or give it a value)"
        for container in _containers(definition)
        for item in container.get("environment") or []
        if isinstance(item, dict) and item.get("value") in ("", None)
    ]


def check_read_only_root(
    definition: Mapping[str, Any],
    credentials_path: str,
    targets: Iterable[str],
    where: str,
    what: str = "the key",
) -> None:
    """Refuse a target container whose read-only root leaves the wrapper nowhere to write `what`
    (the key, or keyless mode's credential configuration: the same wrapper writes both)."""
    directory = posixpath.dirname(credentials_path) or "/"
    names = set(targets)
    for container in _containers(definition):
        if container.get("name") not in names or not container.get("readonlyRootFilesystem"):
            continue
        if any(covers(mount, directory) for mount in container.get("mountPoints") or []):
            continue
        tmpfs = (container.get("linuxParameters") or {}).get("tmpfs") or []
        if any(covers(mount, directory) for mount in tmpfs):
            continue
        raise TemplateError(
            f"{where}: container {container.get('name')} has readonlyRootFilesystem, so {what} "
            f"cannot be written to {credentials_path} (no writable mount or tmpfs there)",
            f'Mount a task volume at {directory}: "volumes": [{{"name": "credentials"}}] and '
            f'"mountPoints": [{{"sourceVolume": "credentials", "containerPath": "{directory}"}}], '
            "or change task.credentials_path",
        )


def covers(mount: Mapping[str, Any], directory: str) -> bool:
    path = str(mount.get("containerPath") or "").rstrip("/") or "/"
    if mount.get("readOnly"):
        return False
    return directory == path or directory.startswith(path if path == "/" else path + "/")


def writable_mounts(container: Mapping[str, Any]) -> list[str]:
    """The container paths a task mounts writable (what run-local gives a read-only container)."""
    return [
        str(mount["containerPath"])
        for mount in container.get("mountPoints") or []
        if mount.get("containerPath") and not mount.get("readOnly")
    ]


def drop_ecs_defaults(definition: dict[str, Any]) -> None:
    """Remove, in place, the values ECS fills in when they equal its defaults (for comparisons
    only)."""
    for container in _containers(definition):
        check = container.get("healthCheck")
        if isinstance(check, dict):
            for key, default in _HEALTH_CHECK_DEFAULTS.items():
                if check.get(key) == default:
                    check.pop(key)
        if isinstance(container.get("environment"), list):
            container["environment"] = [
                item
                for item in container["environment"]
                if not (isinstance(item, dict) and item.get("value") in ("", None))
            ]
    for volume in definition.get("volumes") or []:
        efs = volume.get("efsVolumeConfiguration") if isinstance(volume, dict) else None
        if isinstance(efs, dict):
            for name, filled in _EFS_DEFAULTS.items():
                if efs.get(name) == filled:
                    efs.pop(name)


# -- what Fargate cannot run --------------------------------------------------------------------
def ensure_fargate(definition: dict[str, Any]) -> bool:
    """Add FARGATE to `requiresCompatibilities`, in place, so ECS checks the Fargate rules when it
    registers the definition (without it ECS registers an EC2-only definition that `run`,
    `schedule` and services then cannot start on Fargate). True when it was added."""
    found = definition.get("requiresCompatibilities")
    if isinstance(found, list) and "FARGATE" in found:
        return False
    definition["requiresCompatibilities"] = [*(found if isinstance(found, list) else []), "FARGATE"]
    return True


_FARGATE_RESOURCES = ("GPU", "InferenceAccelerator")


def unsupported_on_fargate(definition: Mapping[str, Any]) -> list[tuple[str, str]]:
    """What in `definition` Fargate cannot run, each as (problem naming the field, fix). Sources:
    the ECS developer guide, "Amazon ECS task definition differences for Fargate" (links, host
    volumes with sourcePath, placement constraints, GPU and Inference accelerators, ipcMode and
    pidMode host, Docker volumes are not supported on Fargate); the refusal texts ECS sends are in
    tests/stack/strict/ecs.py."""
    problems: list[tuple[str, str]] = []
    for index, container in enumerate(definition.get("containerDefinitions") or []):
        if not isinstance(container, dict):
            continue
        where = f"containerDefinitions[{index}] ({container.get('name')})"
        if container.get("links"):
            problems.append(
                (
                    f"{where}.links: Fargate (awsvpc) does not support links",
                    "Remove links: containers of one task reach each other on localhost "
                    "(127.0.0.1:<port>)",
                )
            )
        for item in container.get("resourceRequirements") or []:
            if isinstance(item, dict) and item.get("type") in _FARGATE_RESOURCES:
                problems.append(
                    (
                        f"{where}.resourceRequirements: {item.get('type')} resources are not "
                        "available on Fargate",
                        "Remove the resourceRequirements entry (Fargate has no GPUs or "
                        "accelerators; run such a task on EC2 capacity without gcpfargate)",
                    )
                )
    for index, volume in enumerate(definition.get("volumes") or []):
        if not isinstance(volume, dict):
            continue
        name = volume.get("name")
        if (volume.get("host") or {}).get("sourcePath"):
            problems.append(
                (
                    f"volumes[{index}] ({name}).host.sourcePath: Fargate has no host paths",
                    'Remove "host" (a volume with only a name is task storage shared by the '
                    "task's containers), or use efsVolumeConfiguration for data that must last",
                )
            )
        if volume.get("dockerVolumeConfiguration"):
            problems.append(
                (
                    f"volumes[{index}] ({name}).dockerVolumeConfiguration: Fargate does not "
                    "support Docker volumes",
                    "Remove dockerVolumeConfiguration (a volume with only a name is task storage), "
                    "or use efsVolumeConfiguration",
                )
            )
    if definition.get("placementConstraints"):
        problems.append(
            (
                "placementConstraints: Fargate places tasks itself and does not support them",
                "Remove placementConstraints (choose subnets in [run] to pick zones)",
            )
        )
    if definition.get("inferenceAccelerators"):
        problems.append(
            (
                "inferenceAccelerators: Inference accelerators are not available on Fargate",
                "Remove inferenceAccelerators",
            )
        )
    if definition.get("ipcMode"):
        problems.append(("ipcMode: Fargate does not support ipcMode", "Remove ipcMode"))
    if definition.get("pidMode") == "host":
        problems.append(
            (
                'pidMode "host": Fargate supports only "task"',
                'Remove pidMode, or set "pidMode": "task"',
            )
        )
    return problems


def refuse_windows(definition: Mapping[str, Any], where: str) -> None:
    """The wrapper that writes the key is POSIX sh: refuse a Windows task it would be in."""
    family = str((definition.get("runtimePlatform") or {}).get("operatingSystemFamily") or "")
    if family.startswith("WINDOWS"):
        raise TemplateError(
            f"{where}: runtimePlatform.operatingSystemFamily is {family}, but the start-up wrapper "
            "that writes the key is a POSIX sh script, which Windows containers cannot run",
            'Use "operatingSystemFamily": "LINUX" with a Linux image, or set '
            "task.wire_credentials = false and deliver the credentials yourself",
        )
