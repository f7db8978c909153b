"""Building through BuildKit with the docker CLI: `docker buildx build`, else the CLI's embedded
BuildKit (`DOCKER_BUILDKIT=1 docker build`, CLIs before 23.0), else nothing (the caller falls back
to the SDK's classic builder and says what will not work).

The docker SDK only speaks the classic builder's API; BuildKit's session (context transfer,
secrets, cache import) is the CLI's. The CLI is made to talk to the engine the SDK uses: DOCKER_HOST
(or the SDK's default socket) is set for it, and DOCKER_CONTEXT removed, so a `docker context use`
cannot send the build elsewhere. The built image is loaded into that engine and named by its id
(`--iidfile`), so the key guard, the digest and the no-op detection read it exactly as before.
Build arguments go to the CLI through its environment (`--build-arg NAME`), not its command line,
which every user of the machine can read; secrets as `--secret id=…,src=…|env=…`, never as
arguments and never into a layer.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from gcpfargate.clients.engine.build_log import LineCallback, PlainBuildLog
from gcpfargate.errors import DockerError

BUILDX = "buildx"
EMBEDDED = "buildkit"  # the docker CLI's own BuildKit client (DOCKER_BUILDKIT=1), CLIs 18.09-22.x
CLASSIC = "classic"  # the docker SDK against the engine's classic builder
PODMAN = "podman"  # Podman's Docker-compatible API: buildah builds, RUN --mount included

# The engine the docker SDK uses when DOCKER_HOST is not set (docker.constants.DEFAULT_UNIX_SOCKET).
DEFAULT_HOST = "unix:///var/run/docker.sock"
_PROBE_TIMEOUT = 20
_VERSION = re.compile(r"Docker version (\d+)\.(\d+)")


@dataclass(frozen=True)
class Builder:
    kind: str
    cli: str = ""  # the docker CLI (absolute path) for BUILDX and EMBEDDED

    @property
    def buildkit(self) -> bool:
        return self.kind in (BUILDX, EMBEDDED)

    def describe(self) -> str:
        return {
            BUILDX: f"BuildKit ({self.cli} buildx)",
            EMBEDDED: f"BuildKit ({self.cli}, DOCKER_BUILDKIT=1)",
            CLASSIC: "the classic builder",
            PODMAN: "Podman",
        }[self.kind]


@dataclass(frozen=True)
class Secret:
    id: str
    kind: str  # "src" (a file) or "env" (an environment variable of the deployer)
    value: str

    def flag(self) -> str:
        return f"id={self.id},{self.kind}={self.value}"


@dataclass(frozen=True)
class BuildOptions:
    network: str = "default"
    secrets: tuple[Secret, ...] = ()
    cache_from: tuple[str, ...] = ()
    inline_cache: bool = False
    # Extra environment for the CLI (tests point PATH elsewhere through os.environ instead).
    env: Mapping[str, str] = field(default_factory=dict)


def docker_clis(search_path: str | None = None) -> list[str]:
    """Every `docker` program on PATH, first first, each real program once."""
    found: list[str] = []
    seen: set[str] = set()
    for directory in (search_path or os.environ.get("PATH", "")).split(os.pathsep):
        candidate = shutil.which("docker", path=directory) if directory else None
        if candidate is None:
            continue
        real = os.path.realpath(candidate)
        if real not in seen:
            seen.add(real)
            found.append(candidate)
    return found


def _quiet(argv: list[str]) -> subprocess.CompletedProcess[str] | None:
    try:
        return subprocess.run(
            argv,
            capture_output=True,
            text=True,
            timeout=_PROBE_TIMEOUT,
            stdin=subprocess.DEVNULL,
            env=_cli_env(os.environ.get("DOCKER_HOST", "")),
        )
    except (OSError, subprocess.TimeoutExpired):
        return None


# Where the docker CLI looks for plugins (cli/cli-plugins/manager: the user's, then the system's).
_PLUGIN_DIRS = (
    "/usr/local/lib/docker/cli-plugins",
    "/usr/local/libexec/docker/cli-plugins",
    "/usr/lib/docker/cli-plugins",
    "/usr/libexec/docker/cli-plugins",
)


def has_buildx(plugin_dirs: list[str] | None = None) -> bool:
    """The buildx plugin is installed where the docker CLI finds it. Looked up on disk: running
    `docker buildx version` costs a Go program's start on every build."""
    if plugin_dirs is None:
        config = os.environ.get("DOCKER_CONFIG") or os.path.expanduser("~/.docker")
        plugin_dirs = [os.path.join(config, "cli-plugins"), *_PLUGIN_DIRS]
    return any(
        os.access(os.path.join(directory, "docker-buildx"), os.X_OK) for directory in plugin_dirs
    )


def embeds_buildkit(cli: str) -> bool:
    """A docker CLI from 18.09 to 22.x builds with BuildKit itself when DOCKER_BUILDKIT=1; from 23.0
    that needs the buildx plugin (it says "BuildKit is enabled but the buildx component is
    missing")."""
    version = cli_version(cli)
    return version is not None and (18, 9) <= version < (23, 0)


