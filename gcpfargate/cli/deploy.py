"""`gcpfargate deploy`: the whole job in one idempotent command."""

from __future__ import annotations

from typing import Annotated

import typer

from gcpfargate.cli.app import STATE, DryRun, app


@app.command()
def deploy(
    tag: Annotated[str | None, typer.Option("--tag", help="Image tag (image.tag).")] = None,
    new_key: Annotated[bool, typer.Option("--new-key", help="Create a fresh key even when the current one is live.")]
    = False,
    grant: Annotated[bool, typer.Option("--grant", help="Let a given execution role read the secret.")] = False,
    allow_embedded_credentials: Annotated[bool, typer.Option("--allow-embedded-credentials",
                                                             help="Push even if the image holds a key file.")]
    = False,
    dry_run: DryRun = False,
) -> None:
    """bootstrap → push-image → register-task; a rerun with nothing changed changes nothing."""
    from gcpfargate.core.deploy import deploy as run_deploy

    result = run_deploy(STATE.context(dry_run=dry_run), allow_embedded_credentials=allow_embedded_credentials,
                        new_key=new_key, grant=grant, tag=tag)
    STATE.console.show(result, dry_run)
