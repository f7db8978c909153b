"""run-local for a keyless task definition: the task role, the credential shim, then the app.

Fargate starts the shim sidecar, waits for its health check (the app `dependsOn` it HEALTHY), then
starts the app; with awsvpc both share the task's network namespace, so the shim's loopback port is
reachable by the task alone. Here the same: the shim container owns the task's namespace (network
`none` by default, or what `--network` names) and the app joins it (`container:<shim>`), so the
shim listens on the namespace's 127.0.0.1 at its own port and nothing listens on the host. Only
with `--network host` is the task's namespace the host's: then the shim is moved to a free port of
the machine (its `--port` and the config's shim URLs together), and every local user can reach it.

The shim reads the task role from an ECS-shaped endpoint inside the namespace (`local_agent`,
fed by `TaskRoleFeed` over the container's stdin), which serves the task role assumed through STS
with an ECS-shaped session name, never the developer's own credentials.
"""

from __future__ import annotations

import re
import socket
import time
from importlib import resources
from typing import Any

from gcpfargate.core.context import Context
from gcpfargate.credentials.keyless import local_agent
from gcpfargate.credentials.keyless.task_role import TaskRoleFeed
from gcpfargate.errors import OperationError
from gcpfargate.image import shim_image

HEALTHY_TIMEOUT_S = 60.0


def shim_container(definition: dict[str, Any]) -> dict[str, Any] | None:
    return next(
        (
            c
            for c in definition.get("containerDefinitions") or []
            if c.get("name") == shim_image.CONTAINER_NAME
        ),
        None,
    )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _move_port(text: str, old: str, new: int) -> str:
    return re.sub(rf"http://127\.0\.0\.1:{re.escape(old)}/", f"http://127.0.0.1:{new}/", text)


def _agent_entrypoint() -> list[str]:
    """The shim container's program in run-local: the in-namespace agent, which then runs the shim
    with the definition's `command` as its arguments (`python3 -c`: the pushed image is
    unchanged)."""
    source = resources.files("gcpfargate.credentials.keyless").joinpath("local_agent.py")
    return ["python3", "-c", source.read_text(), local_agent.PROGRAM_NAME]


def run_with_shim(
    ctx: Context, definition: dict[str, Any], shim: dict[str, Any], app_spec: Any, network: str
) -> int:
    """Start the shim, wait until HEALTHY, run the app (`app_spec`, a run-local ContainerSpec) in
    the shim's network namespace."""
    from gcpfargate.clients.engine.sidecar import Sidecar

    role_arn = str(definition.get("taskRoleArn") or "")
    if not role_arn:
        raise OperationError(
            "the task definition has the credential shim but no taskRoleArn",
            "Register it again with gcpfargate register-task (keyless mode)",
        )
    command = [str(part) for part in shim.get("command") or []]
    health = [str(part) for part in shim["healthCheck"]["command"][1:]]
    if network == "host":
        command, health = _move_to_free_port(command, health, app_spec)
        ctx.reporter.warn(
            "with --network host the task's network is the host's: every local user can reach "
            "the credential shim while the task runs (the default, none, keeps it inside the task)"
        )

    image = str(shim["image"])
    credentials = ctx.registry.credentials() if image.startswith(ctx.registry.host + "/") else None
    with ctx.reporter.step(f"Pulling {image}"):
        ctx.docker.pull(image, credentials)
    sidecar = Sidecar(ctx.docker, shim_image.CONTAINER_NAME)
    with (
        ctx.reporter.step(f"Assuming the task role {role_arn}"),
        TaskRoleFeed(ctx, role_arn) as feed,
    ):
        try:
            with ctx.reporter.step(
                f"Starting {shim_image.CONTAINER_NAME} and waiting until it is HEALTHY"
            ):
                sidecar.start(
                    image,
                    command,
                    {"AWS_REGION": ctx.aws.region},
                    network,
                    shim.get("user"),
                    bool(shim.get("readonlyRootFilesystem")),
                    entrypoint=_agent_entrypoint(),
                    stdin=True,
                )
                feed.feed(sidecar.write)
                _wait_healthy(sidecar, health)
            app_spec.network = sidecar.network_mode
            ctx.reporter.info(
                f"Starting container {app_spec.name} in the network of "
                f"{shim_image.CONTAINER_NAME} ({network})"
            )
            return int(ctx.docker.run_container(app_spec, on_line=ctx.reporter.log))
        finally:
            sidecar.remove()


def _move_to_free_port(
    command: list[str], health: list[str], app_spec: Any
) -> tuple[list[str], list[str]]:
    """On the host's network the shim's fixed port may be taken: move it, and the app's shim
    URLs."""
    old_port = (
        command[command.index("--port") + 1]
        if "--port" in command
        else str(shim_image.DEFAULT_PORT)
    )
    port = _free_port()
    app_spec.environment = {
        name: _move_port(value, old_port, port)
        if name != "GOOGLE_APPLICATION_CREDENTIALS"
        else value
        for name, value in app_spec.environment.items()
    }
    return (
        [part if part != old_port else str(port) for part in command],
        [part if part != old_port else str(port) for part in health],
    )


def _wait_healthy(sidecar: Any, health: list[str]) -> None:
    deadline = time.monotonic() + HEALTHY_TIMEOUT_S
    while not sidecar.check(health):
        if not sidecar.running or time.monotonic() > deadline:
            state = (
                "stopped" if not sidecar.running else f"not HEALTHY after {HEALTHY_TIMEOUT_S:.0f}s"
            )
            raise OperationError(
                f"the credential shim is {state}: {sidecar.log_tail() or 'no log'}",
                "On Fargate the app would not start either (dependsOn HEALTHY); fix the cause "
                "above and rerun",
            )
        time.sleep(0.3)
