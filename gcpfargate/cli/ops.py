"""Day-2 commands: `rotate-key` and `doctor`."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated

import typer

from gcpfargate.cli.app import STATE, DryRun, app

if TYPE_CHECKING:
    from gcpfargate.credentials.key.lifecycle import PruneEntry


ROTATION_RULE = (
    "A task started before rotation N keeps working until rotation N+1: the previous key stays "
    "enabled; the key two rotations old is disabled, and the one the last rotation disabled is "
    "deleted, so each secret's account holds at most three keys."
)


@app.command(
    "rotate-key",
    help="Rotate the key: new key → new secret version (AWSCURRENT) → verify → roll the "
    "services that read the secret → retire old keys.\n\n"
    + ROTATION_RULE
    + "\n\nFor a leaked key, "
    "--revoke-previous disables the previous key at once (after the services rolled), naming the "
    "running tasks that lose access.",
)
def rotate_key(
    no_verify: Annotated[
        bool, typer.Option("--no-verify", help="Skip exchanging the new key for a token.")
    ] = False,
    revoke_previous: Annotated[
        bool,
        typer.Option(
            "--revoke-previous",
            help="Incident path: disable the previous key now instead of at the next rotation.",
        ),
    ] = False,
    delete_previous: Annotated[
        bool,
        typer.Option(
            "--delete-previous", help="Incident path: delete the previous key now (irreversible)."
        ),
    ] = False,
    keep_previous: Annotated[
        bool,
        typer.Option(
            "--keep-previous", hidden=True, help="The default now; accepted for old scripts."
        ),
    ] = False,
    prune: Annotated[
        bool,
        typer.Option(
            "--prune",
            help="First run prune-keys (unreferenced keys at least 24 h "
            "old), before checking for room.",
        ),
    ] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask before pruning.")] = False,
    dry_run: DryRun = False,
) -> None:
    from gcpfargate.credentials.key.rotate import rotate_key as run_rotate
    from gcpfargate.credentials.mode import mode_for
    from gcpfargate.errors import UsageError

    if sum((revoke_previous, delete_previous, keep_previous)) > 1:
        raise UsageError(
            "--revoke-previous, --delete-previous and --keep-previous exclude each other"
        )
    previous = "delete" if delete_previous else "revoke" if revoke_previous else "keep"
    ctx = STATE.context(dry_run=dry_run)
    # In keyless mode there is nothing to rotate or prune: say that first (core refuses it), not "no
    # terminal".
    holds_keys = mode_for(ctx.settings).holds_keys
    if prune and not dry_run and not yes and not _can_ask() and holds_keys:
        raise UsageError(
            "--prune deletes keys and needs a confirmation: there is no terminal to ask on",
            "Pass --yes, or run `gcpfargate prune-keys --dry-run` to see what it would delete",
        )
    result = run_rotate(
        ctx, verify=not no_verify, previous=previous, prune=prune, confirm=_confirm(yes)
    )
    STATE.console.show(result, dry_run)


def _can_ask() -> bool:
    return STATE.output != "json" and STATE.console.rich


def _confirm(yes: bool) -> Callable[[list[PruneEntry]], bool]:
    def confirm(entries: list[PruneEntry]) -> bool:
        if yes:
            return True
        if not _can_ask():
            return False
        return typer.confirm(
            f"Delete {len(entries)} key(s) no secret version uses: "
            f"""{
                ", ".join(
                    entry.key_id + (" (foreign)" if entry.foreign else "") for entry in entries
                )
            }?""",
            err=True,
        )

    return confirm


@app.command("prune-keys")
def prune_keys(
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Delete without asking.")] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Only list the keys; delete nothing.")
    ] = False,
    key: Annotated[
        list[str] | None,
        typer.Option(
            "--key",
            metavar="KEY_ID",
            help="Delete exactly this key (repeatable), even a foreign one; refused while a "
            "secret version holds it.",
        ),
    ] = None,
) -> None:
    """Delete the keys gcpfargate created for this secret that no labelled version holds any more.

    Lists each (id, age, state, why) first, foreign keys too: keys this secret never recorded
    (another region's or account's secret, a person's key), which are never deleted unless named
    with --key. Never deletes one of its own keys younger than 24 h and never creates one, so it
    works at 10 of 10 keys. Deleting needs a confirmation on a terminal or --yes; without either it
    exits 2 and deletes nothing.
    """
    from gcpfargate.credentials.key import keys
    from gcpfargate.credentials.key.lifecycle import plan_prune, prune

    ctx = STATE.context(dry_run=dry_run)
    ctx.settings.require("gcp.project", "gcp.service_account")
    account = keys.resolve_account(ctx)
    name = ctx.settings.secret_name
    named = key or []
    # Two passes: the list first (read-only), then, confirmed, the deletions.
    listed, _ = plan_prune(ctx, account.email, name, named)
    out = STATE.console
    for entry in listed.keys:
        age = "?" if entry.age_hours is None else f"{entry.age_hours:.0f} h"
        out.info(f"{entry.key_id}  {age:>7}  {entry.state:<8}  {entry.why}  → {entry.action}")
    if not listed.keys:
        out.info(f"no unreferenced keys of {account.email}")
    result = (
        listed if dry_run else prune(ctx, account.email, name, confirm=_confirm(yes), named=named)
    )
    out.show(result)


@app.command()
def doctor(
    no_get_secret: Annotated[
        bool, typer.Option("--no-get-secret", help="Do not read the secret's value.")
    ] = False,
) -> None:
    """Check every link from the GCP key to a Fargate task start; exit 3 when a check fails."""
    from gcpfargate.doctor.run import doctor as run_doctor
    from gcpfargate.errors import ExitCode

    report = run_doctor(STATE.context, get_secret=not no_get_secret)
    STATE.console.show(report)
    if report.failed:
        raise typer.Exit(int(ExitCode.CHECK_FAILED))
