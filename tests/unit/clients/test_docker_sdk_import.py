"""The docker SDK is imported without paramiko unless DOCKER_HOST is ssh:// (clients/engine/sdk.py).

Each case runs in a fresh interpreter: the choice is made at the SDK's first import in a process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

PROBE = """
import json, sys
from gcpfargate.clients.engine.docker import DockerEngine, _ssh_errors
from gcpfargate.clients.engine.sdk import docker_sdk
from gcpfargate.image.guard import every_path  # noqa: F401 (guard imports the SDK lazily too)
docker = docker_sdk()
state = {
    "paramiko_loaded": "paramiko" in sys.modules,
    "ssh_adapter": hasattr(docker.transport, "SSHHTTPAdapter"),
    "ssh_errors": [e.__name__ for e in _ssh_errors(DockerEngine().host)],
}
import paramiko  # still importable by anyone who asks for it afterwards
state["paramiko_importable"] = paramiko.__name__ == "paramiko"
print(json.dumps(state))
"""


def probe(docker_host: str | None) -> dict[str, object]:
    env = {k: v for k, v in os.environ.items() if k != "DOCKER_HOST"}
    if docker_host is not None:
        env["DOCKER_HOST"] = docker_host
    out = subprocess.run(
        [sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, check=True
    ).stdout
    return dict(json.loads(out))


@pytest.mark.parametrize("host", [None, "unix:///var/run/docker.sock", "tcp://127.0.0.1:2375"])
def test_without_ssh_the_sdk_comes_without_paramiko(host: str | None) -> None:
    assert probe(host) == {
        "paramiko_loaded": False,
        "ssh_adapter": False,
        "ssh_errors": [],
        "paramiko_importable": True,
    }


def test_an_ssh_host_gets_the_ssh_adapter_and_its_errors() -> None:
    assert probe("ssh://user@build-host") == {
        "paramiko_loaded": True,
        "ssh_adapter": True,
        "ssh_errors": ["SSHException"],
        "paramiko_importable": True,
    }
