"""The local cloud stack: moto (server mode), a private dockerd, a registry and the IAM emulator.

Everything listens on 127.0.0.1 on free ports and lives under one temporary directory, so several
stacks (parallel developers, CI) never collide. `LocalStack.env` is what the product needs to talk
to it: only standard variables (AWS_ENDPOINT_URL, DOCKER_HOST) and the documented overrides.

The strict layer is on by default: AWS calls go through `tests.stack.strict`, a proxy that
refuses and rewrites what AWS refuses and rewrites; `moto_url` is then the layer's address and
`moto_direct_url` moto's own. GCPF_STACK_STRICT=0 (or `LocalStack(strict=False)`) talks to moto
directly, GCPF_STACK_STRICT_OFF (comma-separated rule names) switches single rules off,
GCPF_STACK_STRICT_DELAY sets the IAM consistency delay.

Command line (used by `make demo` and `make bench`):
    python -m tests.stack.local run -- COMMAND...   start, run COMMAND with the stack's env, stop
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from tests.stack.iam import IamEmulator
from tests.stack.strict import Settings, StrictLayer

REGION = "ap-northeast-1"
ACCOUNT_ID = "123456789012"  # moto's default account


class StackError(RuntimeError):
    pass


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait(
    check, what: str, timeout: float, proc: subprocess.Popen | None = None, log: Path | None = None
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            tail = log.read_text(errors="replace")[-2000:] if log and log.exists() else ""
            raise StackError(f"{what} exited with {proc.returncode} while starting:\n{tail}")
        with contextlib.suppress(Exception):
            if check():
                return
        time.sleep(0.1)
    tail = log.read_text(errors="replace")[-2000:] if log and log.exists() else ""
    raise StackError(f"{what} did not become ready in {timeout:.0f}s:\n{tail}")


def _http_ok(url: str) -> bool:
    with urllib.request.urlopen(url, timeout=2) as response:
        return response.status < 500


def _env_flag(name: str, default: bool) -> bool:
    value = os.environ.get(name, "").strip().lower()
    if not value:
        return default
    return value in ("1", "true", "yes", "on")


class LocalStack:
    def __init__(
        self,
        root: Path | None = None,
        *,
        strict: bool | None = None,
        strict_off: tuple[str, ...] | None = None,
        consistency_delay: float | None = None,
        enforce_iam: bool = False,
    ) -> None:
        # Short paths: unix socket paths are limited to ~107 bytes.
        self.root = root or Path(tempfile.mkdtemp(prefix="gcpf-stack-"))
        self.root.mkdir(parents=True, exist_ok=True)
        self._procs: list[subprocess.Popen] = []
        self.emulator = IamEmulator(key_pool=True)
        self.moto_url = ""  # what AWS clients use: the strict layer when it is on, else moto
        self.moto_direct_url = ""
        self.strict_enabled = _env_flag("GCPF_STACK_STRICT", True) if strict is None else strict
        off_env = os.environ.get("GCPF_STACK_STRICT_OFF", "")
        self._strict_off = (
            strict_off
            if strict_off is not None
            else tuple(name.strip() for name in off_env.split(",") if name.strip())
        )
        delay_env = os.environ.get("GCPF_STACK_STRICT_DELAY")
        self._consistency_delay = (
            consistency_delay
            if consistency_delay is not None
            else (float(delay_env) if delay_env else Settings.consistency_delay)
        )
        self.strict: StrictLayer | None = None
        self.registry = ""
        self.docker_host = ""
        self._own_dockerd = False
        # moto started so it can enforce IAM (tests/stack/moto_iam.py); the test switches it on.
        self._enforce_iam = enforce_iam

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> LocalStack:
        try:
            self.emulator.start()
            self._start_moto()
            self.emulator.set_aws_endpoint(self.moto_url)  # Google's STS replays to "AWS"
            self._start_registry()
            if self.strict_enabled:
                self._start_strict()
            self._start_docker()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        for proc in reversed(self._procs):
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
        for proc in reversed(self._procs):
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=5)
        self._procs.clear()
        if self.strict is not None:
            with contextlib.suppress(Exception):
                self.strict.stop()
            self.strict = None
        with contextlib.suppress(Exception):
            self.emulator.stop()
        if self._own_dockerd:
            # dockerd leaves overlay mounts behind when it is killed hard; unmount before removing.
            subprocess.run(
                [
                    "sh",
                    "-c",
                    f"grep -o ' {self.root}/[^ ]*' /proc/mounts | sort -r | xargs -r -n1 umount -l",
                ],
                check=False,
                capture_output=True,
            )
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> LocalStack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def env(self) -> dict[str, str]:
        return {
            "AWS_ENDPOINT_URL": self.moto_url,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_SESSION_TOKEN": "testing",
            "AWS_REGION": REGION,
            "AWS_DEFAULT_REGION": REGION,
            "AWS_CONFIG_FILE": str(self.root / "aws-config"),
            "AWS_SHARED_CREDENTIALS_FILE": str(self.root / "aws-credentials"),
            "DOCKER_HOST": self.docker_host,
            # The private dockerd runs with --bridge=none: BuildKit's RUN steps fail on the
            # default (bridge) network ("network bridge not found"), so builds use none.
            "GCPFARGATE_IMAGE_NETWORK": "none",
            "GCPFARGATE_ECR_REGISTRY": self.registry,
            # Public ECR and Docker Hub reads go to a closed loopback port (refused at once): the
            # suite never leaves the machine; tests/stack/token_registry.py stands in for them.
            "GCPFARGATE_PUBLIC_REGISTRIES": (
                "public.ecr.aws=http://127.0.0.1:9,docker.io=http://127.0.0.1:9"
            ),
            "IAM_EMULATOR_HOST": self.emulator.grpc_address,
            "IAM_EMULATOR_HTTP": self.emulator.http_url,
            # Keyless mode: the workload identity REST API, STS and IAM Credentials, all served by
            # the emulator's HTTP port (tests/stack/iam/keyless.py).
            "GCPFARGATE_IAM_REST_ENDPOINT": self.emulator.http_url,
            "GCPFARGATE_SERVICEUSAGE_ENDPOINT": self.emulator.http_url,
            "GCPFARGATE_STS_ENDPOINT": self.emulator.http_url,
            "GCPFARGATE_IAMCREDENTIALS_ENDPOINT": self.emulator.http_url,
        }

    # -- services ----------------------------------------------------------------------------
    def _spawn(
        self, name: str, argv: list[str], env: dict[str, str] | None = None
    ) -> tuple[subprocess.Popen, Path]:
        log = self.root / f"{name}.log"
        proc = subprocess.Popen(
            argv,
            stdout=log.open("wb"),
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **(env or {})},
            start_new_session=True,
        )
        self._procs.append(proc)
        return proc, log

    def _start_moto(self) -> None:
        port = free_port()
        env = {"MOTO_IAM_LOAD_MANAGED_POLICIES": "true", **moto_path()}
        proc, log = self._spawn("moto", moto_argv(port, self._enforce_iam), env)
        self.moto_url = self.moto_direct_url = f"http://127.0.0.1:{port}"
        _wait(lambda: _http_ok(f"{self.moto_url}/moto-api/"), "moto server", 60, proc, log)

    def _start_strict(self) -> None:
        # The local registry stands in for ECR, so the Fargate "ECR image" rule applies to it too.
        settings = Settings(
            consistency_delay=self._consistency_delay,
            account_id=ACCOUNT_ID,
            ecr_hosts=(self.registry,),
            registry_root=str(self.root / "registry") if self.registry else "",
        )
        self.strict = StrictLayer(self.moto_direct_url, settings, off=self._strict_off).start()
        self.moto_url = self.strict.url

    def _start_registry(self) -> None:
        binary = shutil.which("docker-registry")
        if not binary:
            raise StackError("docker-registry is not installed (apt-get install docker-registry)")
        port = free_port()
        config = self.root / "registry.yml"
        config.write_text(
            json.dumps(
                {  # YAML is a superset of JSON
                    "version": 0.1,
                    "log": {"level": "warn"},
                    "storage": {
                        "filesystem": {"rootdirectory": str(self.root / "registry")},
                        "delete": {"enabled": True},
                    },
                    "http": {"addr": f"127.0.0.1:{port}"},
                }
            )
        )
        proc, log = self._spawn("registry", [binary, "serve", str(config)])
        self.registry = f"127.0.0.1:{port}"
        _wait(lambda: _http_ok(f"http://{self.registry}/v2/"), "registry", 30, proc, log)

    def _start_docker(self) -> None:
        existing = os.environ.get("DOCKER_HOST")
        if existing and _docker_ping(existing):
            self.docker_host = existing
            return
        dockerd = shutil.which("dockerd")
        if not dockerd:
            raise StackError("dockerd is not installed (apt-get install docker.io)")
        sock = self.root / "docker.sock"
        proc, log = self._spawn(
            "dockerd",
            [
                dockerd,
                "--host",
                f"unix://{sock}",
                "--data-root",
                str(self.root / "docker"),
                "--exec-root",
                str(self.root / "dexec"),
                "--pidfile",
                str(self.root / "docker.pid"),
                "--bridge=none",
                "--iptables=false",
                "--ip6tables=false",
                "--ip-masq=false",
                "--userland-proxy=false",
                "--storage-driver=overlay2",
            ],
        )
        self._own_dockerd = True
        self.docker_host = f"unix://{sock}"
        _wait(lambda: _docker_ping(self.docker_host), "dockerd", 60, proc, log)


def moto_path() -> dict[str, str]:
    """PYTHONPATH for moto's server: its wrapper modules are this repository's."""
    return {"PYTHONPATH": str(Path(__file__).resolve().parents[2])}


def moto_argv(port: int, enforce_iam: bool = False) -> list[str]:
    module = "tests.stack.moto_iam" if enforce_iam else "tests.stack.moto_server"
    return [sys.executable, "-m", module, "-H", "127.0.0.1", "-p", str(port)]


@contextlib.contextmanager
def moto_server(log: Path) -> Iterator[str]:
    """moto alone (no registry, no dockerd): for tests of the layers in front of it."""
    port = free_port()
    with log.open("wb") as out:
        proc = subprocess.Popen(
            moto_argv(port),
            env={**os.environ, **moto_path()},
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait(lambda: _http_ok(f"{url}/moto-api/"), "moto server", 60, proc, log)
        yield url
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=20)


def _docker_ping(host: str) -> bool:
    if not host.startswith("unix://"):
        return False
    path = host.removeprefix("unix://")
    if not os.path.exists(path):
        return False
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(2)
        sock.connect(path)
        sock.sendall(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
        return b"200 OK" in sock.recv(200)


def main(argv: list[str]) -> int:
    if len(argv) < 2 or argv[0] != "run" or "--" not in argv:
        sys.stderr.write("usage: python -m tests.stack.local run -- COMMAND...\n")
        return 2
    command = argv[argv.index("--") + 1 :]
    with LocalStack() as stack:
        strict = " (through the strict layer)" if stack.strict is not None else ""
        sys.stderr.write(
            f"local stack up: moto {stack.moto_url}{strict}, registry {stack.registry}, "
            f"docker {stack.docker_host}, IAM emulator {stack.emulator.grpc_address}\n"
        )
        return subprocess.run(command, env={**os.environ, **stack.env}, check=False).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
