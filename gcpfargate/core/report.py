"""How core code tells the user what is happening without printing anything itself."""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from typing import Protocol


class Reporter(Protocol):
    def step(self, title: str) -> AbstractContextManager[None]:
        """A named step; a spinner on a terminal, one line otherwise."""
        ...

    def info(self, message: str) -> None: ...

    def warn(self, message: str) -> None: ...

    def detail(self, message: str) -> None:
        """Shown only with --verbose."""
        ...

    def log(self, line: str) -> None:
        """A line of streamed output (build log, container log)."""
        ...

    def progress(self, task_id: str, description: str, current: int, total: int | None) -> None:
        """Per-item progress, such as a layer being pushed."""
        ...


class NullReporter:
    """Swallows everything; for library use and tests that only look at results."""

    def __init__(self) -> None:
        self.warnings: list[str] = []
        self.lines: list[str] = []

    def step(self, title: str) -> AbstractContextManager[None]:
        return nullcontext()

    def info(self, message: str) -> None:
        self.lines.append(message)

    def warn(self, message: str) -> None:
        self.warnings.append(message)

    def detail(self, message: str) -> None:
        pass

    def log(self, line: str) -> None:
        self.lines.append(line)

    def progress(self, task_id: str, description: str, current: int, total: int | None) -> None:
        pass


class DeferredReporter:
    """Records what work running in a background thread reports, to be replayed later in order.

    A terminal shows one live display at a time, so a thread must not draw spinners or bars while
    another step does: `deploy` builds the image during bootstrap and replays the build's report
    when the push-image step starts.
    """

    def __init__(self) -> None:
        self._events: list[tuple[str, tuple[object, ...]]] = []

    def step(self, title: str) -> AbstractContextManager[None]:
        self._events.append(("step", (title,)))
        return nullcontext()

    def info(self, message: str) -> None:
        self._events.append(("info", (message,)))

    def warn(self, message: str) -> None:
        self._events.append(("warn", (message,)))

    def detail(self, message: str) -> None:
        self._events.append(("detail", (message,)))

    def log(self, line: str) -> None:
        self._events.append(("log", (line,)))

    def progress(self, task_id: str, description: str, current: int, total: int | None) -> None:
        self._events.append(("progress", (task_id, description, current, total)))

    def replay(self, reporter: Reporter) -> None:
        events, self._events = self._events, []
        for kind, args in events:
            if kind == "step":
                with reporter.step(str(args[0])):
                    pass
            else:
                getattr(reporter, kind)(*args)


def duration(seconds: float) -> str:
    """`42 s`, `3 min 05 s`: how long a step or a wait took."""
    whole = int(seconds)
    return f"{whole} s" if whole < 60 else f"{whole // 60} min {whole % 60:02d} s"
