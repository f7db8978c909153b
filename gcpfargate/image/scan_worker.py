"""A second core for the layer scan: the files of big new layers are searched by two processes.

Searching is CPU work that holds the GIL (bytes searches, regular expressions), so a thread would
not help; a worker process (`python -m gcpfargate.image.scan_worker`) takes about half of the bytes
while this process searches the rest. It gets only file paths and the names of the two rule
functions, and answers one letter per file (hit, clean, unreadable): no content crosses the pipe.
If it cannot start or does not finish its answer, this process searches its share itself, so the
result never depends on the worker. Below `PARALLEL_MIN_BYTES`, or on one CPU, everything is
searched here (starting the worker costs ~0.1 s).
"""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
from collections.abc import Callable
from typing import BinaryIO

# (path in the image, path on this machine, size) of one file to search.
File = tuple[str, str, int]

PARALLEL_MIN_BYTES = 64 * 2**20
_HIT, _CLEAN, _UNREADABLE = "h", "c", "e"


def scan_files(
    files: list[File],
    is_key: Callable[[BinaryIO], bool],
    is_named: Callable[[str], bool],
    min_bytes: int = PARALLEL_MIN_BYTES,
) -> list[bool | None]:
    """For each file: True when it holds key material (or `is_named` picks it), False when clean,
    None when it could not be read."""
    refs = [_ref(is_key), _ref(is_named)]
    total = sum(size for _, _, size in files)
    if total < min_bytes or (os.cpu_count() or 1) < 2 or None in refs:
        return [_scan_one(each, is_key, is_named) for each in files]
    mine, theirs = _halves(files)
    answers: list[bool | None] = [None] * len(files)
    worker = _start(refs, [files[index] for index in theirs])
    for index in mine:
        answers[index] = _scan_one(files[index], is_key, is_named)
    letters = _finish(worker, len(theirs))
    for position, index in enumerate(theirs):
        letter = letters[position] if letters is not None else None
        answers[index] = (
            _scan_one(files[index], is_key, is_named)
            if letter is None
            else None
            if letter == _UNREADABLE
            else letter == _HIT
        )
    return answers


def _scan_one(
    file: File, is_key: Callable[[BinaryIO], bool], is_named: Callable[[str], bool]
) -> bool | None:
    from gcpfargate.clients.engine.layers import open_file

    inside, path, _ = file
    if is_named(inside):
        return True
    try:
        with open_file(path) as content:
            return is_key(content)
    except OSError:
        return None


def _halves(files: list[File]) -> tuple[list[int], list[int]]:
    """File indexes split into two shares of about the same bytes, biggest files first."""
    shares: tuple[list[int], list[int]] = ([], [])
    sizes = [0, 0]
    for index in sorted(range(len(files)), key=lambda each: -files[each][2]):
        smaller = 0 if sizes[0] <= sizes[1] else 1
        shares[smaller].append(index)
        sizes[smaller] += files[index][2]
    return sorted(shares[0]), sorted(shares[1])


def _ref(function: Callable[..., object]) -> str | None:
    """`module:name` of a module-level function the worker can import, else None."""
    ref = f"{function.__module__}:{function.__qualname__}"
    try:
        return ref if _resolve(ref) is function else None
    except (ImportError, AttributeError):
        return None


def _resolve(ref: str) -> Callable[..., object]:
    module, _, name = ref.partition(":")
    found: Callable[..., object] = getattr(importlib.import_module(module), name)
    return found


def _start(refs: list[str | None], files: list[File]) -> subprocess.Popen[bytes] | None:
    """The worker, given its share (written in full before this returns: it reads all of its
    input before it answers, so the pipes cannot fill up both ways)."""
    try:
        worker = subprocess.Popen(
            [sys.executable, "-m", "gcpfargate.image.scan_worker", *[str(each) for each in refs]],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        assert worker.stdin is not None
        worker.stdin.write(b"".join(_encoded(inside, path) for inside, path, _ in files))
        worker.stdin.close()
    except OSError:
        return None
    return worker


def _encoded(inside: str, path: str) -> bytes:
    return os.fsencode(inside) + b"\0" + os.fsencode(path) + b"\0"


def _finish(worker: subprocess.Popen[bytes] | None, count: int) -> str | None:
    """The worker's letters, or None when it failed or answered for a different number of files."""
    if worker is None:
        return None
    assert worker.stdout is not None
    try:
        answer = worker.stdout.read()
        worker.wait()
    except OSError:
        worker.kill()
        return None
    letters = answer.decode("ascii", "replace")
    return letters if worker.returncode == 0 and len(letters) == count else None


def main() -> int:
    is_key, is_named = (_resolve(ref) for ref in sys.argv[1:3])
    fields = sys.stdin.buffer.read().split(b"\0")[:-1]
    files = [
        (os.fsdecode(fields[at]), os.fsdecode(fields[at + 1]), 0) for at in range(0, len(fields), 2)
    ]
    letters = []
    for file in files:
        found = _scan_one(file, is_key, is_named)  # type: ignore[arg-type]
        letters.append(_UNREADABLE if found is None else _HIT if found else _CLEAN)
    sys.stdout.write("".join(letters))
    return 0


if __name__ == "__main__":
    sys.exit(main())
