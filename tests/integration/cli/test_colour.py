"""Colour follows NO_COLOR and FORCE_COLOR on every output (no-color.org, force-color.org).

doctor without a config prints its FAIL tree without any cloud, so no stack is needed: on a
pseudo-terminal it is coloured unless NO_COLOR is set; in a pipe it is plain unless FORCE_COLOR is.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.integration.helpers import Terminal, terminal_env

ESC = "\x1b["


def _on_a_terminal(directory: Path, env: dict[str, str]) -> tuple[int, str]:
    term = Terminal([sys.executable, "-m", "gcpfargate", "doctor"], directory, env)
    return term.finish()


def _in_a_pipe(directory: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gcpfargate", "doctor"],
        cwd=directory,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_no_color_and_force_color_are_honoured(tmp_path: Path) -> None:
    directory = tmp_path / "empty"
    directory.mkdir()
    base = {k: v for k, v in terminal_env(tmp_path / ".home").items() if k != "NO_COLOR"}
    base.pop("FORCE_COLOR", None)

    code, coloured = _on_a_terminal(directory, base)
    assert code == 3 and "config valid" in coloured, coloured
    assert f"{ESC}31m  FAIL{ESC}0m   config valid" in coloured, repr(coloured)  # FAIL in red

    code, plain = _on_a_terminal(directory, {**base, "NO_COLOR": "1"})
    assert code == 3 and "FAIL   config valid" in plain, plain
    assert ESC not in plain, repr(plain)

    piped = _in_a_pipe(directory, base)
    assert piped.returncode == 3 and ESC not in piped.stdout + piped.stderr
    forced = _in_a_pipe(directory, {**base, "FORCE_COLOR": "1"})
    assert forced.returncode == 3 and f"{ESC}31m  FAIL" in forced.stdout, repr(forced.stdout)
    # NO_COLOR wins over FORCE_COLOR; FORCE_COLOR=0 forces nothing.
    for extra in ({"FORCE_COLOR": "1", "NO_COLOR": "1"}, {"FORCE_COLOR": "0"}):
        quiet = _in_a_pipe(directory, {**base, **extra})
        assert quiet.returncode == 3 and ESC not in quiet.stdout + quiet.stderr, extra
