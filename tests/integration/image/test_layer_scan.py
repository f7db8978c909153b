"""The layer scan against the stack's real dockerd: each layer is read once, a key is always found,
and a cache that cannot be trusted means "not scanned". Counters, not timings (issue 18)."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import pytest

from gcpfargate.clients.engine.docker import DockerEngine
from gcpfargate.clients.engine.layers import local_layer_dirs
from gcpfargate.image.layer_scan import RULES_VERSION, CleanLayers, LayerScan, scan_layers
from gcpfargate.keymaterial.keyscan import stream_has_key
from tests.conftest import Project
from tests.integration.helpers import configure_image, fake_key_json
from tests.stack.images import write_busybox_context
from tests.stack.local import LocalStack

BOTH_WAYS = pytest.mark.parametrize(
    "local_storage", [True, False], ids=["engine-storage", "export"]
)


@pytest.fixture
def engine(stack: LocalStack, monkeypatch: pytest.MonkeyPatch) -> Iterator[DockerEngine]:
    monkeypatch.setenv("DOCKER_HOST", stack.docker_host)
    yield DockerEngine()


def build(engine: DockerEngine, context: Path, app: str, steps: tuple[str, ...] = ()) -> str:
    write_busybox_context(context, [*steps, "COPY app.txt /app.txt"], files={"app.txt": app})
    return engine.build(context, "Dockerfile", f"layer-scan-test:{context.name}")


def scan(
    engine: DockerEngine,
    image: str,
    cache: CleanLayers,
    local_storage: bool,
    files: list[str] | None = None,
) -> LayerScan:
    """The product's rule; `files` counts what it is handed: every file whose content is read."""

    def rule(content: BinaryIO) -> bool:
        if files is not None:
            files.append(str(getattr(content, "name", "")))
        return stream_has_key(content)

    return scan_layers(engine, image, rule, cache, local_storage)


def diff_ids(engine: DockerEngine, image: str) -> list[str]:
    return list((engine.inspect(image) or {})["RootFS"]["Layers"])


@BOTH_WAYS
def test_a_second_scan_of_the_same_layers_reads_no_layer_content(
    engine: DockerEngine, tmp_path: Path, local_storage: bool
) -> None:
    cache = CleanLayers(tmp_path / "cache" / "clean.json")
    image = build(engine, tmp_path / "v1", "v1\n")
    first = scan(engine, image, cache, local_storage)
    assert first.found == [] and first.layers == 3 and len(first.read) == 3
    assert first.exported is not local_storage
    assert cache.load() == diff_ids(engine, image)

    files: list[str] = []
    second = scan(engine, image, cache, local_storage, files)
    assert second == LayerScan(found=[], layers=3, read=[], exported=False)
    assert files == []  # not one file's content was read


@BOTH_WAYS
def test_after_an_app_change_only_the_app_layer_is_read(
    engine: DockerEngine, tmp_path: Path, local_storage: bool
) -> None:
    cache = CleanLayers(tmp_path / "clean.json")
    context = tmp_path / "app"
    scan(engine, build(engine, context, "v1\n"), cache, local_storage)
    changed = build(engine, context, "v2\n")
    files: list[str] = []
    result = scan(engine, changed, cache, local_storage, files)
    assert result.exported is not local_storage
    assert len(files) == 1  # app.txt, the new layer's only file: busybox's files were not read
    if local_storage:
        assert result.read == diff_ids(engine, changed)[-1:]
    else:
        # the export names it by v1 ID (legacy layout) or by diff ID (OCI layout): one layer either
        # way
        assert len(result.read) == 1


@BOTH_WAYS
def test_a_key_is_found_by_its_path_every_time_and_never_cached(
    engine: DockerEngine, tmp_path: Path, local_storage: bool
) -> None:
    cache = CleanLayers(tmp_path / "clean.json")
    encoded = base64.b64encode(fake_key_json().encode()).decode()
    image = build(
        engine,
        tmp_path / "keyed",
        "v1\n",
        (
            f"RUN mkdir -p /app && echo {encoded} | base64 -d > /app/creds.json",
            "RUN rm /app/creds.json",
        ),
    )
    for _ in range(2):
        result = scan(engine, image, cache, local_storage)
        assert result.found == ["/app/creds.json"]
    layers = diff_ids(engine, image)
    keyed = layers[2]  # busybox, --install, the RUN that wrote the key, its rm, app.txt
    assert keyed not in cache.load()
    if local_storage:
        assert cache.load() == [
            each for each in layers if each != keyed
        ]  # the clean ones are recorded
        assert scan(engine, image, cache, True).read == [keyed]


