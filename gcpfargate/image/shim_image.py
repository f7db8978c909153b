"""The credential shim's image and its container definition: pure functions, no engine, no AWS.

The image is a Python base plus the stdlib-only `gcpfargate.shim` package copied as `shim`: nothing
is installed inside the build (builds here have no network, and a pip step would make the image
larger and its build slower and non-reproducible). The base is configurable: `python:3-slim` in
production, a locally built Python base in tests. The package needs Python 3.11 or later.
"""

from __future__ import annotations

from importlib import resources
from typing import Any

from gcpfargate.shim import DEFAULT_PORT

DEFAULT_BASE_IMAGE = "python:3-slim"
CONTAINER_NAME = "gcpfargate-credential-shim"
_WORKDIR = "/opt/gcpfargate-shim"
_MODULES = ("__init__.py", "__main__.py", "server.py", "upstream.py")


def build_context(base_image: str = DEFAULT_BASE_IMAGE) -> dict[str, bytes]:
    """Relative path → content of the shim image's build context. The same inputs give the same bytes,
    so an unchanged shim rebuilds to the same layers and its pushed digest stays put."""
    package = resources.files("gcpfargate.shim")
    files = {f"shim/{name}": package.joinpath(name).read_bytes() for name in _MODULES}
    files["Dockerfile"] = "\n".join(
        [
            f"FROM {base_image}",
            f"COPY shim {_WORKDIR}/shim",
            f"WORKDIR {_WORKDIR}",
            # PYTHONPATH too, so `python3 -m shim --check` works whatever directory the health check runs in.
            f"ENV PYTHONPATH={_WORKDIR} PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1",
            # nobody: the shim needs no file and binds an unprivileged port.
            "USER 65534:65534",
            'ENTRYPOINT ["python3", "-m", "shim"]',
            "",
        ]
    ).encode()
    return files


def container_definition(image: str, port: int = DEFAULT_PORT) -> dict[str, Any]:
    """The sidecar's container definition. Non-essential: if it stops, the task's own containers keep
    running (ECS stops a task only when an essential container exits); the application container
    should `dependsOn` it with condition HEALTHY, so it starts once credentials are servable."""
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
