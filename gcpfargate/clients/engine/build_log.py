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
        tail = " | ".join(plain(line) for line in self.last_lines)
        error = plain(self.error) or "the engine reported an error"
        text = f"image build failed{where}: {error}"
        return redact(f"{text}; last output: {tail}" if tail else text)

    def hint(self, platform: str) -> str:
        """What to do next. "exec format error" is a program of another architecture run by a
        RUN step: building for a platform this machine cannot run without an emulator (linux/amd64
        on Apple Silicon, linux/arm64 on an x86 CI runner), which no Dockerfile change fixes."""
        said = " ".join([self.error, *self.last_lines]).lower()
        if "exec format error" in said:
            target = platform or "image.platform"
            return (
                f"This machine cannot run {target} programs: register QEMU's binfmt handlers "
                "(docker run --privileged --rm tonistiigi/binfmt --install all; Docker Desktop "
                f"and Colima have them), or build on a {target} machine"
            )
        return "Fix that step of the Dockerfile and rerun"


# Terminal control sequences (colours, cursor moves, hyperlinks) that build tools print: a
# message keeps the text, not the escapes.
_ESCAPES = re.compile(r"\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b\[[0-?]*[ -/]*[@-~]|\x1b[@-_]")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


def plain(text: str) -> str:
    """`text` without terminal escape sequences and control characters, on one line."""
    return " ".join(_CONTROL.sub("", _ESCAPES.sub("", text)).split())


class BuildLog:
    """Follows a build's JSON stream: forwards lines, remembers the current step, finds the image
    id."""

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


# BuildKit's plain progress (`--progress=plain`): "#6 [3/4] RUN …" names a step (vertex 6),
# "#6 0.257 text" is its output, "#6 ERROR: …" its failure; lines outside any vertex close the
# build ("error: failed to solve: …", or a bare reason on a 20.10 CLI).
_VERTEX = re.compile(r"^#(\d+) \[([^\]]+)\] (.*)$")
_OUTPUT = re.compile(r"^#(\d+) \d+\.\d+ ?(.*)$")
_VERTEX_ERROR = re.compile(r"^#(\d+) ERROR: (.*)$")
_NUMBERED = re.compile(r"^#\d+ ")
_STAGE_STEP = re.compile(r"^(?:(\S+) )?(\d+/\d+)$")
# BuildKit's words for a RUN step that exited non-zero, in the classic builder's words.
_EXIT = (
    re.compile(r"executor failed running \[(.*)\]: exit code: (\d+)"),
    re.compile(r'process "(.*)" did not complete successfully: exit code: (\d+)'),
)


def _classic_words(error: str) -> str:
    for pattern in _EXIT:
        if found := pattern.search(error):
            return f"The command '{found.group(1)}' returned a non-zero code: {found.group(2)}"
    return error


class PlainBuildLog:
    """Follows BuildKit's plain progress: forwards every line, remembers each step's name and last
    output lines, and which step failed with what error."""

    def __init__(self, on_line: LineCallback) -> None:
        self.on_line = on_line
        self._names: dict[str, str] = {}
        self._output: dict[str, deque[str]] = {}
        self._failed_vertex = ""
        self._error = ""
        self._closing: list[str] = []

    def feed(self, line: str) -> None:
        if not line.strip():
            return
        self.on_line(line)
        if found := _VERTEX_ERROR.match(line):
            self._failed_vertex, self._error = found.group(1), found.group(2)
        elif found := _VERTEX.match(line):
            self._names.setdefault(found.group(1), f"{found.group(2)}\0{found.group(3)}")
        elif found := _OUTPUT.match(line):
            lines = self._output.setdefault(found.group(1), deque(maxlen=_LAST_LINES))
            if found.group(2).strip():
                lines.append(found.group(2))
        elif not _NUMBERED.match(line) and not line.startswith(("------", " > ", " ")):
            self._closing.append(line)

    def failure(self) -> BuildFailure:
        failure = BuildFailure()
        name = self._names.get(self._failed_vertex, "")
        if name:
            where, instruction = name.split("\0", 1)
            if step := _STAGE_STEP.match(where):
                stage = step.group(1)
                stage = f"{stage} " if stage and stage != "stage-0" else ""
                failure.step = f"step {stage}{step.group(2)} `{instruction}`"
            failure.last_lines.extend(self._output.get(self._failed_vertex, ()))
        closing = [each for each in self._closing if not each.startswith("#")]
        error = self._error or (closing[-1] if closing else "")
        error = re.sub(r"^(?:error|ERROR):\s*", "", error)
        failure.error = _classic_words(error)
        return failure
