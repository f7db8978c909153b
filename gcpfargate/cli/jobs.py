"""`gcpfargate jobs`: each job's schedule, next runs and last runs (from the run history)."""

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
