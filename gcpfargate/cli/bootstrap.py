"""`gcpfargate bootstrap`: steps 1–2 (service-account key → Secrets Manager, execution role)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated

import typer

from gcpfargate.cli.app import STATE, DryRun, app

if TYPE_CHECKING:
    from gcpfargate.credentials.keyless.retire import Leftovers

RetireKeys = Annotated[
    bool,
    typer.Option(
        "--retire-keys",
        help="Keyless mode: delete the keys key mode left in the "
        "secret and schedule the secret's deletion, without asking.",
    ),
]


@app.command()
def bootstrap(
    new_key: Annotated[
        bool,
        typer.Option("--new-key", help="Create a fresh key even when the secret's key is live."),
    ] = False,
    grant: Annotated[
        bool,
        typer.Option("--grant", help="Add read access to the secret to a given execution role."),
    ] = False,
    secret_name: Annotated[
        str | None, typer.Option("--secret-name", help="Secret name (secret.name).")
    ] = None,
    retire_keys: RetireKeys = False,
    dry_run: DryRun = False,
) -> None:
    """Create a service-account key, store it in Secrets Manager, and let the execution role read
    it."""
    from gcpfargate.credentials.mode import mode_for
    from gcpfargate.deploy.sequence import bootstrap_checks

    ctx = STATE.context(dry_run=dry_run, overrides={"secret.name": secret_name})
    mode = mode_for(ctx.settings)
    check_retire_keys(retire_keys, mode.holds_keys)
    bootstrap_checks(ctx)
    result = mode.bootstrap(
        ctx, new_key=new_key, grant=grant, retire=retire_confirmation(retire_keys)
    )
    STATE.console.show(result, dry_run)


def check_retire_keys(retire_keys: bool, holds_keys: bool) -> None:
    from gcpfargate.errors import UsageError

    if retire_keys and holds_keys:
        raise UsageError(
            "--retire-keys applies in keyless mode only: key mode needs its keys",
            'Set gcp.auth = "keyless" first (README "Keyless", migrating from key mode)',
        )


def retire_confirmation(retire_keys: bool) -> Callable[[Leftovers], bool]:
    """Never silent: --retire-keys agrees up front; a terminal asks; anything else declines (core
    then prints one line saying what is left and how to retire it)."""
    import sys

    def confirm(found: Leftovers) -> bool:
        if retire_keys:
            return True
        if STATE.console.json or not STATE.console.rich or not sys.stdin.isatty():
            return False
        return typer.confirm(
            f"Keyless mode needs no key, but key mode left {found.describe()}. Delete the keys and "
            "schedule the secret's deletion? Tasks still running a key-mode revision lose access",
            default=False,
            err=True,
        )

    return confirm
