"""The credential shim's image and its container definition: pure functions, no engine, no AWS.

The image is a Python base plus the stdlib-only `gcpfargate.shim` package copied as `shim`: nothing
is installed inside the build (builds here have no network, and a pip step would make the image
larger and its build slower and non-reproducible). The base is configurable and pinned by digest by
default (a tag alone can be moved under the credential sidecar); tests use a locally built Python
base. The package needs Python 3.11 or later.

The Dockerfile ends with a label holding the SHA-256 of everything before it (the shim's files and
the Dockerfile, whose FROM names the base and its digest). It travels in the image's config, so an
image already in the registry under the shim's tag can be checked to be this build before it is
reused (`shim_push`), and the tag is made from it.
"""

from __future__ import annotations

import hashlib
from importlib import resources
from typing import Any

from gcpfargate.shim import DEFAULT_PORT

# python:3.12-slim's multi-platform index (Docker Hub's official image), pinned: a new base is a
# deliberate change of this line or of image.shim_base_image, and gives the shim a new tag.
DEFAULT_BASE_IMAGE = (
    "python:3.12-slim@sha256:78387bc3881b8273120a12ebe6c1ab22b018ccc2c9adf565ae1ac9b536e184ea"
)
CONTENT_LABEL = "org.gcpfargate.shim.content"
CONTAINER_NAME = "gcpfargate-credential-shim"
_WORKDIR = "/opt/gcpfargate-shim"
_MODULES = ("__init__.py", "__main__.py", "server.py", "upstream.py")


def build_context(base_image: str = DEFAULT_BASE_IMAGE) -> dict[str, bytes]:
    """Relative path → content of the shim image's build context. The same inputs give the same
    bytes, so an unchanged shim rebuilds to the same layers and its pushed digest stays put; the
    last line of the Dockerfile labels the image with the digest of the rest (`content_digest`)."""
    package = resources.files("gcpfargate.shim")
    files = {f"shim/{name}": package.joinpath(name).read_bytes() for name in _MODULES}
    files["Dockerfile"] = "\n".join(
        [
            f"FROM {base_image}",
            f"COPY shim {_WORKDIR}/shim",
            f"WORKDIR {_WORKDIR}",
            # PYTHONPATH too, so `python3 -m shim --check` works whatever directory the health check
            # runs in.
            f"ENV PYTHONPATH={_WORKDIR} PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1",
            # nobody: the shim needs no file and binds an unprivileged port.
            "USER 65534:65534",
            'ENTRYPOINT ["python3", "-m", "shim"]',
            "",
        ]
    ).encode()
    digest = hashlib.sha256()
    for relative in sorted(files):
        digest.update(relative.encode() + b"\0" + hashlib.sha256(files[relative]).digest())
    files["Dockerfile"] += f'LABEL {CONTENT_LABEL}="{digest.hexdigest()}"\n'.encode()
    return files


def content_digest(files: dict[str, bytes]) -> str:
    """The content label `build_context` wrote: what an image built from `files` must carry."""
    last = files["Dockerfile"].decode().rstrip("\n").rsplit("\n", 1)[-1]
    return last.removeprefix(f'LABEL {CONTENT_LABEL}="').removesuffix('"')


def container_definition(image: str, port: int = DEFAULT_PORT) -> dict[str, Any]:
    """The sidecar's container definition. Non-essential: if it stops, the task's own containers
    keep running (ECS stops a task only when an essential container exits); the application
    container should `dependsOn` it with condition HEALTHY, so it starts once credentials are
    servable."""
    return {
        "name": CONTAINER_NAME,
        "image": image,
        "essential": False,
        "command": ["--port", str(port)],
        # ECS limits: interval 5-300 s, timeout 2-60 s, retries 1-10, startPeriod 0-300 s
        # (HealthCheck in the ECS API reference). A short interval makes the first HEALTHY quick.
        "healthCheck": {
            "command": ["CMD", "python3", "-m", "shim", "--check", "--port", str(port)],
            "interval": 5,
            "timeout": 3,
            "retries": 3,
            "startPeriod": 5,
        },
        "readonlyRootFilesystem": True,
        "user": "65534:65534",
    }
