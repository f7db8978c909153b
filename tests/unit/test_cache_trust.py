"""Caches decide what the key guard skips and botocore reads its data through one: a forger who
can write the cache directory (a CI cache restore, a shared XDG_CACHE_HOME) must not be believed.
Records are HMAC-signed with a 0600 secret outside the cache; a cache directory others can write
is emptied and made private; one that is not the user's is not used; what decides where requests
go (endpoint rule sets, partitions) is never cached."""

from __future__ import annotations

import hashlib
import json
import marshal
import os
import stat
import sys
from pathlib import Path

import botocore
import pytest
from botocore.loaders import JSONFileLoader

from gcpfargate import cache
from gcpfargate.clients.botocore_data import CachedFileLoader
from gcpfargate.image.context_scan import RULES_VERSION, CleanFiles
from gcpfargate.image.layer_scan import CleanLayers

BOTOCORE_DATA = Path(botocore.__file__).parent / "data"
LAYER = "sha256:" + "ab" * 32


@pytest.fixture
def xdg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return tmp_path / "cache" / "gcpfargate"


def forged_layer_record(path: Path) -> None:
    """What a forger writes: the record's old plain SHA-256 "checksum", recomputed."""
    layers = [LAYER]
    checksum = hashlib.sha256(f"{RULES_VERSION}\n{chr(10).join(layers)}".encode()).hexdigest()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"rules": RULES_VERSION, "layers": layers, "checksum": checksum}))


def test_a_forged_layer_record_is_refused_and_rebuilt(xdg: Path) -> None:
    record = CleanLayers()
    forged_layer_record(record.path)
    assert record.load() == []  # the layer is scanned again
    record.add([LAYER])
    assert record.load() == [LAYER]  # rebuilt, signed
    data = json.loads(record.path.read_text())
    data["layers"].append("sha256:" + "cd" * 32)  # anything added by hand breaks the signature
    record.path.write_text(json.dumps(data))
    assert record.load() == []


def test_a_forged_context_record_is_refused(xdg: Path, tmp_path: Path) -> None:
    context = tmp_path / "context"
    context.mkdir()
    (context / "app.py").write_text("print(1)\n")
    record = CleanFiles(context)
    info = (context / "app.py").stat()
    files = {"app.py": [info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns]}
    body = json.dumps([RULES_VERSION, record.context, files], sort_keys=True, separators=(",", ":"))
    record.path.parent.mkdir(parents=True, exist_ok=True)
    record.path.write_text(
        json.dumps(
            {
                "rules": RULES_VERSION,
                "context": record.context,
                "files": files,
                "checksum": hashlib.sha256(body.encode()).hexdigest(),
            }
        )
    )
    assert record.load() == {}
    record.save({"app.py": tuple(files["app.py"])})  # type: ignore[dict-item]
    assert list(record.load()) == ["app.py"]


def model_path(tmp_path: Path) -> str:
    directory = tmp_path / "data" / "ecs" / "2014-11-13"
    directory.mkdir(parents=True)
    source = next((BOTOCORE_DATA / "ecs" / "2014-11-13").glob("service-2.json*"))
    (directory / source.name).write_bytes(source.read_bytes())
    return str(directory / "service-2")


def test_a_forged_botocore_entry_is_not_read(xdg: Path, tmp_path: Path) -> None:
    model = model_path(tmp_path)
    loader = CachedFileLoader()
    real = loader.load_file(model)
    entry = next((xdg / "botocore-data").iterdir())
    path = model + (".json.gz" if os.path.exists(model + ".json.gz") else ".json")
    info = os.stat(path)
    key = (path, info.st_size, info.st_mtime_ns, botocore.__version__, sys.version, marshal.version)
    forged = dict(real, metadata={**real["metadata"], "endpointPrefix": "attacker"})
    for magic in (b"gcpfargate botocore data 1\n", b"gcpfargate botocore data 2\n"):
        payload = marshal.dumps((key, forged))
        entry.write_bytes(magic + hashlib.sha256(payload).digest() + payload)
        again = CachedFileLoader()
        assert again.load_file(model) == JSONFileLoader().load_file(model)
        assert again.parsed == 1


@pytest.mark.parametrize(
    "relative",
    ["endpoints", "partitions", "ecs/2014-11-13/endpoint-rule-set-1"],
)
def test_what_decides_where_requests_go_is_never_cached(xdg: Path, relative: str) -> None:
    loader = CachedFileLoader()
    data = loader.load_file(str(BOTOCORE_DATA / relative))
    assert data == JSONFileLoader().load_file(str(BOTOCORE_DATA / relative))
    directory = xdg / "botocore-data"
    assert not directory.exists() or list(directory.iterdir()) == []
    assert CachedFileLoader().load_file(str(BOTOCORE_DATA / relative)) == data


def test_a_cache_directory_others_can_write_is_emptied_and_made_private(xdg: Path) -> None:
    record = CleanLayers()
    record.add([LAYER])
    assert record.load() == [LAYER]
    xdg.chmod(0o777)
    assert record.load() == []  # whatever is there may be anyone's: not believed, removed
    assert stat.S_IMODE(xdg.stat().st_mode) == 0o700
    assert not record.path.exists()
    record.add([LAYER])
    assert record.load() == [LAYER]


@pytest.mark.skipif(os.getuid() != 0, reason="making a directory another user's needs root")
def test_a_cache_directory_of_another_user_is_not_used(xdg: Path) -> None:
    record = CleanLayers()
    record.add([LAYER])
    os.chown(xdg, 12345, 12345)
    assert record.load() == []
    record.path.unlink()
    record.add([LAYER])
    assert not record.path.exists()  # nothing written there either


def test_the_secret_is_private_outside_the_cache_and_refused_otherwise(
    xdg: Path, tmp_path: Path
) -> None:
    record = CleanLayers()
    record.add([LAYER])
    secret = cache.state_dir() / "cache-secret"
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    assert cache.cache_dir() not in secret.parents
    secret.chmod(0o644)  # readable by others: a forger could sign with it
    assert record.load() == []
    record.path.unlink()
    record.add([LAYER])
    assert not record.path.exists()  # no trusted secret: nothing cached


def test_a_signed_record_is_read_only_for_its_own_key_and_unedited(xdg: Path) -> None:
    # cache.save_record/load_record: the docker CLI's version, the key a secret held last time.
    path = xdg / "records" / "one.json"
    cache.save_record(path, ["kind", "a", 1], {"key_id": "k1"})
    assert cache.load_record(path, ["kind", "a", 1]) == {"key_id": "k1"}
    assert cache.load_record(path, ["kind", "a", 2]) is None  # computed from something else
    data = json.loads(path.read_text())
    data["value"] = {"key_id": "k2"}  # edited: the signature no longer holds
    path.write_text(json.dumps(data))
    assert cache.load_record(path, ["kind", "a", 1]) is None
    path.write_text("{not json")
    assert cache.load_record(path, ["kind", "a", 1]) is None
