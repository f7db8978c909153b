"""`gcpfargate` with one piece of deploy's speed work switched off (GCPFARGATE_BENCH_OFF), for
bench/speed_work.py; with the variable unset, gcpfargate exactly as installed. Bench-only: the
product has no switch for these."""

from __future__ import annotations

import os
import runpy
from typing import Any


class _BuildInPushImage:
    """No background build: push-image builds the image itself, after bootstrap."""

    def __init__(self, *args: Any) -> None:
        pass

    def result(self) -> None:
        return None

    def close(self) -> None:
        pass


def switch_off(name: str) -> None:
    if name == "background-build":
        from gcpfargate.deploy import sequence

        sequence._BackgroundBuild = _BuildInPushImage  # type: ignore[assignment,misc]
    elif name == "read-ahead":
        from gcpfargate.deploy import sequence

        sequence._read_ahead = lambda *args, **kwargs: None
    elif name == "botocore-cache":
        from gcpfargate.clients import botocore_data

        botocore_data.use_cached_files = lambda *args, **kwargs: None
    elif name:
        raise SystemExit(f"unknown GCPFARGATE_BENCH_OFF={name}")


if __name__ == "__main__":
    switch_off(os.environ.get("GCPFARGATE_BENCH_OFF", ""))
    runpy.run_module("gcpfargate", run_name="__main__")
