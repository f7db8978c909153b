"""deploy's context key search in a forked child (image/scan_ahead.py, issue 27).

What must hold: the child's answer is exactly `guard.scan_context`'s (a key in the context is found
through it), it is taken only for the same context and Dockerfile, a child that fails answers
nothing (push-image then searches itself and reports the error), nothing is forked once a thread
runs, and a deploy that stops early leaves no child behind.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from gcpfargate.image.guard import scan_context
from gcpfargate.image.scan_ahead import ScanAhead
from tests.unit.helpers import pem


def context_with(tmp_path: Path, files: dict[str, str]) -> Path:
    context = tmp_path / "ctx"
    for name, text in {"Dockerfile": "FROM scratch\nCOPY . /app\n", **files}.items():
        path = context / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return context


def started(context: Path, dockerfile: str = "Dockerfile") -> ScanAhead:
    ahead = ScanAhead.start(context, dockerfile)
    if ahead is None:
        threads = threading.active_count()
        pytest.fail(f"nothing forked (cpu_count {os.cpu_count()}, {threads} threads)")
    return ahead


def test_the_child_answers_what_scan_context_finds(tmp_path: Path) -> None:
    context = context_with(
        tmp_path, {"app.py": "print(1)\n", "conf/sa.json": pem(), "deep/er/k.pem": pem()}
    )
    ahead = started(context)
    found = ahead.found(context, "Dockerfile")
    assert found == scan_context(context, "Dockerfile")
    assert sorted(found or []) == ["conf/sa.json", "deep/er/k.pem"]


def test_a_clean_context_answers_an_empty_list_not_none(tmp_path: Path) -> None:
    context = context_with(tmp_path, {"app.py": "print(1)\n"})
    assert started(context).found(context, "Dockerfile") == []


def test_the_answer_is_only_for_its_own_context_and_dockerfile(tmp_path: Path) -> None:
    context = context_with(tmp_path, {"k.pem": pem()})
    ahead = started(context)
    assert ahead.found(tmp_path, "Dockerfile") is None
    assert ahead.found(context, "other.Dockerfile") is None
    assert ahead.found(context, "Dockerfile") == ["k.pem"]


def test_a_child_that_fails_answers_nothing(tmp_path: Path) -> None:
    # scan_context raises: the child exits 1 and the caller searches (and reports) itself
    missing = tmp_path / "gone"
    assert started(missing).found(missing, "Dockerfile") is None


def test_nothing_is_forked_once_a_thread_runs(tmp_path: Path) -> None:
    context = context_with(tmp_path, {})
    release = threading.Event()
    thread = threading.Thread(target=release.wait)
    thread.start()
    try:
        assert ScanAhead.start(context, "Dockerfile") is None
    finally:
        release.set()
        thread.join()


def test_close_before_the_answer_leaves_no_child(tmp_path: Path) -> None:
    context = context_with(tmp_path, {f"f{i}.txt": "x\n" for i in range(200)})
    ahead = started(context)
    pid = ahead._pid
    assert pid is not None
    ahead.close()
    with pytest.raises(ChildProcessError):  # reaped: no such child any more
        os.waitpid(pid, os.WNOHANG)
    assert ahead.found(context, "Dockerfile") is None
