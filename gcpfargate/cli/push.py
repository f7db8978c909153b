"""`gcpfargate push-image`: step 3 (ECR repository, build, key guard, push)."""

from __future__ import annotations

from typing import Annotated

import typer

from gcpfargate.cli.app import STATE, DryRun, app


@app.command("push-image")
def push_image(
    tag: Annotated[
        str | None,
        typer.Option(
            "--tag",
            help="Image tag (image.tag; default: short git SHA of the "
            "context, else a UTC timestamp).",
            show_default=False,
        ),
    ] = None,
    allow_embedded_credentials: Annotated[
        bool,
        typer.Option(
            "--allow-embedded-credentials",
            help="Push even when the context or image holds a file that looks like a "
            "service-account key.",
        ),
    ] = False,
    dry_run: DryRun = False,
) -> None:
    """Build the image for image.platform and push it to ECR (nothing is pushed when the registry
    has it)."""
    from gcpfargate.deploy.sequence import push_images

    ctx = STATE.context(dry_run=dry_run, overrides={"image.tag": tag})
    result = push_images(ctx, allow_embedded_credentials=allow_embedded_credentials)
    STATE.console.show(result, not ctx.plan.apply)
