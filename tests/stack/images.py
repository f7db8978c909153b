"""Build contexts for test images. No base image can be pulled, so every test image is `FROM scratch`
with the static busybox from the host (Debian's busybox-static) as its only program."""

from __future__ import annotations

import shutil
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
    """Write a build context into `directory`: busybox, a Dockerfile (the busybox steps, then `steps`),
    extra `files` (relative path → content) and an optional .dockerignore. Returns the Dockerfile."""
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
