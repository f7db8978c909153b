"""Everything the user sees: rich on a terminal, plain lines otherwise, JSON with --output json.

Human messages always go to stderr, so `--output json` leaves exactly one JSON object on stdout.
Every string passes through `redact` on its way out: a last line of defence, not the first.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from functools import cached_property
from typing import TYPE_CHECKING, Any

from gcpfargate.core.report import duration
from gcpfargate.keymaterial.keyfile import redact

if TYPE_CHECKING:  # rich's consoles are made on first use: plain and JSON output never need them
    from rich.console import Console

    from gcpfargate.core.plan import Change


def interactive(stream: Any = None) -> bool:
    """Rich spinners and bars only on a real terminal and never in CI."""
    stream = stream or sys.stderr
    return bool(getattr(stream, "isatty", lambda: False)()) and not os.environ.get("CI")


def coloured(stream: Any = None) -> bool:
    """Colour on `stream`: NO_COLOR (any value, no-color.org) turns it off everywhere, FORCE_COLOR
    (any value but 0) turns it on even in a pipe or CI; otherwise only on an interactive
    terminal."""
    if os.environ.get("NO_COLOR"):
        return False
    if os.environ.get("FORCE_COLOR", "0") not in ("", "0"):
        return True
    return interactive(stream)


def make_console(stderr: bool, live: bool) -> Console:
    """The one place a rich Console is made, so NO_COLOR and FORCE_COLOR hold for every output.

    `live`: spinners and bars are drawn on it (a real terminal outside CI). Off a terminal nothing
    is ever cropped (a tree or table is read by grep and humans in logs alike).
    """
    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    colour = coloured(stream)
    # emoji=False: an ARN's ":secret:" must not become a picture.
    return Console(
        stderr=stderr,
        highlight=False,
        soft_wrap=True,
        force_terminal=True if live or colour else None,
        no_color=not colour,
        color_system="auto" if colour else None,
        emoji=False,
        width=None if interactive(stream) else 400,
    )


class Output:
    """The CLI's `Reporter`: spinners, progress bars and messages on stderr; results on stdout."""

    # Redraw progress at most this often: drawing must not slow a push (see bench/).
    REFRESH_PER_SECOND = 8

    def __init__(self, output: str = "text", verbose: bool = False, debug: bool = False) -> None:
        self.json = output == "json"
        self.verbose = verbose or debug
        self.debug = debug
        self.rich = interactive()
        self._progress: Any = None
        self._tasks: dict[str, Any] = {}
        self.warnings = 0  # how many warnings were shown: `--strict` turns any into exit 1
        self._last_plain: dict[str, float] = {}

    # Made on first use: importing rich.console costs about 0.05 s, which a run whose lines are
    # plain (no terminal) or JSON never needs to pay.
    @cached_property
    def err(self) -> Console:
        return make_console(stderr=True, live=self.rich)

    @cached_property
    def out(self) -> Console:
        return make_console(stderr=False, live=False)

    # -- Reporter ----------------------------------------------------------------------------
    @contextmanager
    def step(self, title: str) -> Iterator[None]:
        if self.rich:
            from rich.markup import escape

            shown = escape(redact(title))
            started = time.monotonic()
            # The spinner's text is drawn again on each refresh, so the elapsed time keeps counting.
            with self.err.status(_Elapsed(f"{shown}…", started)):
                yield
            took = time.monotonic() - started
            after = f" [dim]({duration(took)})[/]" if took >= ELAPSED_FROM_S else ""
            self.err.print(f"[green]✓[/] {shown}{after}")
        else:
            self._plain(f"{title} ...")
            yield

    def info(self, message: str) -> None:
        self._plain(message) if not self.rich else self.err.print(redact(message), markup=False)

    def warn(self, message: str) -> None:
        self.warnings += 1
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

            self._progress = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                DownloadColumn(),
                console=self.err,
                transient=True,
                refresh_per_second=self.REFRESH_PER_SECOND,
                auto_refresh=True,
            )
            self._progress.start()
        if task_id not in self._tasks:
            self._tasks[task_id] = self._progress.add_task(redact(description), total=total)
        self._progress.update(self._tasks[task_id], completed=current, total=total)
        if all(task.finished for task in self._progress.tasks):
            # Every bar is done: clear them (transient), so they do not sit under later steps.
            self.end_progress()

    def end_progress(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress, self._tasks = None, {}

    # -- results -----------------------------------------------------------------------------
    def show(self, result: Any, dry_run: bool = False) -> None:
        """Any command's result: in a dry run its plan first (stderr), then its JSON or its text
        form."""
        # A deploy's plan is its dry-run text itself, step by step (see `_deploy`): printed once.
        if dry_run and hasattr(result, "plan") and type(result).__name__ != "DeployResult":
            self.plan(result.plan, getattr(result, "diff", ""))
        self.result(
            result.to_json(), text=lambda console: render_text(self, console, result, dry_run)
        )

    def plan(self, changes: Sequence[Change | str], diff: str = "") -> None:
        """What a dry run would change (or that nothing would), on stderr, one line per change (its
        text); JSON has the changes as objects under "plan"."""
        if self.json:
            return
        self.info("Plan (dry run, nothing changed):" if changes else "Nothing to do.")
        for change in changes:
            self.info(f"  - {change}")  # a Change's text
        if diff:
            self.info(diff.rstrip("\n"))

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
        if title:
            self.out.print(title, markup=False)
        rows(self.out, [(key, _shown(value)) for key, value in data.items()])

    def excerpt(self, text: str) -> None:
        """Lines that locate an error (a file's line with a caret), just above the error line."""
        self.end_progress()
        self._plain(text.rstrip("\n"))

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


# A step shows its elapsed time once it has taken this long (a wait, a push), not for quick reads.
ELAPSED_FROM_S = 2.0


class _Elapsed:
    """A spinner's text with the time since `started`, worked out each time rich draws it."""

    def __init__(self, markup: str, started: float) -> None:
        self.markup, self.started = markup, started

    def __rich__(self) -> Any:
        from rich.text import Text

        took = time.monotonic() - self.started
        after = f" [dim]{duration(took)}[/]" if took >= ELAPSED_FROM_S else ""
        return Text.from_markup(self.markup + after)


def _shown(value: Any) -> str:
    if value is None:
        return "-"  # null in JSON: not known yet (a dry run) or not there
    if isinstance(value, bool):
        return "yes" if value else "no"  # never Python's True/False in text
    if isinstance(value, dict):  # never a Python dict repr in text
        return "; ".join(f"{key} {_shown(item)}" for key, item in value.items())
    if isinstance(value, list | tuple):
        return ", ".join(_shown(item) for item in value) if value else "none"
    return str(value)


def write(text: str) -> None:
    """Text that is the result itself (a definition, a diff), unformatted on stdout."""
    sys.stdout.write(redact(text))
    sys.stdout.flush()


def render_text(output: Output, console: Console, result: Any, dry_run: bool) -> None:
    """The text form of any command's result: its own layout when it has one, else a key: value
    table."""
    layout = _LAYOUTS.get(type(result).__name__)
    if layout is not None:
        layout(output, console, result, dry_run)
    else:
        output.table({key: value for key, value in result.to_json().items() if key != "plan"})


def _yes(changed: object) -> str:
    return "yes" if changed else "no"


def wrapped(text: str, width: int) -> list[str]:
    """`text` in lines of at most `width` columns, broken at spaces only.

    An ARN, an image reference or a command is never split: one longer than the line stands alone
    on its line, whole (the terminal folds it on screen, and a copy-paste still gets all of it).
    """
    import textwrap

    return textwrap.wrap(text, max(width, 20), break_long_words=False, break_on_hyphens=False) or [
        ""
    ]


def _terminal(console: Console) -> bool:
    """Lay out for a screen only on a real terminal outside CI, as `interactive` decides for rich
    output."""
    return interactive(console.file)


def rows(console: Console, items: list[tuple[str, str]], indent: str = "") -> None:
    """Key/value rows: aligned and wrapped with a hanging indent on a terminal, `key: value` lines
    off one.

    No box drawing and no cropping: off a terminal each row is one line for grep and CI logs.
    """
    if not _terminal(console):
        for key, value in items:
            console.print(redact(f"{indent}{key}: {value}"), markup=False, soft_wrap=True)
        return
    from rich.text import Text

    keys = max((len(key) for key, _ in items), default=0)
    hang = len(indent) + keys + 2
    for key, value in items:
        for number, line in enumerate(wrapped(redact(value), console.width - hang)):
            head = (
                Text(f"{indent}{key:<{keys}}  ", style="bold") if number == 0 else Text(" " * hang)
            )
            # soft_wrap: rich neither wraps nor crops; assemble: only the key is bold.
            console.print(Text.assemble(head, line), soft_wrap=True)


def _deploy(output: Output, console: Console, result: Any, dry_run: bool) -> None:
    if dry_run:
        # The same plan as `-o json` has under each step's "plan", and only what would change.
        if not result.plan:
            console.print("gcpfargate deploy (dry run): nothing would change.", markup=False)
            return
        console.print("gcpfargate deploy (dry run, nothing changed) would:", markup=False)
        for name, step in result.steps.items():
            console.print(f"{name}:" + ("" if step.plan else " nothing would change"), markup=False)
            for change in step.plan:
                console.print(f"  - {change}", markup=False)  # a Change's text
            if getattr(step, "diff", ""):
                console.print(step.diff.rstrip("\n"), markup=False)
        return

    boot, push, task = (result.steps[name] for name in ("bootstrap", "push-image", "register-task"))
    identity = boot.identity()
    items = [
        ("bootstrap", boot.changed, identity),
        ("push-image", push.changed, _image_and_digest(push.image, push.digest)),
        ("register-task", task.changed, task.task_definition_arn or ""),
    ]
    if "service" in result.steps:  # a [service] is configured
        rolled = result.steps["service"]
        items.append(("service", rolled.changed, f"{rolled.service}: {rolled.status}"))
    if "run-history" in result.steps:
        kept = result.steps["run-history"]
        items.append(("run-history", kept.changed, f"{kept.rule} -> {kept.log_group}"))
    if "alerts" in result.steps:
        alert = result.steps["alerts"]
        items.append(("alerts", alert.changed, f"{alert.rule} -> {alert.topic_arn}"))
    console.print("gcpfargate deploy", markup=False)
    rows(
        console,
        [(step, f"changed {_yes(changed)}, {text}") for step, changed, text in items],
        indent="  ",
    )


def _image_and_digest(image: str, digest: str | None) -> str:
    """`repo:tag sha256:…`, the digest once: a digest-pinned reference already names it."""
    if not digest or digest in image:
        return image
    return f"{image} {digest}"


def _run(output: Output, console: Console, result: Any, dry_run: bool) -> None:
    if result.request is not None and result.task_arn is None:
        console.print("RunTask request (dry run, nothing sent):", markup=False)
        console.print(json.dumps(result.request, indent=2), markup=False)
    elif result.exit_code is None:
        console.print(f"Task {result.task_arn} started (not waiting).", markup=False)
    else:
        reason = f": {result.stopped_reason}" if result.stopped_reason else ""
        console.print(
            f"Task {result.task_id} stopped{reason} (exit code {result.exit_code}).", markup=False
        )


def _schedule(output: Output, console: Console, result: Any, dry_run: bool) -> None:
    items = [
        ("schedule", f"{result.name} (group {result.group})"),
        ("arn", result.schedule_arn or "-"),
        ("state", result.state),
    ]
    if result.expression:
        items += [
            (
                "expression",
                result.expression + (f" (from {result.written})" if result.written else ""),
            ),
            ("timezone", result.timezone),
            ("task definition", result.task_definition_arn),
            ("role", result.role_arn),
        ]
    if not result.read_only:
        items.append(("changed", _yes(result.changed)))
    rows(console, items)
    if result.next_runs:
        console.print(f"Next {len(result.next_runs)} runs ({result.timezone}):", markup=False)
        for when in result.next_runs:
            console.print(f"  {when}", markup=False)


def _jobs(output: Output, console: Console, result: Any, dry_run: bool) -> None:
    """schedule with [jobs.*]: one row per job (what happens to it, its expression and state),
    an update's changed fields under it, then the schedules no job names."""
    would = {"create": "would create", "update": "would update"} if dry_run else {}
    items = [("group", result.group)]
    for job in result.jobs:
        action = would.get(job.action, "created" if job.action == "create" else job.action)
        if job.action == "update" and not dry_run:
            action = "updated"
        text = f"{action}: {job.expression} ({job.timezone}), {job.state}"
        if job.written:
            text += f", from {job.written}"
        if job.next_runs:
            text += f", next {job.next_runs[0]}"
        items.append((job.name, text))
    rows(console, items)
    for job in result.jobs:
        for change in job.changes:
            console.print(redact(f"  {job.name}: {change}"), markup=False, soft_wrap=True)
    tail = []
    if result.stale and not result.pruned:
        tail.append(("no job names", ", ".join(result.stale)))
    if result.pruned:
        tail.append(("pruned", ", ".join(result.pruned)))
    if result.foreign:
        tail.append(("not gcpfargate's", ", ".join(result.foreign)))
    if not dry_run:
        tail.append(("changed", _yes(result.changed)))
    if tail:
        rows(console, tail)
    if result.schedule is not None:
        _schedule(output, console, result.schedule, dry_run)


def _run_line(run: Any) -> str:
    code = "-" if run.exit_code is None else str(run.exit_code)
    took = f"{run.duration_s:.0f} s" if run.duration_s is not None else "-"
    outcome = "FAILED" if run.failed else "ok"
    why = f"{run.stop_code}: {run.reason}" if run.stop_code else run.reason
    return f"{run.stopped or '-'}  {outcome}  exit {code}  {took}  {why or '-'}"


def _job_status(output: Output, console: Console, result: Any, dry_run: bool) -> None:
    """jobs: per job its schedule, then its next and its last runs."""
    if not result.jobs:
        console.print(
            f"No jobs: no [jobs] in the config and no schedules in group {result.schedule_group}.",
            markup=False,
        )
    for job in result.jobs:
        console.print(f"{job.name}", markup=False)
        rows(
            console,
            [
                ("expression", job.expression or "-"),
                ("timezone", job.timezone),
                ("state", job.state),
                ("next runs", ", ".join(job.next_runs) or "-"),
            ],
            indent="  ",
        )
        if not job.last_runs:
            console.print("  last runs: none in the run history", markup=False)
            continue
        console.print("  last runs (stopped, outcome, exit code, duration, reason):", markup=False)
        for run in job.last_runs:
            console.print(redact(f"    {_run_line(run)}"), markup=False, soft_wrap=True)
    if result.other_runs:
        console.print("runs outside any job:", markup=False)
        for run in result.other_runs:
            console.print(
                redact(f"    {run.group}  {_run_line(run)}"), markup=False, soft_wrap=True
            )


def _doctor(output: Output, console: Console, result: Any, dry_run: bool) -> None:
    """Checks under their group: `  STATUS name: detail`, the detail wrapped under itself on a
    terminal."""
    from rich.text import Text

    colours = {"OK": "green", "WARN": "yellow", "FAIL": "red", "SKIP": "dim"}
    console.print("gcpfargate doctor", markup=False)
    group = None
    for check in result.checks:
        if check.group != group:
            group = check.group
            console.print(group, markup=False)
        status, text = check.status.value, redact(f"{check.name}: {check.detail}")
        lines = wrapped(text, console.width - 9) if _terminal(console) else [text]
        for number, line in enumerate(lines):
            # Only the status is coloured: Text + Text would give the whole line the head's style.
            head = (
                Text.assemble((f"  {status:<4}", colours[status]), "   ")
                if number == 0
                else Text(" " * 9)
            )
            console.print(Text.assemble(head, line), soft_wrap=True)
        if check.hint:
            console.print(Text(" " * 9) + Text(redact(f"fix: {check.hint}")), soft_wrap=True)
    console.print(f"status: {result.status}", markup=False)


def _diff(output: Output, console: Console, result: Any, dry_run: bool) -> None:
    if result.diff and coloured(sys.stdout):
        from rich.text import Text

        # Removed lines red, added green, hunk headers cyan, as git does on a terminal.
        for line in redact(result.diff).splitlines():
            style = (
                "bold"
                if line.startswith(("---", "+++"))
                else "red"
                if line.startswith("-")
                else "green"
                if line.startswith("+")
                else "cyan"
                if line.startswith("@@")
                else ""
            )
            console.print(Text(line, style=style), soft_wrap=True)
    elif result.diff:
        write(result.diff)
    else:
        output.info("No differences: the latest revision matches the template.")


def _rendered(output: Output, console: Console, result: Any, dry_run: bool) -> None:
    write(json.dumps(result.definition, indent=2) + "\n")


def _scaffold(output: Output, console: Console, result: Any, dry_run: bool) -> None:
    verb = "Would write" if dry_run else "Wrote"
    for path in result.files:
        write(f"{verb} {path}\n")


def _prune(output: Output, console: Console, result: Any, dry_run: bool) -> None:
    """prune-keys: each key was listed (stderr) before the question; here what happened to them."""
    deleted = ", ".join(result.deleted) or "none"
    items = [("service account", result.service_account)]
    if result.preview:
        would = [entry.key_id for entry in result.keys if entry.action == "delete"]
        items.append(("would delete", ", ".join(would) or "none"))
    else:
        items.append(("deleted", deleted))
    kept = [entry.key_id for entry in result.keys if entry.key_id not in result.deleted]
    if kept and not result.preview:
        items.append(("kept", ", ".join(kept)))
    rows(console, items)


def _nothing(output: Output, console: Console, result: Any, dry_run: bool) -> None:
    """run-local: the container's own output was the result; its exit code is the process's."""


_LAYOUTS: dict[str, Callable[[Output, Console, Any, bool], None]] = {
    "DeployResult": _deploy,
    "RunResult": _run,
    "ScheduleResult": _schedule,
    "JobsResult": _jobs,
    "DoctorReport": _doctor,
    "DiffResult": _diff,
    "RenderResult": _rendered,
    "ScaffoldResult": _scaffold,
    "RunLocalResult": _nothing,
    "PruneResult": _prune,
    "JobStatusResult": _job_status,
}
