"""`gcpfargate bootstrap`: steps 1–2 (service-account key → Secrets Manager, execution role)."""

from __future__ import annotations

from typing import Annotated

import typer

from gcpfargate.cli.app import STATE, DryRun, app


@app.command()
def bootstrap(
    new_key: Annotated[bool, typer.Option("--new-key", help="Create a fresh key even when the secret's key is "
                                          "live.")] = False,
    grant: Annotated[bool, typer.Option("--grant", help="Add read access to the secret to a given execution "
                                        "role.")] = False,
    secret_name: Annotated[str | None, typer.Option("--secret-name", help="Secret name (secret.name).")] = None,
    dry_run: DryRun = False,
) -> None:
    """Create a service-account key, store it in Secrets Manager, and let the execution role read it."""
    from gcpfargate.core.bootstrap import bootstrap as run_bootstrap
    from gcpfargate.core.keyless import bootstrap_keyless, is_keyless

    ctx = STATE.context(dry_run=dry_run, overrides={"secret.name": secret_name})
    result = bootstrap_keyless(ctx) if is_keyless(ctx) else run_bootstrap(ctx, new_key=new_key, grant=grant)
    STATE.console.show(result, dry_run)
