"""Run the credential shim as a real subprocess and talk to it the way google-auth does."""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from gcpfargate.shim import TOKEN_HEADER, TOKEN_PATH, TTL_HEADER

_LISTENING = re.compile(r"on http://127\.0\.0\.1:(\d+)$")


@dataclass
class Shim:
    proc: subprocess.Popen[str] | None  # None: the shim runs elsewhere (in a container)
    port: int
    log: list[str] = field(default_factory=list)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def call(
        self, method: str, path: str, headers: Mapping[str, str] | None = None
    ) -> tuple[int, str]:
        request = urllib.request.Request(
            self.base_url + path, method=method, headers=dict(headers or {})
        )
        try:
            with urllib.request.urlopen(request, timeout=15) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()

    def session_token(self, ttl: str = "300") -> str:
        status, token = self.call("PUT", TOKEN_PATH, {TTL_HEADER: ttl})
        assert status == 200, token
        return token

    def get(self, path: str, token: str | None = None) -> tuple[int, str]:
        """GET with a fresh IMDSv2 session token, as google-auth does before each lookup."""
        return self.call("GET", path, {TOKEN_HEADER: token or self.session_token()})

    def log_text(self) -> str:
        time.sleep(0.05)  # let the reader thread catch up with the last line
        return "\n".join(self.log)


def shim_env(extra: Mapping[str, str]) -> dict[str, str]:
    """The test's environment without any AWS or ECS variable of the developer's, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "ECS_", "GCPFARGATE_"))}
    env.update(extra)
    return env


@contextlib.contextmanager
def running_shim(
    env: Mapping[str, str], *args: str, argv: list[str] | None = None, cwd: Path | None = None
) -> Iterator[Shim]:
    """Start the shim on a free port (it logs the port it bound) and stop it with SIGTERM."""
    command = argv or [sys.executable, "-m", "gcpfargate.shim"]
    proc = subprocess.Popen(
        [*command, "--port", "0", *args],
        env=shim_env(env),
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
        cwd=cwd,
    )
    assert proc.stderr is not None
    lines: list[str] = []
    port = 0
    deadline = time.monotonic() + 20
    while not port and time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line:
            break
        lines.append(line.rstrip("\n"))
        if match := _LISTENING.search(line.rstrip()):
            port = int(match.group(1))
    if not port:
        proc.kill()
        raise AssertionError("the shim did not start:\n" + "\n".join(lines) + proc.stderr.read())
    shim = Shim(proc, port, lines)
    reader = threading.Thread(
        target=lambda: lines.extend(line.rstrip("\n") for line in proc.stderr), daemon=True
    )
    reader.start()
    try:
        yield shim
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        reader.join(timeout=5)
