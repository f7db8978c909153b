"""`gcpfargate run-local`: rehearse a Fargate start on the local Docker engine; `credential-shim`
(hidden): the keyless sidecar's program, for the same rehearsals and for debugging."""

from __future__ import annotations

from typing import Annotated

import typer

from gcpfargate.cli.app import STATE, Arg, Command, Env, app


@app.command("run-local")
def run_local(
    network: Annotated[
        str,
        typer.Option("--network", metavar="MODE", help="none (default), bridge (egress) or host."),
    ] = "none",
    from_template: Annotated[
        bool,
        typer.Option(
            "--from-template",
            help="Render the template instead of using the latest registered revision.",
        ),
    ] = False,
    container: Annotated[
        str | None,
        typer.Option(
            "--container",
            metavar="NAME",
            show_default=False,
            help="Container to run (default: the first essential one).",
        ),
    ] = None,
    revision: Annotated[
        int | None,
        typer.Option(
            "--revision",
            min=1,
            metavar="N",
            show_default=False,
            help="Registered revision (default: latest ACTIVE).",
        ),
    ] = None,
    skip_role_check: Annotated[
        bool,
        typer.Option(
            "--skip-role-check",
            help="Run even when the execution role could not read a secret on Fargate.",
        ),
    ] = False,
    build: Annotated[
        bool,
        typer.Option(
            "--build",
            help="Build the local context (as push-image does, with its key guard) and run it "
            "with the rendered template; push nothing, register nothing.",
        ),
    ] = False,
    command: Command = None,
    arg: Arg = None,
    env: Env = None,
    job: Annotated[
        str | None,
        typer.Option(
            "--job",
            metavar="NAME",
            show_default=False,
            help="Rehearse this [jobs.NAME]: its command and env (flags win).",
        ),
    ] = None,
) -> None:
    """Run the task's essential container locally the way Fargate would; exit with its exit code."""
    from gcpfargate.ecs import overrides
    from gcpfargate.local.run import run_local as run

    given = overrides.parse(command, arg, env)
    result = run(
        STATE.context(),
        network=network,
        from_template=from_template,
        container_name=container,
        revision=revision,
        check_role=not skip_role_check,
        overrides=given,
        build=build,
        job=job,
    )
    STATE.console.info(f"container {result.container} exited with {result.exit_code}")
    STATE.console.show(result)
    if result.exit_code:
        raise typer.Exit(result.exit_code)


# The keyless sidecar's program, for running it where gcpfargate is installed: the sidecar image
# does not install gcpfargate (it runs the stdlib-only `gcpfargate.shim` package as `python3 -m
# shim`); this is the same program with the same options (argparse parses them), for local
# rehearsals and debugging.
@app.command(
    "credential-shim",
    # The keyless sidecar's own program: internal, so not listed in the top-level help.
    hidden=True,
    add_help_option=False,
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
)
def credential_shim(ctx: typer.Context) -> None:
    """Serve the ECS task role's credentials to google-auth on 127.0.0.1 (the keyless-mode
    sidecar)."""
    from gcpfargate.shim.server import main

    raise typer.Exit(main(ctx.args))
