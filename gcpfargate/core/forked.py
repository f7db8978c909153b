"""Work started in a forked child as soon as a command knows what it needs, answered through a
pipe with one JSON document: it runs on the other core while this process imports the SDKs.

In a thread the work would hold the GIL against those imports (they are Python work too). What
crosses the pipe is decided by the work: never key material. The caller never depends on the
child: no answer (the child failed, said something else, or was never started) means "do it here",
as without it.

Nothing is started on one CPU (the child would only take turns with this process), where there is
no fork, or once a thread runs (a fork copies no thread, and a lock one held would stay held).

A *gated* child prepares (imports) at once but waits for `go()` before anything that reaches the
network: a command that stops at its local checks has then asked no cloud for anything.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
from collections.abc import Callable
from typing import Any

# This process's ends of every child's pipes: a later child closes them, so that one child never
# holds another's pipe open (a gate would then not see its parent go).
_PARENT_ENDS: set[int] = set()
# How long a child started `after` another waits for it at most: past that, the first one is slow
# (a large context searched cold) and the second one's answer would come too late to help.
AFTER_WAIT_S = 0.6


class Forked:
    """One piece of work running in a forked child."""

    def __init__(self, pid: int, answer: int, gate: int | None, done: int) -> None:
        self._pid: int | None = pid
        self._answer = answer  # read end of the answer pipe
        self._gate = gate  # write end of the gate pipe (gated children)
        self._done = done  # read end of a pipe only the child holds open: EOF once it ended
        self._value: Any = None
        self._collected = False

    @classmethod
    def start(
        cls,
        work: Callable[..., Any],
        *args: Any,
        gated: bool = False,
        after: Forked | None = None,
    ) -> Forked | None:
        """`work(*args)` started in a child, or None where it would not help or cannot start.
        A gated child's work gets, as its first argument, `go()`: True once the parent said go,
        False when the parent stopped first. With `after`, the work starts once that child ended
        (or after AFTER_WAIT_S): two children that would take turns on one core run one after the
        other instead, the first one's answer as early as alone."""
        if (os.cpu_count() or 1) < 2 or not hasattr(os, "fork"):
            return None
        if threading.active_count() != 1:
            return None
        read, write = os.pipe()
        done_read, done_write = os.pipe()
        gate_read, gate_write = os.pipe() if gated else (None, None)
        waits = after._done if after is not None else None
        try:
            pid = os.fork()
        except OSError:
            for end in (read, write, done_read, done_write, gate_read, gate_write):
                if end is not None:
                    os.close(end)
            return None
        if pid == 0:  # pragma: no cover - the child (covered through the parent's answer)
            _child(work, args, (read, done_read, gate_write), write, gate_read, waits)
        os.close(write)
        os.close(done_write)
        _PARENT_ENDS.update((read, done_read))
        if gate_read is not None and gate_write is not None:
            os.close(gate_read)
            _PARENT_ENDS.add(gate_write)
        return cls(pid, read, gate_write, done_read)

    def go(self) -> None:
        """Let a gated child reach the network."""
        if self._gate is None:
            return
        with contextlib.suppress(OSError):
            os.write(self._gate, b"g")
        self._close(self._gate)
        self._gate = None

    def answer(self) -> Any:
        """The child's answer (waiting for it), or None: do the work here."""
        if not self._collected:
            self._collected = True
            self._value = self._collect()
        return self._value

    def _collect(self) -> Any:
        if self._pid is None:
            return None
        self.go()  # a gated child not let go answers nothing; never wait on it
        try:
            with os.fdopen(self._answer, "rb") as pipe:
                _PARENT_ENDS.discard(self._answer)
                data = pipe.read()
            status = self._wait()
        except OSError:
            self.close()
            return None
        if status != 0:
            return None
        try:
            document = json.loads(data)
        except ValueError:
            return None
        return document.get("answer") if isinstance(document, dict) else None

    def _wait(self) -> int:
        assert self._pid is not None
        _, status = os.waitpid(self._pid, 0)
        self._pid = None
        return os.waitstatus_to_exitcode(status)

    def close(self) -> None:
        """A command that stopped before taking the answer: the child is not left running."""
        if self._gate is not None:  # a gated child still waiting leaves without working
            self._close(self._gate)
            self._gate = None
        if self._pid is not None:
            import signal

            try:
                os.kill(self._pid, signal.SIGKILL)
                self._wait()
            except OSError:
                self._pid = None
        for end in (self._answer, self._done):
            if end in _PARENT_ENDS:
                self._close(end)

    @staticmethod
    def _close(end: int) -> None:
        _PARENT_ENDS.discard(end)
        with contextlib.suppress(OSError):
            os.close(end)


def _child(
    work: Callable[..., Any],
    args: tuple[Any, ...],
    parents: tuple[int | None, ...],
    write: int,
    gate_read: int | None,
    waits: int | None,
) -> None:
    """Work, answer, and leave without running anything of the parent's (no atexit handler, no
    flush of the parent's buffered output). Nothing the child says reaches the parent's terminal:
    a stray line would break `--output json`. The child holds its `done` pipe's write end until it
    leaves: a child started `after` it waits on that."""
    code = 1
    try:
        for end in (*parents, *(_PARENT_ENDS - {waits})):
            if end is not None:
                with contextlib.suppress(OSError):
                    os.close(end)
        quiet = os.open(os.devnull, os.O_WRONLY)
        os.dup2(quiet, 1)
        os.dup2(quiet, 2)
        if waits is not None:
            import select

            select.select([waits], [], [], AFTER_WAIT_S)
            os.close(waits)
        if gate_read is not None:
            args = (_gate(gate_read), *args)
        answer = memoryview(json.dumps({"answer": work(*args)}).encode())
        while answer:
            answer = answer[os.write(write, answer) :]
        code = 0
    finally:
        os._exit(code)


def _gate(gate_read: int) -> Callable[[], bool]:
    def go() -> bool:
        try:
            return os.read(gate_read, 1) == b"g"
        except OSError:
            return False

    return go
