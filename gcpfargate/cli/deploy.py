"""`gcpfargate deploy`: the whole job in one idempotent command."""

from __future__ import annotations

from typing import Annotated

import typer

from gcpfargate.cli.app import STATE, DryRun, app
from gcpfargate.cli.bootstrap import RetireKeys, check_retire_keys, retire_confirmation
from gcpfargate.cli.service import Cluster, NoWait, ServiceName, WaitTimeout, service_flags


@app.command()
def deploy(
    tag: Annotated[str | None, typer.Option("--tag", help="Image tag (image.tag).")] = None,
    new_key: Annotated[
        bool,
        typer.Option("--new-key", help="Create a fresh key even when the current one is live."),
    ] = False,
    grant: Annotated[
        bool, typer.Option("--grant", help="Let a given execution role read the secret.")
    ] = False,
    allow_embedded_credentials: Annotated[
        bool,
        typer.Option(
            "--allow-embedded-credentials", help="Push even if the image holds a key file."
        ),
    ] = False,
    service: ServiceName = None,
    cluster: Cluster = None,
    no_wait: NoWait = False,
    wait_timeout: WaitTimeout = None,
    retire_keys: RetireKeys = False,
    dry_run: DryRun = False,
) -> None:
    """bootstrap → push-image → register-task (→ roll the [service]); a rerun with nothing changed
    changes nothing."""
    from gcpfargate.credentials.mode import mode_for
    from gcpfargate.deploy.sequence import deploy as run_deploy

    ctx = STATE.context(
        dry_run=dry_run, overrides=service_flags(service, cluster, no_wait, wait_timeout)
    )
    check_retire_keys(retire_keys, mode_for(ctx.settings).holds_keys)
    result = run_deploy(
        ctx,
        allow_embedded_credentials=allow_embedded_credentials,
        new_key=new_key,
        grant=grant,
        tag=tag,
        retire=retire_confirmation(retire_keys),
    )
    STATE.console.show(result, not ctx.plan.apply)
