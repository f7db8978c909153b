"""`gcpfargate schedule`: an EventBridge Scheduler schedule (cron/rate/at, with a time zone) for the task."""

from __future__ import annotations

from typing import Annotated

import typer

from gcpfargate.cli.app import STATE, Arg, Command, Cpu, DryRun, Env, Memory, app

_Cron = Annotated[
    str | None,
    typer.Option(
        "--cron",
        metavar="FIELDS",
        show_default=False,
        help='Cron fields: AWS\'s six ("0 3 * * ? *") or Unix\'s five ("0 3 * * *"), or @daily,'
        " @hourly, @weekly, @monthly, @yearly (converted to the AWS form, which is shown).",
    ),
]
_Rate = Annotated[
    str | None,
    typer.Option(
        "--rate", metavar="RATE", show_default=False, help='A rate, e.g. "1 hour" or "15 minutes".'
    ),
]
_Expression = Annotated[
    str | None,
    typer.Option(
        "--expression",
        metavar="EXPR",
        show_default=False,
        help="A whole expression: cron(...), rate(...) or at(...) (schedule.expression).",
    ),
]
_Zone = Annotated[
    str | None,
    typer.Option(
        "--timezone",
        metavar="ZONE",
        show_default=False,
        help="IANA time zone, e.g. Asia/Tokyo (schedule.timezone).",
    ),
]
_Name = Annotated[
    str | None,
    typer.Option(
        "--name",
        metavar="NAME",
        show_default=False,
        help="Schedule name (schedule.name; default gcpfargate-<family>).",
    ),
]
_Group = Annotated[
    str | None,
    typer.Option(
        "--group", metavar="GROUP", show_default=False, help="Schedule group (schedule.group)."
    ),
]


@app.command("schedule")
def schedule_command(
    cron_fields: _Cron = None,
    rate: _Rate = None,
    expression: _Expression = None,
    timezone: _Zone = None,
    name: _Name = None,
    group: _Group = None,
    disable: Annotated[
        bool, typer.Option("--disable", help="Create or keep the schedule, but DISABLED.")
    ] = False,
    delete: Annotated[
        bool, typer.Option("--delete", help="Delete the schedule (the scheduler role stays).")
    ] = False,
    show: Annotated[
        bool,
        typer.Option("--show", help="Show the current schedule and its next runs; change nothing."),
    ] = False,
    adopt: Annotated[
        bool,
        typer.Option(
            "--adopt",
            help="Update or delete a schedule gcpfargate did not create (it then carries "
            "gcpfargate's mark).",
        ),
    ] = False,
    pin_revision: Annotated[
        bool,
        typer.Option(
            "--pin-revision", help="Run the current latest revision, not the newest at each run."
        ),
    ] = False,
    next_count: Annotated[
        int, typer.Option("--next", min=0, metavar="N", help="How many upcoming run times to show.")
    ] = 5,
    command: Command = None,
    arg: Arg = None,
    env: Env = None,
    cpu: Cpu = None,
    memory: Memory = None,
    dry_run: DryRun = False,
) -> None:
    """Create, update, disable, show or delete the EventBridge Scheduler schedule that runs the task."""
    from gcpfargate.ecs import cron, overrides, schedule
    from gcpfargate.errors import UsageError

    given = cron.from_flags(cron=cron_fields, rate=rate, expression=expression)
    task_overrides = overrides.parse(command, arg, env, cpu, memory)
    exclusive = [
        flag for flag, on in (("--show", show), ("--delete", delete), ("--disable", disable)) if on
    ]
    if len(exclusive) > 1:
        raise UsageError(f"{' and '.join(exclusive)} exclude each other")
    if (show or delete) and (given or pin_revision or task_overrides):
        raise UsageError(f"{exclusive[0]} takes no expression, overrides or --pin-revision")
    ctx = STATE.context(
        dry_run=dry_run,
        overrides={
            "schedule.expression": given,
            "schedule.timezone": timezone,
            "schedule.name": name,
            "schedule.group": group,
        },
    )
    if show:
        result = schedule.show(ctx, count=next_count)
    elif delete:
        result = schedule.delete(ctx, adopt=adopt)
    else:
        result = schedule.apply(
            ctx,
            disable=disable,
            pin_revision=pin_revision,
            count=next_count,
            overrides=task_overrides,
            adopt=adopt,
        )
    STATE.console.show(result, dry_run)
