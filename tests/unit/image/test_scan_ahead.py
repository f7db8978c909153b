"""deploy's context key search in a forked child (image/scan_ahead.py, issue 27).

What must hold: the child's answer is exactly `guard.scan_context`'s (a key in the context is found
through it), it is taken only for the same context and Dockerfile, a child that fails answers
nothing (push-image then searches itself and reports the error), nothing is forked once a thread
runs, and a deploy that stops early leaves no child behind.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from gcpfargate.image.guard import scan_context
from tests.unit.helpers import pem


def context_with(tmp_path: Path, files: dict[str, str]) -> Path:
    context = tmp_path / "ctx"
    for name, text in {"Dockerfile": "FROM scratch\nCOPY . /app\n", **files}.items():
        path = context / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return context


# Each case runs in a fresh interpreter, as the CLI does: a pytest worker has the stack's threads
# running, and ScanAhead forks only a process with none.
DRIVER = """
import json, os, sys, threading
from pathlib import Path
from gcpfargate.image.scan_ahead import ScanAhead
case, context, dockerfile = sys.argv[1], Path(sys.argv[2]), sys.argv[3]
if case == "thread":
    release = threading.Event()
    thread = threading.Thread(target=release.wait, daemon=True)
    thread.start()
    print(json.dumps({"started": ScanAhead.start(context, dockerfile) is not None}))
    release.set()
    thread.join()
    sys.exit(0)
ahead = ScanAhead.start(context, dockerfile)
if ahead is None:
    print(json.dumps({"started": False, "cpus": os.cpu_count()}))
    sys.exit(0)
answer = {"started": True}
if case == "close":
    pid = ahead.child._pid
    ahead.close()
    try:
        os.waitpid(pid, os.WNOHANG)
        answer["reaped"] = False
    except ChildProcessError:
        answer["reaped"] = True
    answer["found"] = ahead.found(context, dockerfile)
else:
    answer["other_context"] = ahead.found(context.parent, dockerfile)
    answer["other_dockerfile"] = ahead.found(context, "other.Dockerfile")
    answer["found"] = ahead.found(context, dockerfile)
print(json.dumps(answer))
"""


def run(case: str, context: Path, dockerfile: str = "Dockerfile") -> dict[str, object]:
    out = subprocess.run(
        [sys.executable, "-c", DRIVER, case, str(context), dockerfile],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout
    answer = dict(json.loads(out))
    if case != "thread" and not answer["started"]:
        pytest.fail(f"nothing forked in a fresh single-threaded interpreter: {answer}")
    return answer


def test_the_child_answers_what_scan_context_finds(tmp_path: Path) -> None:
    context = context_with(
        tmp_path, {"app.py": "print(1)\n", "conf/sa.json": pem(), "deep/er/k.pem": pem()}
    )
    found = run("answer", context)["found"]
    assert found == scan_context(context, "Dockerfile")
    assert sorted(found) == ["conf/sa.json", "deep/er/k.pem"]  # type: ignore[call-overload]


def test_a_clean_context_answers_an_empty_list_not_none(tmp_path: Path) -> None:
    assert run("answer", context_with(tmp_path, {"app.py": "print(1)\n"}))["found"] == []


def test_the_answer_is_only_for_its_own_context_and_dockerfile(tmp_path: Path) -> None:
    answer = run("answer", context_with(tmp_path, {"k.pem": pem()}))
    assert (answer["other_context"], answer["other_dockerfile"]) == (None, None)
    assert answer["found"] == ["k.pem"]


def test_a_child_that_fails_answers_nothing(tmp_path: Path) -> None:
    # scan_context raises: the child exits 1 and the caller searches (and reports) itself
    assert run("answer", tmp_path / "gone")["found"] is None


def test_nothing_is_forked_once_a_thread_runs(tmp_path: Path) -> None:
    assert run("thread", context_with(tmp_path, {})) == {"started": False}


def test_close_before_the_answer_leaves_no_child(tmp_path: Path) -> None:
    context = context_with(tmp_path, {f"f{i}.txt": "x\n" for i in range(200)})
    assert run("close", context) == {"started": True, "reaped": True, "found": None}