def cli_version(cli: str) -> tuple[int, int] | None:
    """What `cli --version` says (major, minor), or None when it does not say. Each answer is
    recorded with the program's `stat` (device, inode, size, mtime, ctime), signed like every cache
    entry: `docker --version` is a Go program's start, and a machine with two CLIs (Debian's
    docker.io and Docker's own) asked both on every build, ~0.1 s before the build could start.
    Any change to the program (an upgrade replaces the file, so its inode or ctime moves)
    means asking it again; so does anything wrong with the record."""
    record = _VersionRecord(cli)
    known = record.load()
    if known is not None:
        return known
    done = _quiet([cli, "--version"])
    found = _VERSION.search(done.stdout) if done is not None and done.returncode == 0 else None
    if found is None:
        return None
    version = (int(found.group(1)), int(found.group(2)))
    record.save(version)
    return version


class _VersionRecord:
    """One docker CLI's answer to `--version`, kept under the cache directory against the CLI's
    `stat` (an upgrade changes it)."""

    def __init__(self, cli: str) -> None:
        import hashlib

        from gcpfargate.cache import cache_dir

        self.cli = os.path.realpath(cli)
        name = hashlib.sha256(self.cli.encode("utf-8", "surrogateescape")).hexdigest()[:32]
        self.path = cache_dir() / "docker-cli" / f"{name}.json"
        # Taken before the program is asked: a version is recorded against what was asked.
        self.stamp = self._stamp()

    def _stamp(self) -> list[int] | None:
        try:
            info = os.stat(self.cli)
        except OSError:
            return None
        return [info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns]

    def _key(self, stamp: list[int]) -> list[object]:
        return ["docker-cli", self.cli, list(stamp)]

    def load(self) -> tuple[int, int] | None:
        from gcpfargate.cache import load_record

        if self.stamp is None:
            return None
        version = load_record(self.path, self._key(self.stamp))
        if (
            not isinstance(version, list)
            or len(version) != 2
            or not all(type(each) is int for each in version)
        ):
            return None
        return (version[0], version[1])

    def save(self, version: tuple[int, int]) -> None:
        from gcpfargate.cache import save_record

        if self.stamp is not None:
            save_record(self.path, self._key(self.stamp), list(version))


def find_builder(podman: bool) -> Builder:
    """The best builder this machine has for the engine (see the module docstring)."""
    if podman:
        return Builder(PODMAN)
    clis = docker_clis()
    if clis and has_buildx():
        return Builder(BUILDX, clis[0])
    for cli in clis:
        if embeds_buildkit(cli):
            return Builder(EMBEDDED, cli)
    return Builder(CLASSIC)


def _cli_env(host: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key != "DOCKER_CONTEXT"}
    env["DOCKER_HOST"] = host or DEFAULT_HOST
    return env


def build(
    builder: Builder,
    host: str,
    context: Path,
    dockerfile: str,
    tag: str,
    platform: str,
    build_args: Mapping[str, str],
    options: BuildOptions,
    on_line: LineCallback,
) -> str:
    """Build with the docker CLI; the image id. A failed build raises one DockerError naming the
    step that failed and its last output lines."""
    env = _cli_env(host)
    env.update(options.env)
    env["BUILDKIT_PROGRESS"] = "plain"
    env["DOCKER_BUILDKIT"] = "1"
    path = Path(dockerfile)
    dockerfile_path = path if path.is_absolute() else context / path
    with tempfile.TemporaryDirectory(prefix="gcpfargate-build-") as scratch:
        iidfile = Path(scratch) / "iid"
        argv = [
            builder.cli,
            *(["buildx", "build", "--load"] if builder.kind == BUILDX else ["build"]),
        ]
        argv += ["--progress=plain", "--iidfile", str(iidfile), "--tag", tag]
        argv += ["--file", str(dockerfile_path)]
        if platform:
            argv += ["--platform", platform]
        if options.network != "default":
            argv += ["--network", options.network]
        for name, value in build_args.items():
            if name in env or name.startswith("DOCKER_"):
                argv += ["--build-arg", f"{name}={value}"]  # would clash with the CLI's own
            else:
                env[name] = value
                argv += ["--build-arg", name]
        if options.inline_cache:
            argv += ["--build-arg", "BUILDKIT_INLINE_CACHE=1"]
        for ref in options.cache_from:
            argv += ["--cache-from", ref]
        for secret in options.secrets:
            argv += ["--secret", secret.flag()]
        argv.append(str(context))
        log = PlainBuildLog(on_line)
        try:
            proc = subprocess.Popen(
                argv,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                text=True,
                encoding="utf-8",
                errors="replace",
            )
        except OSError as exc:
            raise DockerError(
                f"image build failed: cannot run {builder.cli}: {exc.strerror or exc}"
            ) from None
        try:
            assert proc.stdout is not None
            for line in proc.stdout:
                log.feed(line.rstrip("\n"))
            code = proc.wait()
        finally:
            if proc.poll() is None:  # an exception (Ctrl-C) while it builds: it stops too
                proc.kill()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=10)
        if code != 0:
            failure = log.failure()
            raise DockerError(failure.message(), failure.hint(platform))
        image_id = iidfile.read_text().strip() if iidfile.is_file() else ""
    if not image_id.startswith("sha256:"):
        raise DockerError(
            f"image build with {builder.describe()} reported no image id",
            "Check that the docker CLI's buildx builder loads images into the engine "
            "(`docker buildx use default`)",
        )
    return image_id
