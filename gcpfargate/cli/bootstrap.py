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
    """Create a service-account key, store it in Secrets Manager, and let the execution role read it."""
    from gcpfargate.credentials.key.bootstrap import bootstrap as run_bootstrap
    from gcpfargate.credentials.keyless.bootstrap import bootstrap_keyless, is_keyless

    ctx = STATE.context(dry_run=dry_run, overrides={"secret.name": secret_name})
    keyless = is_keyless(ctx)
    check_retire_keys(retire_keys, keyless)
    result = (
        bootstrap_keyless(ctx, retire=retire_confirmation(retire_keys))
        if keyless
        else run_bootstrap(ctx, new_key=new_key, grant=grant)
    )
    STATE.console.show(result, dry_run)


def check_retire_keys(retire_keys: bool, keyless: bool) -> None:
    from gcpfargate.errors import UsageError

    if retire_keys and not keyless:
        raise UsageError(
            "--retire-keys applies in keyless mode only: key mode needs its keys",
            'Set gcp.auth = "keyless" first (README "Keyless", migrating from key mode)',
        )


def retire_confirmation(retire_keys: bool) -> Callable[[Leftovers], bool]:
    """Never silent: --retire-keys agrees up front; a terminal asks; anything else declines (core then
    prints one line saying what is left and how to retire it)."""
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
