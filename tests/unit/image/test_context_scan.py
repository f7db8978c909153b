"""The build context's key search reads an unchanged file once (core/context_scan.py, issue 18).

What must hold: a file searched clean and unchanged since is not read again (counted), any change
to it is read again (new content, even with the old size and mtime put back, a new inode), a file
younger than SETTLED_SECONDS is read every time, a key is always found, and a record that is
damaged, of other rules or of another context counts as empty (every file read).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

import pytest

from gcpfargate.image import context_scan
from gcpfargate.image.context_scan import CleanFiles, scan_files
from gcpfargate.keymaterial.keyscan import stream_has_key
from tests.unit.helpers import pem

PEM = (
    "-----BEGIN "
    + "PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n-----END "
    + "PRIVATE KEY-----\n"
).encode()
FILES = {
    "app.py": b"print('v1')\n",
    "deps/lib/a.py": b"x = 1\n" * 1000,
    "deps/lib/b.so": os.urandom(4096),
}


def later(seconds: float) -> Callable[[], float]:
    """A clock `seconds` ahead: the files written by the test count as settled."""
    return lambda: __import__("time").time() + seconds


class Counted:
    def __init__(self) -> None:
        self.names: list[str] = []

    def __call__(self, handle: BinaryIO) -> bool:
        self.names.append(Path(handle.name).name)
        return stream_has_key(handle)


@pytest.fixture
def context(tmp_path: Path) -> Path:
    root = tmp_path / "context"
    for name, content in FILES.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(content)
    return root


def scan(
    context: Path, record: CleanFiles, clock: Callable[[], float] = later(10)
) -> tuple[list[str], list[str]]:
    reader = Counted()
    found = scan_files(context, [*sorted(FILES), "keys.json"], reader, record, now=clock).found
    return found, reader.names


def test_an_unchanged_file_is_read_once(context: Path, tmp_path: Path) -> None:
    record = CleanFiles(context, tmp_path / "record.json")
    assert scan(context, record) == ([], ["app.py", "a.py", "b.so"])
    assert scan(context, record) == ([], [])  # nothing read: every file recorded and unchanged


def test_every_kind_of_change_is_read_again(context: Path, tmp_path: Path) -> None:
    record = CleanFiles(context, tmp_path / "record.json")
    scan(context, record)
    app = context / "app.py"
    before = app.stat()
    app.write_bytes(b"print('v2')\n")  # same size
    os.utime(
        app, ns=(before.st_atime_ns, before.st_mtime_ns)
    )  # and the old mtime put back: the ctime moved
    assert scan(context, record)[1] == ["app.py"]
    replacement = context / "deps" / "lib" / "a.py.new"
    replacement.write_bytes(FILES["deps/lib/a.py"])
    replacement.replace(context / "deps" / "lib" / "a.py")  # a new inode with the same content
    assert scan(context, record)[1] == ["a.py"]
    (context / "keys.json").write_bytes(PEM)
    assert scan(context, record) == (["keys.json"], ["keys.json"])
    assert scan(context, record) == (["keys.json"], ["keys.json"])  # a key is never recorded


def test_a_file_changed_moments_ago_is_read_every_time(context: Path, tmp_path: Path) -> None:
    record = CleanFiles(context, tmp_path / "record.json")
    now = __import__("time").time
    assert scan(context, record, now)[1] == ["app.py", "a.py", "b.so"]
    assert scan(context, record, now)[1] == [
        "app.py",
        "a.py",
        "b.so",
    ]  # too young to trust its stat
    assert scan(context, record, later(context_scan.SETTLED_SECONDS + 1))[1] == [
        "app.py",
        "a.py",
        "b.so",
    ]
    assert scan(context, record)[1] == []


@pytest.mark.parametrize(
    "damage", ["flip", "truncate", "other-rules", "other-context", "bad-stamp", "not-json"]
)
def test_a_damaged_or_foreign_record_means_every_file_is_read(
    context: Path, tmp_path: Path, damage: str
) -> None:
    path = tmp_path / "record.json"
    record = CleanFiles(context, path)
    scan(context, record)
    data = json.loads(path.read_text())
    if damage == "flip":
        name = next(iter(data["files"]))
        data["files"][name][2] += 1  # a size that does not match the checksum
        path.write_text(json.dumps(data))
    elif damage == "truncate":
        path.write_bytes(path.read_bytes()[:40])
    elif damage == "other-rules":
        data["rules"] -= 1
        path.write_text(json.dumps(data))
    elif damage == "other-context":
        # The record of another context, moved here with its own valid checksum: still not this
        # one's.
        other = CleanFiles(tmp_path, path)
        files = data["files"]
        path.write_text(
            json.dumps(
                {
                    "rules": data["rules"],
                    "context": other.context,
                    "files": files,
                    "checksum": other._checksum(files),
                }
            )
        )
    elif damage == "bad-stamp":
        name = next(iter(data["files"]))
        data["files"][name] = ["x", 1, 2, 3, 4]
        data["checksum"] = record._checksum(data["files"])
        path.write_text(json.dumps(data))
    else:
        path.write_text("{not json")
    assert scan(context, record)[1] == ["app.py", "a.py", "b.so"]


def test_an_unwritable_record_only_costs_reading(context: Path, tmp_path: Path) -> None:
    blocked = tmp_path / "a-file"
    blocked.write_text("where the cache directory would be")
    record = CleanFiles(context, blocked / "record.json")
    assert scan(context, record)[1] == ["app.py", "a.py", "b.so"]
    assert scan(context, record)[1] == ["app.py", "a.py", "b.so"]


def test_the_default_record_lives_in_the_cache_per_context_and_rules(
    context: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    first, second = CleanFiles(context), CleanFiles(tmp_path)
    assert first.path.parent == tmp_path / "xdg" / "gcpfargate" / "context-scan"
    assert first.path != second.path and first.path.name.endswith(
        f"-v{context_scan.RULES_VERSION}.json"
    )


def test_a_context_without_dockerignore_patterns_lists_what_the_docker_sdk_lists(
    tmp_path: Path,
) -> None:
    """guard.every_path (the walk of a context whose .dockerignore has no patterns) gives exactly
    docker's exclude_paths: files, directories, hidden ones, symlinks listed but not followed, and
    a .dockerignore of comments only."""
    from docker.utils.build import exclude_paths

    from gcpfargate.image.guard import every_path, scan_context

    context = tmp_path / "ctx"
    (context / "a" / "b" / "c").mkdir(parents=True)
    (context / ".hidden").mkdir()
    (context / "empty").mkdir()
    outside = tmp_path / "outside"
    (outside / "deep").mkdir(parents=True)
    (outside / "deep" / "secret.json").write_text("{}")
    for name in ("Dockerfile", "app.py", "a/x", "a/b/y", "a/b/c/z", ".hidden/h", ".env"):
        (context / name).write_text("data\n")
    (context / "link-to-dir").symlink_to(outside)
    (context / "a" / "link-to-file").symlink_to(context / "app.py")
    (context / "dangling").symlink_to(tmp_path / "missing")
    (context / ".dockerignore").write_text("# comments only\n\n")
    assert sorted(every_path(str(context))) == sorted(exclude_paths(str(context), [], "Dockerfile"))
    # The scan reads what the build would send: the symlinked directory's file is not among it.
    (context / "a" / "b" / "key.pem").write_text(pem())
    found = scan_context(context, "Dockerfile", CleanFiles(context, tmp_path / "record.json"))
    assert found == ["a/b/key.pem"]
