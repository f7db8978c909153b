"""`gcpfargate schedule`: an EventBridge Scheduler schedule (cron/rate/at, with a time zone) for the
task."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from gcpfargate.cli.app import STATE, Arg, Command, Cpu, DryRun, Env, Memory, app

if TYPE_CHECKING:
    from gcpfargate.core.context import Context

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
    job: Annotated[
        str | None,
        typer.Option(
            "--job",
            metavar="NAME",
            show_default=False,
            help="Apply only this [jobs.NAME] schedule.",
        ),
    ] = None,
    prune: Annotated[
        bool,
        typer.Option(
            "--prune",
            help="Delete gcpfargate's schedules in the family's job group that no [jobs.*] "
            "table names any more (asks first).",
        ),
    ] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Prune without asking.")] = False,
    dry_run: DryRun = False,
) -> None:
    """Create, update, disable, show or delete the EventBridge Scheduler schedule that runs the
    task.

    With [jobs.NAME] tables in the config it applies one schedule per job instead (plan first,
    no write for an unchanged job); `--job NAME` applies one, `--prune` removes the ones no job
    names any more.
    """
    from gcpfargate.awsspec import cron
    from gcpfargate.ecs import overrides, schedule
    from gcpfargate.errors import UsageError

    given = cron.from_flags(cron=cron_fields, rate=rate, expression=expression)
    task_overrides = overrides.parse(command, arg, env, cpu, memory)
    single_flags = [
        flag
        for flag, on in (
            ("--cron/--rate/--expression", given),
            ("--timezone", timezone),
            ("--name", name),
            ("--group", group),
            ("--disable", disable),
            ("--delete", delete),
            ("--show", show),
            ("--adopt", adopt),
            ("overrides", task_overrides),
        )
        if on
    ]
    if (job is not None or prune) and single_flags:
        raise UsageError(
            f"{single_flags[0]} is for the [schedule] schedule, not with --job or --prune",
            "A job takes its expression and overrides from its [jobs.NAME] table",
        )
    if yes and not prune:
        raise UsageError("--yes only confirms --prune")
    if not single_flags:
        ctx = STATE.context(dry_run=dry_run)
        if job is not None or prune or ctx.settings.jobs:
            _apply_jobs(ctx, job, prune, yes, pin_revision, next_count, dry_run)
            return
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


def _apply_jobs(
    ctx: Context,
    job: str | None,
    prune: bool,
    yes: bool,
    pin_revision: bool,
    count: int,
    dry_run: bool,
) -> None:
    from gcpfargate.ecs import jobs, schedule
    from gcpfargate.errors import UsageError

    can_ask = STATE.output != "json" and STATE.console.rich
    if prune and not dry_run and not yes and not can_ask:
        raise UsageError(
            "--prune deletes schedules and needs a confirmation: there is no terminal to ask on",
            "Pass --yes, or run `gcpfargate schedule --prune --dry-run` to see what it would "
            "delete",
        )

    def confirm(names: list[str]) -> bool:
        if yes or dry_run:  # a preview deletes nothing: its plan lists what a yes would delete
            return True
        return can_ask and typer.confirm(
            f"Delete {len(names)} schedule(s) no job names any more: {', '.join(names)}?",
            err=True,
        )

    result = jobs.apply(
        ctx, only=job, prune=prune, confirm=confirm, pin_revision=pin_revision, count=count
    )
    if job is None and ctx.settings.sources.get("schedule.expression") != "default":
        # [schedule] next to jobs: still applied, as it is without them.
        result.schedule = schedule.apply(ctx, pin_revision=pin_revision, count=count)
    STATE.console.show(result, dry_run)
