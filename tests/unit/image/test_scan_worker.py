"""The layer scan's second process: the same answers as searching every file here, whatever
share each process gets, and the same answers when the worker cannot help."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from gcpfargate.clients.engine.layers import dir_listing
from gcpfargate.image import scan_worker
from gcpfargate.keymaterial.keyscan import credential_file_name, stream_has_secret
from tests.unit.helpers import armourless, key_json, pem


def _layer(root: Path) -> list[tuple[str, str, int]]:
    """A layer directory of clean files of many sizes, with key material in a few of them, a
    named credential file and an unreadable file."""
    for index in range(40):
        path = root / f"lib/pkg{index % 5}/mod{index}.py"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(os.urandom(1024 * (index + 1)).hex().encode())
    (root / "etc/app").mkdir(parents=True)
    (root / "etc/app/key.pem").write_text(pem())
    (root / "lib/pkg3/big.bin").write_bytes(os.urandom(3 * 2**20) + key_json() + os.urandom(99))
    (root / "lib/pkg1/notes.txt").write_bytes(armourless(pem()))
    (root / "home/runner").mkdir(parents=True)
    (root / "home/runner/gha-creds-1a2b.json").write_text("{}")
    return sorted(dir_listing(root))


def _here(files: list[tuple[str, str, int]]) -> list[bool | None]:
    return scan_worker.scan_files(files, stream_has_secret, credential_file_name, min_bytes=1 << 62)


def test_two_processes_answer_as_one(tmp_path: Path) -> None:
    files = _layer(tmp_path)
    alone = _here(files)
    assert [inside for (inside, _, _), hit in zip(files, alone, strict=True) if hit] == [
        "/etc/app/key.pem",
        "/home/runner/gha-creds-1a2b.json",
        "/lib/pkg1/notes.txt",
        "/lib/pkg3/big.bin",
    ]
    assert scan_worker.scan_files(files, stream_has_secret, credential_file_name, min_bytes=0) == (
        alone
    )


def test_each_share_is_searched_by_someone(tmp_path: Path) -> None:
    files = _layer(tmp_path)
    mine, theirs = scan_worker._halves(files)
    assert sorted(mine + theirs) == list(range(len(files)))
    sizes = [sum(files[index][2] for index in share) for share in (mine, theirs)]
    assert max(sizes) - min(sizes) <= max(size for _, _, size in files)
    # The worker's own answer for its share, compared with this process's.
    worker = scan_worker._start(
        [scan_worker._ref(stream_has_secret), scan_worker._ref(credential_file_name)],
        [files[index] for index in theirs],
    )
    letters = scan_worker._finish(worker, len(theirs))
    assert letters is not None
    assert [letter == "h" for letter in letters] == [_here(files)[index] for index in theirs]


def test_a_file_that_cannot_be_opened_is_none_both_ways(tmp_path: Path) -> None:
    files = _layer(tmp_path)
    (tmp_path / "lib/pkg2/mod2.py").unlink()  # listed, then gone: opening it fails
    index = [inside for inside, _, _ in files].index("/lib/pkg2/mod2.py")
    assert _here(files)[index] is None
    assert scan_worker.scan_files(files, stream_has_secret, credential_file_name, 0)[index] is None


def test_when_the_worker_fails_this_process_searches_its_share(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    files = _layer(tmp_path)
    alone = _here(files)
    # A worker that answers nothing (an interpreter that cannot run it), and one that never starts.
    monkeypatch.setattr(scan_worker.sys, "executable", "/bin/false")
    assert scan_worker.scan_files(files, stream_has_secret, credential_file_name, 0) == alone
    monkeypatch.setattr(scan_worker.sys, "executable", str(tmp_path / "no-such-python"))
    assert scan_worker.scan_files(files, stream_has_secret, credential_file_name, 0) == alone


def test_rules_the_worker_cannot_import_are_searched_here(tmp_path: Path) -> None:
    files = _layer(tmp_path)
    seen: list[str] = []

    def named(inside: str) -> bool:  # not importable by name: no worker
        seen.append(inside)
        return False

    scan_worker.scan_files(files, stream_has_secret, named, min_bytes=0)
    assert sorted(seen) == sorted(inside for inside, _, _ in files)
