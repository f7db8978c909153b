"""run-local for a keyless task definition: the task role endpoint, the credential shim, then the app.

Fargate starts the shim sidecar, waits for its health check (the app `dependsOn` it HEALTHY), then
starts the app; both share the task's loopback. Here both containers use network `host` (the only
shared network namespace allowed locally), so the shim listens on a free port of the machine rather
than its fixed one: the shim's `--port` and the config's shim URLs are moved to it together. The
shim reads the task role from `LocalTaskRoleEndpoint`, which assumes the task role, never the
developer's own credentials.
"""

from __future__ import annotations

import re
import socket
import time
from typing import Any

from gcpfargate.core.context import Context
from gcpfargate.credentials.keyless.task_role import LocalTaskRoleEndpoint
from gcpfargate.errors import ConfigError, OperationError
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


def run_with_shim(
    ctx: Context, definition: dict[str, Any], shim: dict[str, Any], app_spec: Any, network: str
) -> int:
    """Start the shim, wait until HEALTHY, run the app (`app_spec`, a run-local ContainerSpec)."""
    from gcpfargate.clients.sidecar import Sidecar

    if network != "host":
        raise ConfigError(
            "a keyless task needs --network host locally: the app reaches the credential shim on "
            "127.0.0.1, and host is the only network both containers can share here",
            "Rerun with --network host",
        )
    role_arn = str(definition.get("taskRoleArn") or "")
    if not role_arn:
        raise OperationError(
            "the task definition has the credential shim but no taskRoleArn",
            "Register it again with gcpfargate register-task (keyless mode)",
        )
    command = [str(part) for part in shim.get("command") or []]
    old_port = (
        command[command.index("--port") + 1]
        if "--port" in command
        else str(shim_image.DEFAULT_PORT)
    )
    port = _free_port()
    command = [*(part if part != old_port else str(port) for part in command)]
    app_spec.environment = {
        name: _move_port(value, old_port, port)
        if name != "GOOGLE_APPLICATION_CREDENTIALS"
        else value
        for name, value in app_spec.environment.items()
    }
    health = [
        str(part) if str(part) != old_port else str(port)
        for part in shim["healthCheck"]["command"][1:]
    ]

    image = str(shim["image"])
    credentials = ctx.registry.credentials() if image.startswith(ctx.registry.host + "/") else None
    with ctx.reporter.step(f"Pulling {image}"):
        ctx.docker.pull(image, credentials)
    sidecar = Sidecar(ctx.docker, shim_image.CONTAINER_NAME)
    with (
        ctx.reporter.step(f"Assuming the task role {role_arn}"),
        LocalTaskRoleEndpoint(ctx, role_arn) as endpoint,
    ):
        try:
            with ctx.reporter.step(
                f"Starting {shim_image.CONTAINER_NAME} and waiting until it is HEALTHY"
            ):
                sidecar.start(
                    image,
                    command,
                    {"AWS_REGION": ctx.aws.region, **endpoint.environment()},
                    "host",
                    shim.get("user"),
                    bool(shim.get("readonlyRootFilesystem")),
                )
                _wait_healthy(sidecar, health)
            ctx.reporter.info(f"Starting container {app_spec.name} (network host)")
            return int(ctx.docker.run_container(app_spec, on_line=ctx.reporter.log))
        finally:
            sidecar.remove()


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
