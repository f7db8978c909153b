"""Per-run overrides: one task definition, many jobs (`--command "manage.py migrate"`, `--env`,
`--cpu`).

`run` sends them as RunTask's `overrides`, `schedule` as the scheduler target's `Input` (EventBridge
Scheduler passes a templated ECS target's Input to RunTask as its overrides), and `run-local`
applies them to the local container. A command override replaces the container's `command` (Docker's
CMD) and keeps its `entryPoint`, exactly as ECS does with `containerOverrides.command`.

Override values are as readable as a task definition (DescribeTasks, CloudTrail, `aws scheduler
get-schedule`), so they get the task definition's key check: any key text in a `--command`, `--arg`
or `--env` name or value is refused (exit 2) before it is parsed further, and the message names
only the flag, never the value. `--env` may not set SHELLOPTS, BASHOPTS, BASH_ENV or ENV either:
they change how the start-up wrapper's shell runs (bash's xtrace would print the key).
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from typing import Any

from gcpfargate.awsspec.sizes import FARGATE_SIZES, parse_cpu, parse_memory
from gcpfargate.errors import UsageError
from gcpfargate.keymaterial.keyscan import key_paths, key_text
from gcpfargate.keymaterial.rules import shell_startup_problem

_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass(frozen=True)
class TaskOverrides:
    command: list[str] | None = None  # None: keep the definition's command
    environment: dict[str, str] = field(
        default_factory=dict, repr=False
    )  # values may be secret-ish
    cpu: str | None = None
    memory: str | None = None

    def __bool__(self) -> bool:
        return bool(self.command is not None or self.environment or self.cpu or self.memory)


def parse(
    command: str | None = None,
    args: list[str] | None = None,
    env: list[str] | None = None,
    cpu: str | None = None,
    memory: str | None = None,
) -> TaskOverrides:
    """The flags as given on the command line, checked before any AWS call."""
    refuse_key_text(command=command, args=args, env=env)
    if command is not None and args:
        raise UsageError(
            "--command and --arg exclude each other",
            'Give the whole command as one string (--command "manage.py migrate") or each word as '
            "--arg",
        )
    argv: list[str] | None = None
    if command is not None:
        try:
            argv = shlex.split(command)
        except ValueError as exc:
            raise UsageError(
                f"--command {command!r} cannot be split like a shell would: {exc}"
            ) from None
        if not argv:
            raise UsageError("--command is empty", "Give the program and its arguments")
    elif args:
        argv = list(args)
    environment: dict[str, str] = {}
    for item in env or []:
        name, sep, value = item.partition("=")
        if not sep or not _ENV_NAME.fullmatch(name):
            raise UsageError(
                f"--env {name if sep else item!r} is not NAME=VALUE",
                "For example --env LOG_LEVEL=debug",
            )
        if problem := shell_startup_problem(name):
            # The override reaches the essential container, whose start-up wrapper holds the key.
            raise UsageError(f"--env {name} is refused: {problem}", f"Remove --env {name}")
        environment[name] = value
    for flag, size, parser in (("--cpu", cpu, parse_cpu), ("--memory", memory, parse_memory)):
        if size is not None and parser(size) is None:
            raise UsageError(
                f"{flag} {size!r} is not a "
                f"{'Fargate cpu value' if flag == '--cpu' else 'memory size'}",
                'Use cpu units ("1024" or "1 vCPU") and MiB ("2048" or "2 GB")',
            )
    return TaskOverrides(argv, environment, cpu, memory)


def refuse_key_text(
    command: str | None = None,
    args: list[str] | None = None,
    env: list[str] | None = None,
    environment: dict[str, str] | None = None,
    argv: list[str] | None = None,
) -> None:
    """The task-definition key check on override values; the error names the flag, not the value."""
    for flag, value in (
        ("--command", command),
        ("--arg", args),
        ("--command", argv),
        ("--env", env),
        ("--env", environment),
    ):
        if value and key_paths(value, is_key=key_text):
            raise UsageError(
                f"{flag} holds what looks like private key text; it is refused because overrides "
                "are stored where anyone who can describe the task or schedule reads them",
                "Never pass a key as an override: gcpfargate delivers the key through secrets",
            )


def check_size(overrides: TaskOverrides, definition: dict[str, Any]) -> None:
    """A cpu/memory override (with the definition's other half) must be a Fargate task size."""
    if not (overrides.cpu or overrides.memory):
        return
    cpu = parse_cpu(str(overrides.cpu or definition.get("cpu") or ""))
    memory = parse_memory(str(overrides.memory or definition.get("memory") or ""))
    if cpu not in FARGATE_SIZES or memory not in FARGATE_SIZES.get(cpu or 0, []):
        allowed = FARGATE_SIZES.get(cpu or 0)
        raise UsageError(
            f"cpu {cpu} with memory {memory} is not a Fargate task size",
            f"With cpu {cpu}, memory must be between {allowed[0]} and {allowed[-1]} MiB"
            if allowed
            else f"Use --cpu {' / '.join(map(str, FARGATE_SIZES))}",
        )


def ecs_overrides(overrides: TaskOverrides, definition: dict[str, Any]) -> dict[str, Any]:
    """RunTask's `overrides` (also the Scheduler target's Input): {} when nothing is overridden."""
    check_size(overrides, definition)
    # Also here, the last step before RunTask or the schedule: overrides not made by parse().
    refuse_key_text(argv=overrides.command, environment=overrides.environment)
    result: dict[str, Any] = {}
    container: dict[str, Any] = {}
    if overrides.command is not None:
        container["command"] = overrides.command
    if overrides.environment:
        container["environment"] = [
            {"name": k, "value": v} for k, v in overrides.environment.items()
        ]
    if container:
        essential = next(
            (c for c in definition.get("containerDefinitions", []) if c.get("essential", True)),
            None,
        )
        if essential is None:
            raise UsageError("the task definition has no essential container to override")
        result["containerOverrides"] = [{"name": essential["name"], **container}]
    # RunTask's task-level overrides are strings, like the definition's own cpu and memory.
    if overrides.cpu:
        result["cpu"] = str(parse_cpu(overrides.cpu))
    if overrides.memory:
        result["memory"] = str(parse_memory(overrides.memory))
    return result
