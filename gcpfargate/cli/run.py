"""`gcpfargate run`: RunTask on Fargate, wait for STOPPED while streaming awslogs, pass on the exit
code."""

from __future__ import annotations

from typing import Annotated

import typer

from gcpfargate.cli.app import STATE, Arg, Command, Cpu, DryRun, Env, Memory, app

_Revision = Annotated[
    int | None,
    typer.Option(
        "--revision",
        min=1,
        metavar="N",
        show_default=False,
        help="Run this revision instead of the latest ACTIVE one.",
    ),
]
_Cluster = Annotated[
    str | None,
    typer.Option(
        "--cluster", metavar="NAME", show_default=False, help="ECS cluster (run.cluster)."
    ),
]
_Subnets = Annotated[
    list[str] | None,
    typer.Option(
        "--subnet",
        metavar="SUBNET_ID",
        show_default=False,
        help="Subnet id; repeat for several (replaces run.subnets).",
    ),
]
_Groups = Annotated[
    list[str] | None,
    typer.Option(
        "--security-group",
        metavar="SG_ID",
        show_default=False,
        help="Security group id; repeat for several (replaces run.security_groups).",
    ),
]
_WaitTimeout = Annotated[
    int | None,
    typer.Option(
        "--wait-timeout",
        min=1,
        metavar="SECONDS",
        show_default=False,
        help="Seconds to wait for STOPPED (run.wait_timeout).",
    ),
]


@app.command("run")
def run_command(
    revision: _Revision = None,
    cluster: _Cluster = None,
    subnet: _Subnets = None,
    security_group: _Groups = None,
    wait_timeout: _WaitTimeout = None,
    no_wait: Annotated[
        bool, typer.Option("--no-wait", help="Return once the task is started.")
    ] = False,
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
            help="Run this [jobs.NAME] now: its command, env, size and [run] values (flags win).",
        ),
    ] = None,
    dry_run: DryRun = False,
) -> None:
    """Run the task on Fargate, stream its logs, and exit with its essential container's exit
    code."""
    from gcpfargate.ecs import overrides
    from gcpfargate.ecs.run import run

    given = overrides.parse(command, arg, env, cpu, memory)  # before the config: nothing else runs
    ctx = STATE.context(
        dry_run=dry_run,
        overrides={
            "run.cluster": cluster,
            "run.subnets": subnet or None,
            "run.security_groups": security_group or None,
            "run.wait_timeout": wait_timeout,
        },
    )
    result = run(ctx, revision=revision, wait=not no_wait, overrides=given, job=job)
    out = STATE.console
    for warning in result.warnings:
        out.warn(warning)
    if out.json and result.exit_code is not None:  # the text rendering says it on stdout instead
        out.info(f"task {result.task_id} stopped: {result.stopped_reason or 'no reason given'}")
    out.show(result)
    if result.exit_code:
        raise typer.Exit(result.exit_code)
