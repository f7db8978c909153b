"""The leak scanner: every private key the IAM emulator minted, searched for everywhere it could
land.

What is searched for: the PEM body lines of every key the emulator handed out (its test-only record,
`IamEmulator.minted_keys()`), so a key that never reached a secret (the "store failed, key
deleted" path) counts too. A leak is found in any of these forms, because every source is also read
through decoding "views" before the lines are looked up:
- as is, and with whitespace and JSON `\\n` escapes removed (wrapped base64, re-indented JSON, a
  PEM printed line by line);
- URL-decoded;
- every base64 run decoded, at each of the four alignments (base64 of the PEM alone, or of text that
  holds it at another offset), and every hex run decoded; decoded binary (DER) is re-encoded;
- gzip streams decompressed (registry blobs, docker-save layers).
Any 127 consecutive characters of a PEM body contain one whole 64-character body line, so every
leak of at least two lines' worth is found; shorter fragments are not claimed.

Where (`PLACES`): the commands' stdout/stderr, files under the project, $HOME and /tmp (those
written since the scan's start; not other stacks' or other pytest workers' directories), the Docker
engine's data root (but the image layers that existed before the scan's commands ran: a layer is
content-addressed and never written again, so one made before any key was minted cannot hold one;
containers' writable layers are always read) and its containers' and images' configs, the registry's
stored blobs (but those stored before the scan's commands ran: content-addressed and never
rewritten, like the layers; every blob an earlier test on the worker pushed was read again
otherwise, 26 → 85 MB and 53 → 268 s for the self-check depending on where it ran), what moto
holds (secret names/descriptions/tags, task definitions with tags, IAM roles, ECR repositories,
log events, schedules), and the stack's logs.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import gzip
import hashlib
import json
import os
import re
import time
import urllib.parse
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.conftest import botocore_seed, cache_home
from tests.stack.local import LocalStack

PLACES = (
    "output",
    "project",
    "home",
    "tmp",
    "docker storage",
    "docker configs",
    "registry",
    "moto",
    "stack logs",
)
LINE = 64  # characters per PEM body line
B64_RUN = re.compile(rb"[A-Za-z0-9+/]{%d,}" % LINE)
HEX_RUN = re.compile(rb"(?:[0-9a-fA-F]{2}){%d,}" % LINE)
MAX_FILE = 64 * 1024 * 1024  # larger files are not read (none of ours comes near)
MAX_RECENT = 8 * 1024 * 1024  # for $HOME and /tmp, where other sessions' big files live too
# Keys the self-check minted and planted on purpose: the real scan skips them.
PLANTED: set[str] = set()


def pem_lines(pem: str) -> list[str]:
    return [
        line.strip() for line in pem.splitlines() if line.strip() and not line.startswith("-----")
    ]


def needles(minted: list[Any]) -> dict[bytes, str]:
    """Every full-length PEM body line of every key -> its key id."""
    found: dict[bytes, str] = {}
    for key in minted:
        body = "".join(pem_lines(key.private_key_pem))
        for start in range(0, len(body) - LINE + 1, LINE):
            found[body[start : start + LINE].encode()] = key.key_id
    return found


def _compact(data: bytes) -> bytes:
    for escape in (b"\\\\n", b"\\n", b"\\r", b"\\/"):
        data = data.replace(escape, b"/" if escape == b"\\/" else b"")
    return re.sub(rb"\s+", b"", data)


def _b64_decodings(run: bytes) -> Iterator[bytes]:
    for offset in range(4):
        part = run[offset:]
        part = part[: len(part) - len(part) % 4]
        if len(part) >= LINE:
            try:
                yield binascii.a2b_base64(part)
            except binascii.Error:
                continue


def views(data: bytes, depth: int = 0) -> Iterator[bytes]:
    """`data` and what it decodes to (see the module docstring), recursively to a small depth."""
    yield data
    compact = _compact(data)
    if compact != data:
        yield compact
    if depth >= 3:
        return
    if data[:2] == b"\x1f\x8b":
        with contextlib.suppress(OSError, EOFError, zlib.error):
            yield from views(gzip.decompress(data), depth + 1)
    if b"%" in data:
        unquoted = urllib.parse.unquote_to_bytes(data.replace(b"+", b" "))
        if unquoted != data:
            yield from views(unquoted, depth + 1)
    # On the compact view: wrapped base64 is one run there; a prefix of base64 letters ("noise")
    # only shifts the alignment, which one of the four offsets undoes.
    for match in B64_RUN.finditer(compact):
        for decoded in _b64_decodings(match.group()):
            yield from views(decoded, depth + 1)
    for match in HEX_RUN.finditer(data):
        for offset in (0, 1):
            run = match.group()[offset:]
            decoded = bytes.fromhex(run[: len(run) - len(run) % 2].decode())
            yield from views(decoded, depth + 1)
            if not decoded.isascii():  # hex of DER: its base64 is the PEM body
                for shift in range(3):
                    yield base64.b64encode(decoded[shift:])


def find_keys(data: bytes, lines: dict[bytes, str]) -> set[str]:
    """Ids of the keys one of whose body lines occurs in a view of `data`."""
    found: set[str] = set()
    for view in views(data):
        for match in B64_RUN.finditer(view):
            run = match.group()
            for start in range(len(run) - LINE + 1):
                key_id = lines.get(run[start : start + LINE])
                if key_id is not None:
                    found.add(key_id)
    return found


@dataclass
class Sources:
    """(place, label, bytes) of everything to search; `files()` adds a tree, `moto()` the AWS
    side."""

    since: float
    items: list[tuple[str, str, bytes]] = field(default_factory=list)
    seconds: dict[str, float] = field(
        default_factory=dict
    )  # place -> time spent reading and searching

    def add(self, place: str, label: str, data: bytes) -> None:
        self.items.append((place, label, data))

    @contextlib.contextmanager
    def timing(self, place: str) -> Iterator[None]:
        start = time.monotonic()
        try:
            yield
        finally:
            self.seconds[place] = self.seconds.get(place, 0.0) + time.monotonic() - start

    def files(
        self,
        place: str,
        root: Path,
        recent: bool = False,
        skip: tuple[Path, ...] | set[Path] | frozenset[Path] = (),
        seeded: Path | None = None,
    ) -> None:
        """Every file under `root`; with `seeded` (the tree `root` was copied from before the test),
        not a file that is still byte for byte its seed's: the seed was made before this test's
        keys existed, so such a file cannot hold one (a file the product wrote to differs)."""
        if not root.is_dir():
            return
        skipped = set(skip)
        for directory, subdirs, names in os.walk(root):
            subdirs[:] = [d for d in subdirs if Path(directory, d) not in skipped]
            for name in names:
                path = Path(directory, name)
                if path in skipped:
                    continue
                try:
                    info = path.lstat()
                    if (
                        not path.is_file()
                        or path.is_symlink()
                        or info.st_size > (MAX_RECENT if recent else MAX_FILE)
                    ):
                        continue
                    if recent and info.st_mtime < self.since:
                        continue
                    data = path.read_bytes()
                    if seeded is not None and _same(seeded / path.relative_to(root), data):
                        continue
                    self.add(place, str(path), data)
                except OSError:
                    continue  # vanished or unreadable (another session's file)

    def docker(self, stack: LocalStack, old_layers: frozenset[Path] = frozenset()) -> None:
        import docker

        client = docker.DockerClient(base_url=stack.docker_host)
        try:
            root = Path(client.info().get("DockerRootDir", ""))
            for container in client.api.containers(all=True):
                self.add(
                    "docker configs",
                    f"container {container['Id'][:12]}",
                    json.dumps(client.api.inspect_container(container["Id"])).encode(),
                )
            for image in client.api.images(all=True):
                detail = {
                    "inspect": client.api.inspect_image(image["Id"]),
                    "history": client.api.history(image["Id"]),
                }
                self.add("docker configs", f"image {image['Id'][:19]}", json.dumps(detail).encode())
        finally:
            client.close()
        # Readable when the engine is the stack's own.
        self.files("docker storage", root, skip=old_layers & image_layers(stack))

    def moto(self, stack: LocalStack) -> None:
        """What moto holds, read through its API (never a secret's value: that is where keys
        belong)."""
        import boto3

        def aws(service: str) -> Any:
            return boto3.client(
                service,
                region_name="ap-northeast-1",
                endpoint_url=stack.moto_direct_url,
                aws_access_key_id="testing",
                aws_secret_access_key="testing",
            )

        def pages(client: Any, operation: str, key: str, **kwargs: Any) -> list[Any]:
            return [
                item
                for page in client.get_paginator(operation).paginate(**kwargs)
                for item in page[key]
            ]

        dump = lambda value: json.dumps(value, default=str).encode()  # noqa: E731
        sm, ecs, iam, ecr, logs = (aws(s) for s in ("secretsmanager", "ecs", "iam", "ecr", "logs"))
        for secret in pages(sm, "list_secrets", "SecretList", IncludePlannedDeletion=True):
            self.add("moto", f"secret {secret['Name']}", dump(secret))
        for arn in pages(ecs, "list_task_definitions", "taskDefinitionArns"):
            self.add(
                "moto",
                arn,
                dump(ecs.describe_task_definition(taskDefinition=arn, include=["TAGS"])),
            )
        for role in pages(iam, "list_roles", "Roles"):
            name = role["RoleName"]
            policies = [
                iam.get_role_policy(RoleName=name, PolicyName=p)
                for p in pages(iam, "list_role_policies", "PolicyNames", RoleName=name)
            ]
            self.add(
                "moto",
                f"role {name}",
                dump(
                    {
                        "role": role,
                        "tags": iam.list_role_tags(RoleName=name)["Tags"],
                        "policies": policies,
                    }
                ),
            )
        for repository in pages(ecr, "describe_repositories", "repositories"):
            self.add("moto", f"repository {repository['repositoryName']}", dump(repository))
        for group in pages(logs, "describe_log_groups", "logGroups"):
            name = group["logGroupName"]
            events = pages(logs, "filter_log_events", "events", logGroupName=name)
            self.add("moto", f"log group {name}", dump({"group": group, "events": events}))
        try:
            scheduler = aws("scheduler")
            for schedule in pages(scheduler, "list_schedules", "Schedules"):
                detail = scheduler.get_schedule(
                    Name=schedule["Name"], GroupName=schedule.get("GroupName", "default")
                )
                self.add("moto", f"schedule {schedule['Name']}", dump(detail))
        except Exception as exc:  # an older moto without Scheduler: say so in the sources
            self.add("moto", f"schedules unreadable: {type(exc).__name__}", b"")


def image_layers(stack: LocalStack) -> frozenset[Path]:
    """The directories of the engine's image layers now (`<root>/<driver>/<cache-id>`, as the layer
    database names them). Only image layers: a container's writable layer is listed under
    `layerdb/mounts`, not here, and is always read."""
    import docker

    client = docker.APIClient(base_url=stack.docker_host)
    try:
        info = client.info()
    finally:
        client.close()
    root, driver = Path(info.get("DockerRootDir", "")), str(info.get("Driver", ""))
    layerdb = root / "image" / driver / "layerdb" / "sha256"
    found = set()
    with contextlib.suppress(OSError):  # another engine's root: not readable, not skipped
        for layer in layerdb.iterdir():
            with contextlib.suppress(OSError):
                found.add(root / driver / (layer / "cache-id").read_text().strip())
    return frozenset(found)


def registry_blobs(stack: LocalStack) -> frozenset[Path]:
    """The registry's stored blobs now (`blobs/sha256/<xx>/<digest>/data`). A blob is stored under
    its content's digest and never written again (distribution's filesystem driver; an upload of
    content it has is not stored twice), so one stored before any key of a scan was minted cannot
    hold one: `collect` passes over them, as over the engine's older layers. The manifests, links
    and uploads next to them are always read."""
    root = stack.root / "registry" / "docker" / "registry" / "v2" / "blobs"
    return frozenset(root.glob("sha256/*/*/data"))


def _same(seed: Path, data: bytes) -> bool:
    try:
        return seed.read_bytes() == data
    except OSError:
        return False


def other_pytest_dirs(project_dir: Path) -> tuple[Path, ...]:
    """The temporary directories of other pytest sessions and of this session's other xdist workers
    (`pytest-N`, `popen-gwK`): each holds the projects of another process's tests, written by
    commands of another stack whose keys are not ours. Under `make test` the other workers write
    there all the time, so every file is recent and read. Ours (this project's ancestors) stays."""
    mine = set(project_dir.resolve().parents)
    session = next((p for p in mine if re.fullmatch(r"pytest-\d+", p.name)), None)
    if session is None:
        return ()
    found = [
        p for p in session.parent.iterdir() if p not in mine and re.fullmatch(r"pytest-\d+", p.name)
    ]
    if any(p.parent == session and p.name.startswith("popen-gw") for p in mine):
        found += [p for p in session.glob("popen-gw*") if p not in mine]
    return tuple(found)


def collect(
    stack: LocalStack,
    outputs: list[tuple[str, bytes]],
    project_dir: Path,
    since: float,
    old_layers: frozenset[Path] = frozenset(),
    old_blobs: frozenset[Path] = frozenset(),
) -> Sources:
    """Every place of `PLACES`, read now; `old_layers` and `old_blobs`: image layers and registry
    blobs stored before `since` (skipped, see the module docstring and `registry_blobs`)."""
    sources = Sources(since)
    for label, data in outputs:
        sources.add("output", label, data)
    # The product runs with HOME inside the project (conftest): that is its $HOME; ours is searched
    # too.
    home = project_dir / ".home"
    with sources.timing("project"):
        sources.files("project", project_dir, skip=(home,))
    with sources.timing("home"):
        # The botocore cache every project starts with (conftest's seed) is searched only where
        # it changed.
        sources.files("home", home, seeded=botocore_seed() / ".home")
        sources.files("home", cache_home(project_dir), seeded=botocore_seed() / "cache")
        real_home = Path(os.environ.get("HOME", "/root"))
        # Toolchains and package caches (hundreds of thousands of files nothing of ours writes to).
        toolchains = tuple(
            real_home / d
            for d in (
                ".pyenv",
                ".cargo",
                ".rustup",
                ".npm",
                ".cache/pip",
                "go",
                ".local/lib",
                ".local/share/uv",
                ".cache/uv",
                ".m2",
            )
        )
        sources.files("home", real_home, recent=True, skip=toolchains)
    # Other sessions' stacks and engines live in /tmp too: their files cannot hold our keys, only
    # cost time.
    others = (
        tuple(p for p in Path("/tmp").glob("gcpf-*") if p != stack.root)
        + tuple(Path("/tmp").glob("bash_jobs*"))
        + other_pytest_dirs(project_dir)
    )
    with sources.timing("tmp"):
        sources.files("tmp", Path("/tmp"), recent=True, skip=(stack.root, *others))
    with sources.timing("docker"):
        sources.docker(stack, old_layers)
    with sources.timing("registry"):
        sources.files("registry", stack.root / "registry", skip=old_blobs)
    with sources.timing("moto"):
        sources.moto(stack)
    for log in sorted(stack.root.glob("*.log")):
        sources.add("stack logs", log.name, log.read_bytes())
    return sources


def scan(sources: Sources, minted: list[Any]) -> dict[tuple[str, str], set[str]]:
    """(place, label) -> ids of the keys found there (only sources with a hit)."""
    lines = needles(minted)
    hits: dict[tuple[str, str], set[str]] = {}
    seen: dict[
        bytes, set[str]
    ] = {}  # content digest -> keys found: the same busybox is in every project
    for place, label, data in sources.items:
        digest = hashlib.sha256(data).digest()
        with sources.timing(f"search {place}"):
            found = (
                seen[digest] if digest in seen else seen.setdefault(digest, find_keys(data, lines))
            )
        if found:
            hits[(place, label)] = found
    return hits
