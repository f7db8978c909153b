"""Task-definition commands: `register-task` (step 4), `render`, `diff` and `init`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from gcpfargate.cli.app import STATE, DryRun, app

Image = Annotated[str | None, typer.Option("--image", help="Image URI to register (push-image prints it); default "
                                           "<registry>/<image.repository>:<image.tag>.", show_default=False)]
Template = Annotated[str | None, typer.Option("--template", help="Template file (task.template).",
                                              show_default=False)]


@app.command("register-task")
def register_task(image: Image = None, template: Template = None, dry_run: DryRun = False) -> None:
    """Render the template, wire the credentials, validate, and register (no new revision when unchanged)."""
    from gcpfargate.core.taskdef import register_task as run_register

    ctx = STATE.context(dry_run=dry_run, overrides={"task.template": template})
    STATE.console.show(run_register(ctx, image), dry_run)


@app.command()
def render(image: Image = None, template: Template = None) -> None:
    """Print the final task definition register-task would send (no AWS writes)."""
    from gcpfargate.core.taskdef import RenderResult, render_definition

    context = STATE.context(overrides={"task.template": template})
    STATE.console.show(RenderResult(render_definition(context, image, show_rendered=True)))


@app.command()
def diff(image: Image = None, template: Template = None) -> None:
    """Unified diff of the latest ACTIVE revision vs render; exit 1 when they differ."""
    from gcpfargate.core.taskdef import diff_definition

    result = diff_definition(STATE.context(overrides={"task.template": template}), image)
    STATE.console.show(result)
    if result.changed:
        raise typer.Exit(1)


@app.command()
def init(
    from_family: Annotated[str | None, typer.Option("--from-family", help="Import the latest ACTIVE revision of "
                                                    "this family as the template.", show_default=False)] = None,
    family: Annotated[str | None, typer.Option("--family", help="task.family (default: --from-family or the "
                                               "directory's name).", show_default=False)] = None,
    gcp_project: Annotated[str, typer.Option("--gcp-project", help="gcp.project.")] = "",
    service_account: Annotated[str, typer.Option("--service-account", help="gcp.service_account.")] = "",
    repository: Annotated[str, typer.Option("--repository", help="image.repository (ECR).")] = "",
    force: Annotated[bool, typer.Option("--force", help="Overwrite existing files.")] = False,
    dry_run: DryRun = False,
) -> None:
    """Write gcpfargate.toml and task-definition.json.j2 here (or import an existing family)."""
    from gcpfargate.core.scaffold import Answers, family_from_directory
    from gcpfargate.core.scaffold import init as run_init

    directory = Path.cwd()
    chosen_family = family or from_family or family_from_directory(directory)
    ctx = STATE.context(dry_run=dry_run, overrides={"task.family": chosen_family})
    settings = ctx.settings  # values already in the environment seed the new file
    answers = Answers(family=chosen_family, project=gcp_project or settings.gcp.project,
                      service_account=service_account or settings.gcp.service_account,
                      region=settings.aws.region, repository=repository or settings.image.repository)
    result = run_init(ctx, directory, answers, from_family=from_family, force=force)
    STATE.console.show(result, dry_run)
    if not dry_run and not STATE.console.json:
        STATE.console.info("Next: run `gcpfargate deploy`." if answers.project and answers.service_account
                           else "Next: fill in gcp.project and gcp.service_account, then run `gcpfargate deploy`.")
