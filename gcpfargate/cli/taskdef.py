"""Task-definition commands: `register-task` (step 4), `render`, `diff` and `init`."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from gcpfargate.cli.app import STATE, DryRun, app

if TYPE_CHECKING:
    from gcpfargate.config import Overrides
    from gcpfargate.core.context import Context
    from gcpfargate.settings import Settings

Image = Annotated[
    str | None,
    typer.Option(
        "--image",
        help="Image URI to register (push-image prints it); default "
        "<registry>/<image.repository>:<image.tag>.",
        show_default=False,
    ),
]
Template = Annotated[
    str | None,
    typer.Option("--template", help="Template file (task.template).", show_default=False),
]


@app.command("register-task")
def register_task(image: Image = None, template: Template = None, dry_run: DryRun = False) -> None:
    """Render the template, wire the credentials, validate, and register (no new revision when
    unchanged)."""
    from gcpfargate.taskdef.register import register_task as run_register

    ctx = STATE.context(dry_run=dry_run, overrides={"task.template": template})
    STATE.console.show(run_register(ctx, image), not ctx.plan.apply)


def _say_environment(settings: Settings) -> None:
    """Name the environment a render or diff describes (on stderr: stdout is the result)."""
    if settings.environment:
        region = settings.aws.region or "the default region"
        STATE.console.info(
            f"environment {settings.environment}: family {settings.family} in {region}"
        )


@app.command()
def render(image: Image = None, template: Template = None) -> None:
    """Print the final task definition register-task would send (no AWS writes)."""
    from gcpfargate.taskdef.register import RenderResult, render_definition

    context = STATE.context(overrides={"task.template": template})
    _say_environment(context.settings)
    STATE.console.show(RenderResult(render_definition(context, image, show_rendered=True)))


@app.command()
def diff(image: Image = None, template: Template = None) -> None:
    """Unified diff of the latest ACTIVE revision vs render; exit 1 when they differ."""
    from gcpfargate.taskdef.register import diff_definition

    context = STATE.context(overrides={"task.template": template})
    _say_environment(context.settings)
    result = diff_definition(context, image)
    STATE.console.show(result)
    if result.changed:
        raise typer.Exit(1)


@app.command()
def init(
    from_family: Annotated[
        str | None,
        typer.Option(
            "--from-family",
            metavar="FAMILY",
            show_default=False,
            help="Import the latest ACTIVE revision of this family as the template.",
        ),
    ] = None,
    family: Annotated[
        str | None,
        typer.Option(
            "--family",
            metavar="FAMILY",
            help="task.family (default: --from-family or the directory's name).",
            show_default=False,
        ),
    ] = None,
    gcp_project: Annotated[
        str, typer.Option("--gcp-project", metavar="PROJECT", help="gcp.project.")
    ] = "",
    service_account: Annotated[
        str, typer.Option("--service-account", metavar="ACCOUNT", help="gcp.service_account.")
    ] = "",
    repository: Annotated[
        str, typer.Option("--repository", metavar="NAME", help="image.repository (ECR).")
    ] = "",
    auth: Annotated[
        str,
        typer.Option(
            "--auth",
            metavar="MODE",
            help='gcp.auth: "key" (a key in Secrets Manager) or '
            '"keyless" (workload identity federation).',
            show_default=False,
        ),
    ] = "",
    force: Annotated[bool, typer.Option("--force", help="Overwrite existing files.")] = False,
    dry_run: DryRun = False,
) -> None:
    """Write gcpfargate.toml and task-definition.json.j2 here (or import an existing family)."""
    from gcpfargate.errors import ConfigError, UsageError
    from gcpfargate.settings import RULES, problem
    from gcpfargate.taskdef import scaffold
    from gcpfargate.taskdef.scaffold import (
        Answers,
        family_from_directory,
        next_steps,
        write_starter_dockerfile,
    )

    if auth and auth not in scaffold.AUTH_MODES:
        raise UsageError(f"--auth must be key or keyless, not {auth!r}")
    for flag, dotted, value in (
        ("--gcp-project", "gcp.project", gcp_project),
        ("--service-account", "gcp.service_account", service_account),
    ):
        if reason := problem(dotted, value):
            raise UsageError(f"{flag} {value!r} {reason}", RULES[dotted])

    directory = Path.cwd()
    # On a terminal, ask for what cannot be guessed; elsewhere (CI, pipes, -o json) never wait for
    # input.
    asking = STATE.console.rich and not STATE.console.json and sys.stdin.isatty()
    chosen_family = (
        family
        or from_family
        or (
            typer.prompt("Task family", default=family_from_directory(directory), err=True)
            if asking
            else family_from_directory(directory)
        )
    )
    overrides: Overrides = {"task.family": chosen_family}
    try:
        ctx = STATE.context(dry_run=dry_run, overrides=overrides)
    except ConfigError as exc:
        # --force is how a file that no longer loads gets replaced: start from the environment.
        if not force or not (directory / scaffold.CONFIG_FILE).exists():
            raise
        STATE.console.warn(f"{exc.message}; --force replaces the file")
        ctx = STATE.context(dry_run=dry_run, overrides=overrides, read_file=False)
    settings = ctx.settings  # values already in the environment seed the new file
    answers = Answers(
        family=chosen_family,
        project=gcp_project or settings.gcp.project,
        service_account=service_account or settings.gcp.service_account,
        region=settings.aws.region,
        repository=repository or settings.image.repository,
        auth=auth or settings.gcp.auth,
    )
    if asking and not from_family:
        answers.project = answers.project or _ask_setting("GCP project id", "gcp.project")
        answers.service_account = answers.service_account or _ask_setting(
            "Service account (id or email)", "gcp.service_account"
        )
        # Asked unless given (--auth, GCPFARGATE_GCP_AUTH): keyless is the answer where the
        # organisation forbids keys (iam.managed.disableServiceAccountKeyCreation, the default since
        # May 2024).
        answers.auth = auth or os.environ.get("GCPFARGATE_GCP_AUTH") or _ask_auth()
        answers.region = (
            answers.region
            or _region_guess(ctx)
            or typer.prompt("AWS region", default="", err=True, show_default=False)
        )
    else:
        # As the prompt does: the region the SDK would use (AWS_REGION, the profile) is written.
        answers.region = answers.region or _region_guess(ctx)
    result = scaffold.init(ctx, directory, answers, from_family=from_family, force=force)
    dockerfile = directory / "Dockerfile"
    if (
        not dockerfile.exists()
        and ctx.plan.apply
        and asking
        and typer.confirm("No Dockerfile here. Write a starter one?", default=True, err=True)
    ):
        result.files.extend(str(path) for path in write_starter_dockerfile(directory))
    STATE.console.show(result, not ctx.plan.apply)
    if ctx.plan.apply and not STATE.console.json:
        region_known = bool(answers.region)  # AWS_REGION or the profile will do
        STATE.console.info(
            "Next: "
            + next_steps(answers, has_dockerfile=dockerfile.exists(), region_known=region_known)
        )


def _ask_setting(prompt: str, dotted: str) -> str:
    """Ask until the answer passes the setting's own rule (an empty answer is asked again too)."""
    from gcpfargate.settings import RULES, problem

    while True:
        answer = str(typer.prompt(prompt, default="", err=True, show_default=False)).strip()
        reason = problem(dotted, answer) if answer else "is needed"
        if reason is None:
            return answer
        typer.echo(f"Error: {answer!r} {reason}. {RULES[dotted]}.", err=True)


def _ask_auth() -> str:
    from gcpfargate.taskdef.scaffold import AUTH_MODES

    while True:
        answer: str = (
            typer.prompt(
                "Authentication, key (a key in Secrets Manager) or keyless (no key; the choice "
                "where the organisation forbids keys)",
                default="key",
                err=True,
            )
            .strip()
            .lower()
        )
        if answer in AUTH_MODES:
            return answer
        typer.echo(f"Error: {answer!r} is not one of 'key', 'keyless'.", err=True)


def _region_guess(ctx: Context) -> str:
    """The region the AWS SDK would use (AWS_REGION, the profile), without asking AWS."""
    from gcpfargate.errors import GcpfargateError

    try:
        return ctx.aws.region
    except GcpfargateError:  # no region configured: ask
        return ""
