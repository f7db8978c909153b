"""Build contexts for test images. No base image can be pulled, so every test image is `FROM
scratch` with the static busybox from the host (Debian's busybox-static) as its only program."""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

BUSYBOX_STEPS = [
    "FROM scratch",
    "COPY busybox /bin/busybox",
    'RUN ["/bin/busybox", "--install", "-s", "/bin"]',
]


def busybox_path() -> Path:
    found = shutil.which("busybox") or ("/bin/busybox" if Path("/bin/busybox").exists() else None)
    if not found:
        raise RuntimeError("busybox is not installed (apt-get install busybox-static)")
    return Path(found)


def write_busybox_context(
    directory: Path,
    steps: Sequence[str] = (),
    files: Mapping[str, str | bytes] | None = None,
    dockerfile: str = "Dockerfile",
    dockerignore: Sequence[str] | None = None,
) -> Path:
    """Write a build context into `directory`: busybox, a Dockerfile (the busybox steps, then
    `steps`), extra `files` (relative path → content) and an optional .dockerignore. Returns the
    Dockerfile."""
    directory.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(busybox_path(), directory / "busybox")
    (directory / "busybox").chmod(0o755)
    for relative, content in (files or {}).items():
        path = directory / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
    if dockerignore is not None:
        (directory / ".dockerignore").write_text("".join(f"{line}\n" for line in dockerignore))
    path = directory / dockerfile
    path.write_text("\n".join([*BUSYBOX_STEPS, *steps]) + "\n")
    return path


# A docker CLI from 23.0 on without the buildx plugin: it refuses DOCKER_BUILDKIT=1 as the real one
# does, and otherwise runs the real CLI (the classic builder).
NO_BUILDKIT_CLI = """#!/bin/sh
case "$1" in
  --version) echo "Docker version 28.2.2, build e6534b4"; exit 0 ;;
  buildx) echo "docker: unknown command: docker buildx" >&2; exit 1 ;;
esac
if [ "$DOCKER_BUILDKIT" = 1 ]; then
  echo "ERROR: BuildKit is enabled but the buildx component is missing or broken." >&2
  exit 1
fi
exec {real} "$@"
"""


def no_buildkit_path(directory: Path) -> str:
    """A PATH whose only docker is a CLI without BuildKit (written into `directory`); the tool
    itself runs by its interpreter's absolute path."""
    real = next((p for p in ("/usr/bin/docker", "/bin/docker") if os.access(p, os.X_OK)), "docker")
    directory.mkdir(parents=True, exist_ok=True)
    cli = directory / "docker"
    cli.write_text(NO_BUILDKIT_CLI.format(real=real))
    cli.chmod(0o755)
    return f"{directory}{os.pathsep}{Path(sys.executable).parent}"
