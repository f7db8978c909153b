"""Work in a forked child (core/forked.py): what deploy's context search and IAM reads run on.

What must hold: the answer is the work's return value; a gated child does nothing that needs the
go before it is given, and nothing at all when the parent closes first; a child started `after`
another starts its work once that one ended, or after AFTER_WAIT_S at most; nothing the child
writes reaches the parent's terminal; a failing child answers nothing.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from gcpfargate.core.forked import AFTER_WAIT_S

# Fresh interpreters, as the CLI runs: a pytest worker has threads, and nothing forks then.
DRIVER = """
import json, os, sys, time
from gcpfargate.core.forked import Forked
case, marks = sys.argv[1], sys.argv[2]

def mark(name):
    with open(os.path.join(marks, name), "w") as out:
        out.write(repr(time.monotonic()))

def gated(go, value):
    mark("prepared")
    if not go():
        mark("stopped")
        return None
    mark("went")
    return value

def first(seconds):
    time.sleep(seconds)
    mark("first-ended")
    return "first"

def second():
    mark("second-started")
    return "second"

def noisy():
    print("from the child")
    print("to stderr", file=sys.stderr)
    return [1, {"a": None}]

def fails():
    raise RuntimeError("no")

out = {}
if case == "go":
    child = Forked.start(gated, {"x": 1}, gated=True)
    time.sleep(0.3)
    out["went_before_go"] = os.path.exists(os.path.join(marks, "went"))
    child.go()
    out["answer"] = child.answer()
elif case == "close":
    child = Forked.start(gated, 1, gated=True)
    time.sleep(0.3)
    child.close()
    time.sleep(0.2)
    out["answer"] = child.answer()
elif case in ("after", "slow"):
    one = Forked.start(first, 0.4 if case == "after" else 5.0)
    two = Forked.start(second, after=one)
    out["answer"] = two.answer()
    one.close()
elif case == "noisy":
    out["answer"] = Forked.start(noisy).answer()
elif case == "fails":
    out["answer"] = Forked.start(fails).answer()
print(json.dumps(out))
"""


def run(case: str, marks: Path) -> tuple[dict[str, object], str]:
    done = subprocess.run(
        [sys.executable, "-c", DRIVER, case, str(marks)],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return dict(json.loads(done.stdout)), done.stderr


def moment(marks: Path, name: str) -> float:
    return float((marks / name).read_text())


def test_a_gated_child_waits_for_go(tmp_path: Path) -> None:
    answer, _ = run("go", tmp_path)
    assert answer == {"went_before_go": False, "answer": {"x": 1}}
    assert moment(tmp_path, "prepared") <= moment(tmp_path, "went")


def test_a_gated_child_closed_before_go_does_nothing(tmp_path: Path) -> None:
    answer, _ = run("close", tmp_path)
    assert answer == {"answer": None}
    assert (tmp_path / "prepared").exists() and not (tmp_path / "went").exists()


def test_a_child_after_another_starts_once_that_one_ended(tmp_path: Path) -> None:
    answer, _ = run("after", tmp_path)
    assert answer == {"answer": "second"}
    assert moment(tmp_path, "second-started") >= moment(tmp_path, "first-ended")


def test_a_child_after_a_slow_one_waits_at_most_the_limit(tmp_path: Path) -> None:
    answer, _ = run("slow", tmp_path)
    assert answer == {"answer": "second"}
    assert not (tmp_path / "first-ended").exists()  # killed at close, five seconds early


def test_what_the_child_writes_never_reaches_the_terminal(tmp_path: Path) -> None:
    answer, stderr = run("noisy", tmp_path)
    assert answer == {"answer": [1, {"a": None}]}  # the only line on stdout
    assert "to stderr" not in stderr


def test_a_failing_child_answers_nothing(tmp_path: Path) -> None:
    answer, stderr = run("fails", tmp_path)
    assert answer == {"answer": None}
    assert "RuntimeError" not in stderr
    assert AFTER_WAIT_S < 5.0  # the slow case's first child outlives the wait
