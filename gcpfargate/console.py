"""Everything the user sees: rich on a terminal, plain lines otherwise, JSON with --output json.

Human messages always go to stderr, so `--output json` leaves exactly one JSON object on stdout.
Every string passes through `redact` on its way out: a last line of defence, not the first.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from rich.console import Console

from gcpfargate.keyfile import redact


def interactive(stream: Any = None) -> bool:
    """Rich spinners and bars only on a real terminal and never in CI."""
    stream = stream or sys.stderr
    return bool(getattr(stream, "isatty", lambda: False)()) and not os.environ.get("CI")


class Output:
    """The CLI's `Reporter`: spinners, progress bars and messages on stderr; results on stdout."""

    # Redraw progress at most this often: drawing must not slow a push (see bench/).
    REFRESH_PER_SECOND = 8

    def __init__(self, output: str = "text", verbose: bool = False, debug: bool = False) -> None:
        self.json = output == "json"
        self.verbose = verbose or debug
        self.debug = debug
        self.rich = interactive()
        # emoji=False: an ARN's ":secret:" must not become a picture.
        self.err = Console(stderr=True, highlight=False, soft_wrap=True, force_terminal=self.rich or None,
                           no_color=not self.rich, emoji=False)
        # Not a terminal: never truncate (a tree or table is read by grep and humans in logs alike).
        self.out = Console(highlight=False, soft_wrap=True, no_color=not interactive(sys.stdout), emoji=False,
                           width=None if interactive(sys.stdout) else 400)
        self._progress: Any = None
        self._tasks: dict[str, Any] = {}
        self._last_plain: dict[str, float] = {}

    # -- Reporter ----------------------------------------------------------------------------
    @contextmanager
    def step(self, title: str) -> Iterator[None]:
        if self.rich:
            from rich.markup import escape

            with self.err.status(f"{escape(redact(title))}…"):
                yield
            self.err.print(f"[green]✓[/] {escape(redact(title))}")
        else:
            self._plain(f"{title} ...")
            yield

    def info(self, message: str) -> None:
        self._plain(message) if not self.rich else self.err.print(redact(message), markup=False)

    def warn(self, message: str) -> None:
        if self.rich:
            from rich.markup import escape

            self.err.print(f"[yellow]warning:[/] {escape(redact(message))}")
        else:
            self._plain(f"warning: {message}")

    def detail(self, message: str) -> None:
        if self.verbose:
            self._plain(message)

    def log(self, line: str) -> None:
        self._plain(line.rstrip("\n"))

    def progress(self, task_id: str, description: str, current: int, total: int | None) -> None:
        if not self.rich:
            # Plain mode: one line when an item starts and one when it completes, nothing between.
            state = "done" if total is not None and current >= total else "start"
            if self._last_plain.get(task_id) != {"start": 1.0, "done": 2.0}[state]:
                self._last_plain[task_id] = {"start": 1.0, "done": 2.0}[state]
                self._plain(f"{description}: {state}")
            return
        if self._progress is None:
            from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn

            self._progress = Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
                                      console=self.err, transient=True,
                                      refresh_per_second=self.REFRESH_PER_SECOND, auto_refresh=True)
            self._progress.start()
        if task_id not in self._tasks:
            self._tasks[task_id] = self._progress.add_task(redact(description), total=total)
        self._progress.update(self._tasks[task_id], completed=current, total=total)

    def end_progress(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress, self._tasks = None, {}

    # -- results -----------------------------------------------------------------------------
    def result(self, data: dict[str, Any], text: Callable[[Console], None] | None = None) -> None:
        """Print a command's result: the JSON object, or the human rendering."""
        self.end_progress()
        if self.json:
            sys.stdout.write(redact(json.dumps(data, indent=2, default=str)) + "\n")
            sys.stdout.flush()
        elif text is not None:
            text(self.out)
        else:
            self.table(data)

    def table(self, data: dict[str, Any], title: str | None = None) -> None:
        if not interactive(sys.stdout):
            # Plain "key: value" lines: nothing truncated, easy to grep.
            if title:
                sys.stdout.write(f"{title}\n")
            for key, value in data.items():
                shown = ", ".join(map(str, value)) if isinstance(value, list | tuple) else str(value)
                sys.stdout.write(redact(f"{key}: {shown}") + "\n")
            return
        from rich.table import Table

        table = Table(title=title, show_header=False, box=None, pad_edge=False)
        table.add_column(style="bold")
        table.add_column()
        for key, value in data.items():
            shown = ", ".join(map(str, value)) if isinstance(value, list | tuple) else str(value)
            table.add_row(key, redact(shown))
        self.out.print(table)

    def error(self, message: str) -> None:
        self.end_progress()
        if self.rich:
            from rich.markup import escape

            self.err.print(f"[red]error:[/] {escape(redact(message))}")
        else:
            sys.stderr.write(f"error: {redact(message)}\n")
            sys.stderr.flush()

    def _plain(self, message: str) -> None:
        sys.stderr.write(redact(message) + "\n")
        sys.stderr.flush()
