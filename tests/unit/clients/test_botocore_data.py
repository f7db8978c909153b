"""botocore's data files parsed once and kept (clients/botocore_data.py, issue 18).

The loader must give botocore exactly what its own JSONFileLoader gives, read the kept entry the
next time, and treat every problem with an entry (damaged, stale, unwritable) as "parse the JSON".
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
from pathlib import Path

import boto3
import pytest
from botocore.loaders import JSONFileLoader, Loader

from gcpfargate.clients.botocore_data import CachedFileLoader, use_cached_files

BOTOCORE_DATA = Path(__import__("botocore").__file__).parent / "data"


@pytest.fixture
def model(tmp_path: Path) -> str:
    """A copy of botocore's ECS model (gzip-compressed, as botocore ships it), path without
    extension."""
    directory = tmp_path / "data" / "ecs" / "2014-11-13"
    directory.mkdir(parents=True)
    source = next((BOTOCORE_DATA / "ecs" / "2014-11-13").glob("service-2.json*"))
    shutil.copyfile(source, directory / source.name)
    return str(directory / "service-2")


def test_gives_what_botocore_would_and_keeps_it(model: str, tmp_path: Path) -> None:
    loader = CachedFileLoader(tmp_path / "cache")
    first = loader.load_file(model)
    assert first == JSONFileLoader().load_file(model)
    assert loader.parsed == 1 and len(list((tmp_path / "cache").iterdir())) == 1
    again = CachedFileLoader(tmp_path / "cache")
    assert again.load_file(model) == first
    assert again.parsed == 0  # read from the kept entry, no JSON parsed


def test_a_damaged_entry_means_parse_the_json(model: str, tmp_path: Path) -> None:
    CachedFileLoader(tmp_path / "cache").load_file(model)
    entry = next((tmp_path / "cache").iterdir())
    blob = bytearray(entry.read_bytes())
    blob[len(blob) // 2] ^= 0xFF  # one flipped byte: the digest no longer matches
    entry.write_bytes(bytes(blob))
    loader = CachedFileLoader(tmp_path / "cache")
    assert loader.load_file(model) == JSONFileLoader().load_file(model)
    assert loader.parsed == 1
    for damaged in (b"", b"gcpfargate botocore data 1\n", entry.read_bytes()[:100]):
        entry.write_bytes(damaged)
        loader = CachedFileLoader(tmp_path / "cache")
        assert loader.load_file(model) == JSONFileLoader().load_file(model)
        assert loader.parsed == 1


def test_a_changed_file_is_parsed_again(model: str, tmp_path: Path) -> None:
    CachedFileLoader(tmp_path / "cache").load_file(model)
    path = Path(model + ".json.gz") if Path(model + ".json.gz").exists() else Path(model + ".json")
    changed = {
        "version": "2.0",
        "metadata": {"apiVersion": "upgraded"},
        "operations": {},
        "shapes": {},
    }
    raw = json.dumps(changed).encode()
    path.write_bytes(gzip.compress(raw) if path.suffix == ".gz" else raw)
    os.utime(path, ns=(1, 1))  # another mtime and size, as an upgrade of botocore gives
    loader = CachedFileLoader(tmp_path / "cache")
    assert loader.load_file(model) == changed
    assert loader.parsed == 1


def test_an_unwritable_cache_changes_nothing_but_speed(model: str, tmp_path: Path) -> None:
    blocked = tmp_path / "not-a-directory"
    blocked.write_text("a file where the cache directory would be")
    loader = CachedFileLoader(blocked / "cache")
    assert loader.load_file(model) == JSONFileLoader().load_file(model)
    assert loader.load_file(model) is not None and loader.parsed == 2
    assert loader.load_file(str(tmp_path / "missing")) is None


def test_clients_made_through_the_cache_work(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A session whose loader reads through the cache, twice (cold, then warm): the same models and
    endpoints as botocore's own loader, and a client that builds requests."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    for _ in range(2):
        session = boto3.Session(
            region_name="ap-northeast-1", aws_access_key_id="a", aws_secret_access_key="b"
        )
        use_cached_files(session._session)
        loader: Loader = session._session.get_component("data_loader")
        assert isinstance(loader.file_loader, CachedFileLoader)
        client = session.client("ecs")
        assert client.meta.endpoint_url == "https://ecs.ap-northeast-1.amazonaws.com"
        assert (
            client.meta.service_model.operation_model("RegisterTaskDefinition").input_shape
            is not None
        )
    assert loader.file_loader.parsed == 0  # the second session parsed nothing
    plain = boto3.Session(region_name="ap-northeast-1").client("ecs")
    assert client.meta.service_model.api_version == plain.meta.service_model.api_version
    assert list(client.meta.service_model.operation_names) == list(
        plain.meta.service_model.operation_names
    )


def _session(tmp_path: Path) -> tuple[boto3.Session, Loader]:
    session = boto3.Session(
        region_name="ap-northeast-1", aws_access_key_id="a", aws_secret_access_key="b"
    )
    use_cached_files(session._session)
    return session, session._session.get_component("data_loader")


def test_the_list_of_services_is_kept_and_is_botocores(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """botocore's list of services (checked at every model load) read from the cache the next
    time; the same list botocore computes, for each kind of model."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    walked: list[str] = []
    real_listdir = os.listdir
    monkeypatch.setattr(os, "listdir", lambda path: walked.append(path) or real_listdir(path))
    _, loader = _session(tmp_path)
    for kind in ("service-2", "paginators-1", "endpoint-rule-set-1"):
        assert loader.list_available_services(kind) == Loader().list_available_services(kind)
    assert walked  # the cold session walked botocore's data directory
    walked.clear()
    session, loader = _session(tmp_path)
    assert "ecs" in loader.list_available_services("service-2")
    session.client("ecs")
    # Read from the cache: only ecs's own directory is listed (for its latest API version).
    assert walked == [str(BOTOCORE_DATA / "ecs")] * len(walked), walked


def test_a_directory_of_models_added_to_the_search_path_is_listed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The kept list is for the search paths as they were: a service added to a directory of
    models (AWS_DATA_PATH, as ~/.aws/models; its mtime changes) is listed and loads."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    models = tmp_path / "models"
    models.mkdir()
    monkeypatch.setenv("AWS_DATA_PATH", str(models))
    _, loader = _session(tmp_path)
    assert "ecs-copy" not in loader.list_available_services("service-2")
    version = models / "ecs-copy" / "2014-11-13"
    version.mkdir(parents=True)
    source = next((BOTOCORE_DATA / "ecs" / "2014-11-13").glob("service-2.json*"))
    data = gzip.decompress(source.read_bytes()) if source.suffix == ".gz" else source.read_bytes()
    (version / "service-2.json").write_bytes(data)
    os.utime(models, ns=(1, 1))  # mtime resolution must not matter: any change of it does
    _, loader = _session(tmp_path)
    assert "ecs-copy" in loader.list_available_services("service-2")
    assert loader.load_service_model("ecs-copy", "service-2") == json.loads(data)
