"""Sidecar containers on the local engine (run-local in keyless mode starts the credential shim).

A thin part of the Docker adapter kept in its own module: start a detached container, write to its
stdin for as long as it runs, run its health check command inside it, read the tail of its log,
remove it. Other containers join its network namespace as `container:<id>`.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Mapping, Sequence
from typing import Any

from gcpfargate.clients.engine.docker import DockerEngine, _engine_errors
from gcpfargate.errors import DockerError


class Sidecar:
    def __init__(self, engine: DockerEngine, name: str) -> None:
        self._engine, self.name = engine, name
        self._container: Any = None
        self._stdin: Any = None
        self._stdin_lock = threading.Lock()

    def start(
        self,
        image: str,
        command: Sequence[str],
        environment: Mapping[str, str],
        network: str,
        user: str | None,
        read_only: bool,
        entrypoint: Sequence[str] | None = None,
        stdin: bool = False,
    ) -> None:
        """Create and start the container; with `stdin`, keep its stdin open for `write`."""
        with _engine_errors(
            f"failed to start container {self.name}", "Check the image and the engine"
        ):
            self._container = self._engine.client.containers.create(
                image,
                command=list(command),
                entrypoint=list(entrypoint) if entrypoint is not None else None,
                stdin_open=stdin,
                environment=dict(environment),
                network_mode=network,
                user=user,
                read_only=read_only,
                detach=True,
                labels={"managed-by": "gcpfargate", "gcpfargate": "run-local"},
            )
            if stdin:
                # Attached before the start, as `docker run -i` does, so a container that exits at
                # once leaves a closed pipe rather than a failed attach. The engine copies
                # attached stdin into the process's pipe: neither logged nor stored in its config.
                self._stdin = self._container.attach_socket(params={"stdin": 1, "stream": 1})
            self._container.start()

    @property
    def network_mode(self) -> str:
        """How another container joins this one's network namespace."""
        return f"container:{self._container.id}"

    def write(self, data: bytes) -> None:
        """Write to the container's stdin (OSError once it is gone)."""
        with self._stdin_lock:
            if self._stdin is None:
                raise OSError("the container's stdin is closed")
            getattr(self._stdin, "_sock", self._stdin).sendall(data)

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
        with self._stdin_lock:
            if self._stdin is not None:
                raw = getattr(self._stdin, "_sock", self._stdin)
                with contextlib.suppress(OSError):
                    raw.shutdown(socket.SHUT_WR)
                self._stdin.close()
                self._stdin = None
        reason = DockerEngine._remove(self._container)
        self._container = None
        if reason:
            raise DockerError(
                f"removing container {self.name} failed: {reason}",
                "Remove it with docker rm -f (label gcpfargate=run-local)",
            )
