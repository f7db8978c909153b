"""`gcpfargate logs`: the family's awslogs lines, interleaved by time; `--follow` until Ctrl-C."""

from __future__ import annotations

from typing import Annotated

import typer

from gcpfargate.cli.app import STATE, app


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
