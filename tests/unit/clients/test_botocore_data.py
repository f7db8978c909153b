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
