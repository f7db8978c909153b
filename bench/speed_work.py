"""What each piece of `deploy`'s speed work pays for: deploy with all of it against deploy with one
piece switched off (bench/speed_off.py), on the bench's busybox project, side by side in one run.

Each variant has its own project (own account, secret, repository, family), deployed once untimed;
then, round after round, an image-only change and a no-op deploy of every variant, the variants'
order rotating each round so none always runs first. All variants run through the same wrapper,
so its cost is on every side. Medians of wall time.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
# The speed work a bench switch exists for, and where it lives. The rest (layer scan from the
# engine's storage, the build context's key-search record, the streamed context, the inline
# cache) is measured by the big-image case, which needs a 530 MB image to show it.
VARIANTS = {
    "": "all of it",
    "background-build": "the build in a thread beside bootstrap (deploy/sequence.py)",
    "read-ahead": "AWS reads sent ahead on two threads (clients/aws.py read_ahead)",
    "botocore-cache": "botocore's JSON models kept parsed (clients/botocore_data.py)",
}
CASES = ("image-only", "no-op")
_REST = (
    "The rest of deploy's speed work needs the big image to show and is measured there and "
    "in docs/performance.md: the layer scan reads only new layers, from the engine's "
    "storage (after an app-only change 1 layer in 45 ms instead of every layer, 8.7-24.7 "
    "s), with big layers on two processes; the build context's key search reads only files "
    'whose `stat` changed (see "build context key search alone" under big-image); the '
    "context is streamed to the engine (22.9 s against 24.0-25.3 s through a temporary "
    "file); the inline cache (the cold-engine figure under big-image). Every piece pays for"
    " itself, so all are kept; each sits behind one call in deploy/sequence.py "
    "(`_read_ahead`, `_BackgroundBuild`) or inside its adapter."
)


def run(
    work: Path, side_class: Any, tool_env: Any, check: Any, rounds: int, run_id: str
) -> list[str]:
    sides = {off: side_class(work, f"s{run_id}{index}") for index, off in enumerate(VARIANTS)}
    for off, side in sides.items():
        deploy(side, off, tool_env, check, "first")
    times: dict[str, dict[str, list[float]]] = {
        case: {off: [] for off in VARIANTS} for case in CASES
    }
    order = list(VARIANTS)
    for turn in range(rounds):
        rotated = order[turn % len(order) :] + order[: turn % len(order)]
        for case in CASES:
            for off in rotated:
                side = sides[off]
                if case == "image-only":
                    (side.context / "app.txt").write_text(f"{side.name} v{turn + 2}\n")
                times[case][off].append(deploy(side, off, tool_env, check, case))
        sys.stderr.write(f"[bench] speed work round {turn + 1}/{rounds}\n")
    return report(times, rounds)


def deploy(side: Any, off: str, tool_env: Any, check: Any, case: str) -> float:
    env = tool_env({"GCPFARGATE_BENCH_OFF": off})
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, str(HERE / "speed_off.py"), "deploy", "--output", "json"],
        cwd=side.dir,
        capture_output=True,
        text=True,
        env=env,
    )
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"deploy ({case}, {off or 'all'}) failed:\n{proc.stderr[-3000:]}")
    check(case, json.loads(proc.stdout))
    return elapsed


def report(times: dict[str, dict[str, list[float]]], rounds: int) -> list[str]:
    lines = [
        "## Speed work kept in deploy: what each piece pays for",
        "",
        f"`bench/speed_work.py`: the bench's busybox project, {rounds} rounds, medians of wall "
        "time; each row switches one piece off (bench/speed_off.py) and runs beside deploy with "
        "all of it. Gain = without it minus with it.",
        "",
        "| speed work | image-only: without | gain | no-op: without | gain |",
        "|---|---:|---:|---:|---:|",
    ]
    base = {case: statistics.median(times[case][""]) for case in CASES}
    lines.append(
        f"| {VARIANTS['']} (deploy as shipped) | {base['image-only']:.2f} s | – | "
        f"{base['no-op']:.2f} s | – |"
    )
    for off, what in VARIANTS.items():
        if not off:
            continue
        cells = []
        for case in CASES:
            without = statistics.median(times[case][off])
            cells += [f"{without:.2f} s", f"{without - base[case]:+.2f} s"]
        lines.append(f"| {what} | " + " | ".join(cells) + " |")
    lines += ["", _REST, "", "Every run, in seconds:", ""]
    for case in CASES:
        for off in VARIANTS:
            lines.append(
                f"- {case}, {off or 'all'}: " + ", ".join(f"{v:.2f}" for v in times[case][off])
            )
    return lines