@pytest.mark.parametrize(
    "damage", ["truncated", "checksum", "not-a-digest", "other-rules", "a-directory"]
)
def test_a_cache_that_cannot_be_trusted_means_not_scanned(
    engine: DockerEngine, tmp_path: Path, damage: str
) -> None:
    cache = CleanLayers(tmp_path / "clean.json")
    image = build(engine, tmp_path / "app", "v1\n")
    scan(engine, image, cache, True)
    data = json.loads(cache.path.read_text())
    if damage == "truncated":
        cache.path.write_text(cache.path.read_text()[:-20])
    elif damage == "checksum":
        data["layers"] = data["layers"][::-1]  # same entries, but not what was written
        cache.path.write_text(json.dumps(data))
    elif damage == "not-a-digest":
        data["layers"].append("sha256:nothex")
        cache.path.write_text(json.dumps(data))
    elif damage == "other-rules":
        cache.path.write_text(json.dumps({**data, "rules": RULES_VERSION - 1}))
    else:
        cache.path.unlink()
        cache.path.mkdir()
    assert cache.load() == []
    assert len(scan(engine, image, cache, True).read) == 3


def test_an_unwritable_cache_costs_a_rescan_not_a_failure(
    engine: DockerEngine, tmp_path: Path
) -> None:
    (tmp_path / "file").write_text("")
    cache = CleanLayers(tmp_path / "file" / "clean.json")  # its directory cannot be made
    image = build(engine, tmp_path / "app", "v1\n")
    assert len(scan(engine, image, cache, True).read) == 3
    assert len(scan(engine, image, cache, True).read) == 3


def test_layer_directories_are_used_only_as_the_engine_files_them(
    engine: DockerEngine, tmp_path: Path
) -> None:
    image = build(engine, tmp_path / "app", "v1\n")
    inspected = engine.inspect(image) or {}
    dirs = local_layer_dirs("", inspected)
    assert dirs is not None and list(dirs) == diff_ids(engine, image)
    assert (dirs[diff_ids(engine, image)[-1]] / "app.txt").read_text() == "v1\n"
    data = inspected["GraphDriver"]["Data"]
    lower = data["LowerDir"].split(":")
    swapped = {
        **inspected,
        "GraphDriver": {
            **inspected["GraphDriver"],
            "Data": {**data, "LowerDir": ":".join(lower[::-1])},
        },
    }
    assert local_layer_dirs("", swapped) is None  # checked against the layer database, not trusted
    assert local_layer_dirs("tcp://127.0.0.1:2375", inspected) is None  # a remote engine's paths


def test_push_image_records_scanned_layers_in_the_users_cache(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    configure_image(project, tag="v1")
    write_busybox_context(project.dir)
    result = project.run("push-image", "--output", "json", env={"XDG_CACHE_HOME": None})
    assert result.returncode == 0, result.output
    # Read as that user: the record is signed with the secret under their ~/.local/state.
    monkeypatch.setenv("XDG_STATE_HOME", str(project.dir / ".home" / ".local" / "state"))
    recorded = CleanLayers(
        project.dir / ".home" / ".cache" / "gcpfargate" / f"clean-layers-v{RULES_VERSION}.json"
    )
    assert len(recorded.load()) == 2  # busybox and its --install layer


def test_an_image_whose_layers_the_engine_does_not_name_is_read_whole(
    engine: DockerEngine, tmp_path: Path
) -> None:
    """Fail closed: no diff IDs means nothing can be known clean, so the whole export is read."""

    class Unnamed(DockerEngine):
        def inspect(self, image: str) -> dict[str, object] | None:
            return {**(super().inspect(image) or {}), "RootFS": {}}

    unnamed = Unnamed()
    encoded = base64.b64encode(fake_key_json().encode()).decode()
    image = build(
        engine,
        tmp_path / "keyed",
        "v1\n",
        (f"RUN mkdir -p /app && echo {encoded} | base64 -d > /app/k.json",),
    )
    result = scan(unnamed, image, CleanLayers(tmp_path / "clean.json"), True)
    assert result.found == ["/app/k.json"] and result.exported and len(result.read) == 4


def test_without_the_export_only_the_engines_storage_is_read(
    engine: DockerEngine, tmp_path: Path
) -> None:
    """`export=False` (deploy's search of the base image during the build, image/base_scan.py):
    where the engine's storage cannot be read, nothing is read and nothing recorded; where it can,
    the layers are read from it and recorded as always."""
    cache = CleanLayers(tmp_path / "cache" / "clean.json")
    image = build(engine, tmp_path / "v1", "v1\n")
    files: list[str] = []

    def rule(content: BinaryIO) -> bool:
        files.append(str(getattr(content, "name", "")))
        return stream_has_key(content)

    unread = scan_layers(engine, image, rule, cache, local_storage=False, export=False)
    assert (unread.read, unread.exported, files, cache.load()) == ([], False, [], [])
    read = scan_layers(engine, image, rule, cache, local_storage=True, export=False)
    assert len(read.read) == 3 and not read.exported and files
    assert cache.load() == diff_ids(engine, image)
