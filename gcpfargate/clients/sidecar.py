"""Sidecar containers on the local engine (run-local in keyless mode starts the credential shim).

A thin part of the Docker adapter kept in its own module: start a detached container, run its health
check command inside it, read the tail of its log, remove it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from gcpfargate.clients.docker import DockerEngine, _engine_errors
from gcpfargate.errors import DockerError


class Sidecar:
    def __init__(self, engine: DockerEngine, name: str) -> None:
        self._engine, self.name = engine, name
        self._container: Any = None

    def start(
        self,
        image: str,
        command: Sequence[str],
        environment: Mapping[str, str],
        network: str,
        user: str | None,
        read_only: bool,
    ) -> None:
        with _engine_errors(
            f"failed to start container {self.name}", "Check the image and the engine"
        ):
            self._container = self._engine.client.containers.create(
                image,
                command=list(command),
                environment=dict(environment),
                network_mode=network,
                user=user,
                read_only=read_only,
                detach=True,
                labels={"managed-by": "gcpfargate", "gcpfargate": "run-local"},
            )
            self._container.start()

    def check(self, argv: Sequence[str]) -> bool:
        """Run `argv` inside the container (an ECS health check's CMD); True when it exits 0."""
        with _engine_errors(f"failed to run the health check of {self.name}"):
            self._container.reload()
            if self._container.status != "running":
                return False
            return int(self._container.exec_run(list(argv)).exit_code) == 0

    @property
    def running(self) -> bool:
        with _engine_errors(f"failed to inspect container {self.name}"):
            self._container.reload()
            return bool(self._container.status == "running")

    def log_tail(self, lines: int = 5) -> str:
        with _engine_errors(f"failed to read the log of {self.name}"):
            text = self._container.logs(tail=lines).decode("utf-8", "replace").strip()
        return " | ".join(line.strip() for line in text.splitlines() if line.strip())

    def remove(self) -> None:
        if self._container is None:
            return
        reason = DockerEngine._remove(self._container)
        self._container = None
        if reason:
            raise DockerError(
                f"removing container {self.name} failed: {reason}",
                "Remove it with docker rm -f (label gcpfargate=run-local)",
            )
