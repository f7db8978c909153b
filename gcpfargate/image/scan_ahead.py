"""The build context's key search, started in a forked process as soon as `deploy` knows the
context: it runs on the other core while this process imports the SDKs and asks AWS and GCP.

In a thread the search would hold the GIL against those imports (it is Python work: a walk, a
`stat` per file, reading what changed), and the build waits for it. The child runs
`guard.scan_context`, the very function push-image would run, and answers through a pipe with one
JSON document: the context-relative paths of the files holding key material (paths only: no
content crosses the pipe). push-image takes that answer only for the same context and Dockerfile;
if the child failed or said anything else, push-image searches the context itself, so the guard
never depends on the child.

Nothing is started on one CPU (the search would only take turns with this process), where there is
no fork, or once a thread runs (a fork copies no thread, and a lock one held would stay held).
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
from pathlib import Path


class ScanAhead:
    """One context search running in a forked child."""

    def __init__(self, context: Path, dockerfile: str, pid: int, answer: int) -> None:
        self.context = context
        self.dockerfile = dockerfile
        self._pid: int | None = pid
        self._answer = answer  # the pipe's read end
        self._found: list[str] | None = None

    @classmethod
    def start(cls, context: Path, dockerfile: str) -> ScanAhead | None:
        """The search started, or None where it would not help or cannot start."""
        if (os.cpu_count() or 1) < 2 or not hasattr(os, "fork"):
            return None
        if threading.active_count() != 1:
            return None
        read, write = os.pipe()
        try:
            pid = os.fork()
        except OSError:
            os.close(read)
            os.close(write)
            return None
        if pid == 0:  # pragma: no cover - the child (covered through the parent's answer)
            _child(read, write, context, dockerfile)
        os.close(write)
        return cls(context, dockerfile, pid, read)

    def found(self, context: Path, dockerfile: str) -> list[str] | None:
        """The child's answer for this context and Dockerfile, or None: search it here."""
        if self._pid is not None:
            self._found = self._collect()
        if (context, dockerfile) != (self.context, self.dockerfile):
            return None
        return self._found

    def _collect(self) -> list[str] | None:
        try:
            with os.fdopen(self._answer, "rb") as pipe:
                data = pipe.read()
            status = self._wait()
        except OSError:
            self.close()
            return None
        if status != 0:
            return None
        try:
            answer = json.loads(data)
        except ValueError:
            return None
        found = answer.get("found") if isinstance(answer, dict) else None
        if not isinstance(found, list) or not all(isinstance(each, str) for each in found):
            return None
        return found

    def _wait(self) -> int:
        assert self._pid is not None
        _, status = os.waitpid(self._pid, 0)
        self._pid = None
        return os.waitstatus_to_exitcode(status)

    def close(self) -> None:
        """A deploy that stopped before push-image took the answer: the child is not left
        running."""
        if self._pid is None:
            return
        import signal

        try:
            os.kill(self._pid, signal.SIGKILL)
            self._wait()
        except OSError:
            self._pid = None
        with contextlib.suppress(OSError):
            os.close(self._answer)


def _child(read: int, write: int, context: Path, dockerfile: str) -> None:
    """Search, answer, and leave without running anything of the parent's (no atexit handler, no
    flush of the parent's buffered output)."""
    code = 1
    try:
        os.close(read)
        from gcpfargate.image.guard import scan_context

        answer = memoryview(json.dumps({"found": scan_context(context, dockerfile)}).encode())
        while answer:
            answer = answer[os.write(write, answer) :]
        code = 0
    finally:
        os._exit(code)
