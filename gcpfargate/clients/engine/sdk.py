"""The docker SDK, imported without paramiko unless the engine is reached over ssh://.

`docker[ssh]` is a dependency so that DOCKER_HOST=ssh://… works, and the SDK imports paramiko (with
cryptography's SSH parts, bcrypt and PyNaCl) at its own import whatever the host: about a quarter
of a second of every command that talks to the engine (`import docker` 0.57 s, 0.24 s without it,
in this project's venv on the 2-core development machine). Where DOCKER_HOST is not ssh://, the SDK
is imported with paramiko marked missing (a None entry in sys.modules makes `import paramiko` raise
ImportError), which the SDK treats as the ssh extra not being installed: it leaves out its ssh
adapter and nothing else. The entry is removed again at once, so only the SDK's own import sees
it.

The choice is made at the SDK's first import in the process: the SDK reads DOCKER_HOST when a client
is made (docker.from_env), and no command changes it. Every import of the SDK in gcpfargate goes
through `docker_sdk()` first.
"""

from __future__ import annotations

import os
import sys
from typing import Any


def docker_sdk() -> Any:
    """The `docker` package, imported on first use as described above."""
    if (
        "docker" not in sys.modules
        and "paramiko" not in sys.modules
        and not os.environ.get("DOCKER_HOST", "").startswith("ssh://")
    ):
        sys.modules["paramiko"] = None  # type: ignore[assignment]
        try:
            import docker
        finally:
            del sys.modules["paramiko"]
    import docker

    return docker
