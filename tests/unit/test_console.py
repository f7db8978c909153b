"""Rendering details of console.Output that need no CLI run: finished progress bars collapse."""

from __future__ import annotations

import io

from rich.console import Console

from gcpfargate.console import Output, duration


def test_finished_progress_bars_collapse() -> None:
    out = Output()
    out.rich = True
    screen = io.StringIO()
    out.__dict__["err"] = Console(file=screen, force_terminal=True, width=80)
    out.progress("layer-a", "layer a", 0, 100)
    out.progress("layer-b", "layer b", 0, 50)
    out.progress("layer-a", "layer a", 100, 100)
    assert out._progress is not None  # layer b is still going
    out.progress("layer-b", "layer b", 50, 50)
    assert out._progress is None and out._tasks == {}  # all done: the bars are gone
    out.progress("layer-c", "layer c", 1, 10)  # a later push gets bars of its own
    assert out._progress is not None
    out.end_progress()


def test_durations_read_as_people_say_them() -> None:
    assert [duration(s) for s in (0.4, 42.9, 60, 185)] == [
        "0 s",
        "42 s",
        "1 min 00 s",
        "3 min 05 s",
    ]
