"""What the scheduled jobs did: `gcpfargate jobs` (each job's schedule, next runs and last runs,
from the run history) and `gcpfargate logs` (the family's awslogs lines, interleaved by time;
`--follow` until Ctrl-C)."""

from __future__ import annotations

from typing import Annotated

import typer

from gcpfargate.cli.app import STATE, app


@app.command("jobs")
def jobs_command(
    job: Annotated[
        str | None,
        typer.Option("--job", metavar="NAME", show_default=False, help="Show this job only."),
    ] = None,
    next_count: Annotated[
        int, typer.Option("--next", min=0, metavar="N", help="How many upcoming runs to show.")
    ] = 3,
    last: Annotated[
        int, typer.Option("--last", min=1, metavar="N", help="How many past runs to show.")
    ] = 5,
) -> None:
    """Show every job: expression, time zone, state, next runs and last runs (exit code, reason)."""
    from gcpfargate.ecs.status import status
    from gcpfargate.errors import UsageError

    ctx = STATE.context()
    result = status(ctx, only=job, next_count=next_count, last=last)
    if job and not result.jobs:
        raise UsageError(
            f"no job named {job} (neither in the config's [jobs] nor in schedule group "
            f"{result.schedule_group})",
            "Run `gcpfargate jobs` to list them",
        )
    if result.history_missing:
        STATE.console.warn(
            f"no run history yet: log group {result.history_group} does not exist "
            "(`gcpfargate deploy` creates it)"
        )
    STATE.console.show(result)


@app.command("logs")
def logs_command(
    job: Annotated[
        str | None,
        typer.Option(
            "--job", metavar="NAME", show_default=False, help="Only the tasks of this job."
        ),
    ] = None,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep showing new lines until Ctrl-C.")
    ] = False,
    since: Annotated[
        str,
        typer.Option("--since", metavar="DURATION", help="From this long ago: 30s, 10m, 2h, 1d."),
    ] = "1h",
) -> None:
    """Show the containers' CloudWatch Logs lines of the family's tasks, oldest first."""
    import json
    import sys

    from gcpfargate.ecs import tail
    from gcpfargate.keymaterial.keyfile import redact

    seconds = tail.parse_since(since)
    ctx = STATE.context()
    reader = tail.Tail(ctx, job, seconds)
    as_json = STATE.console.json

    def emit(line: tail.Line) -> None:
        text = json.dumps(line.to_json()) if as_json else line.text()
        sys.stdout.write(redact(text) + "\n")
        sys.stdout.flush()

    if not follow:
        lines = reader.poll()
        if as_json:
            STATE.console.result({"lines": [line.to_json() for line in lines]})
            return
        for line in lines:
            emit(line)
        return
    # --follow: one JSON object per line with -o json. Ctrl-C is how a follow ends: exit 0, no
    # message. SIGTERM/SIGHUP (a subclass of KeyboardInterrupt) keep their own exit codes.
    try:
        tail.follow(reader, emit)
    except KeyboardInterrupt as exc:
        if type(exc) is not KeyboardInterrupt:
            raise
