"""Reading a classic build's JSON stream: the lines to show, the step that failed, the image id."""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from gcpfargate.keymaterial.keyfile import redact

LineCallback = Callable[[str], None]

_STEP = re.compile(r"^Step \d+/\d+ : ")
_LAST_LINES = 5
# The classic builder's own bookkeeping lines: not what a failing step printed.
_BUILDER_NOISE = (
    " ---> ",
    "Removing intermediate container ",
    "Successfully built ",
    "Successfully tagged ",
)


@dataclass
class BuildFailure:
    """What a failed build said: the step it was on and the last lines that step printed."""

    step: str = ""
    error: str = ""
    last_lines: deque[str] = field(default_factory=lambda: deque(maxlen=_LAST_LINES))

    def message(self) -> str:
        where = f" at {self.step}" if self.step else ""
        tail = " | ".join(self.last_lines)
        text = f"image build failed{where}: {self.error.strip() or 'the engine reported an error'}"
        return redact(f"{text}; last output: {tail}" if tail else text)


class BuildLog:
    """Follows a build's JSON stream: forwards lines, remembers the current step, finds the image id."""

    def __init__(self, on_line: LineCallback) -> None:
        self.on_line = on_line
        self.failure = BuildFailure()
        self.image_id = ""
        self.failed = False

    def feed(self, chunk: Mapping[str, Any]) -> None:
        if "error" in chunk or "errorDetail" in chunk:
            detail = chunk.get("errorDetail") or {}
            self.failure.error = str(chunk.get("error") or detail.get("message") or "")
            self.failed = True
            return
        aux = chunk.get("aux")
        if isinstance(aux, dict) and str(aux.get("ID", "")).startswith("sha256:"):
            self.image_id = str(aux["ID"])
        for line in str(chunk.get("stream", "")).splitlines():
            line = line.rstrip()
            if not line:
                continue
            self.on_line(line)
            if _STEP.match(line):
                # A new step: its own output is what matters if it fails.
                self.failure.step = (
                    line.split(" : ", 1)[0].lower() + " `" + line.split(" : ", 1)[1] + "`"
                )
                self.failure.last_lines.clear()
            elif not line.startswith(_BUILDER_NOISE):
                self.failure.last_lines.append(line)
            if line.startswith("Successfully built ") and not self.image_id:
                self.image_id = line.removeprefix("Successfully built ").strip()
