"""Podman's Docker-compatible API next to the stack's dockerd: `podman system service` on a unix
socket, with its own storage under the stack's directory, so tests can point DOCKER_HOST at it.

Podman (containers/image) does not treat loopback registries as insecure the way Docker does, so
a registries.conf marks the stack's registry as plain HTTP. The vfs storage driver needs no
overlay mounts (a container may not allow them); it is slower, which the small test images do not
notice.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

from tests.stack.local import StackError, _docker_ping, _wait


@contextlib.contextmanager
def podman_service(root: Path, registry: str) -> Iterator[str]:
    """Start `podman system service` under `root`; yield its DOCKER_HOST (unix://…)."""
    podman = shutil.which("podman")
    if not podman:
        raise StackError("podman is not installed (apt-get install podman)")
    root.mkdir(parents=True, exist_ok=True)
    conf = root / "registries.conf"
    conf.write_text(
        f'unqualified-search-registries = []\n[[registry]]\nlocation = "{registry}"\n'
        "insecure = true\n"
    )
    sock = root / "podman.sock"
    log = root / "podman.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                podman,
                "--root",
                str(root / "storage"),
                "--runroot",
                str(root / "run"),
                "--storage-driver",
                "vfs",
                "system",
                "service",
                "--time=0",
                f"unix://{sock}",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, "CONTAINERS_REGISTRIES_CONF": str(conf)},
            start_new_session=True,
        )
    host = f"unix://{sock}"
    try:
        _wait(lambda: _docker_ping(host), "podman system service", 60, proc, log)
        yield host
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)
