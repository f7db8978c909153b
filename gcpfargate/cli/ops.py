"""Day-2 commands: `rotate-key` and `doctor`."""

from __future__ import annotations

from typing import Annotated

import typer

from gcpfargate.cli.app import STATE, DryRun, app


@app.command("rotate-key")
def rotate_key(
    no_verify: Annotated[bool, typer.Option("--no-verify", help="Skip exchanging the new key for a token.")] = False,
    delete_previous: Annotated[bool, typer.Option("--delete-previous", help="Delete the previous key instead of "
                                                  "disabling it.")] = False,
    keep_previous: Annotated[bool, typer.Option("--keep-previous", help="Leave the previous key enabled.")] = False,
    prune: Annotated[bool, typer.Option("--prune", help="Delete user-managed keys no secret version references.")]
    = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask before pruning.")] = False,
    dry_run: DryRun = False,
) -> None:
    """Rotate the key: new key → new secret version → verify → disable (or delete) the previous key."""
    from gcpfargate.core.rotate import rotate_key as run_rotate
    from gcpfargate.errors import UsageError

    if delete_previous and keep_previous:
        raise UsageError("--delete-previous and --keep-previous exclude each other")
    previous = "delete" if delete_previous else "keep" if keep_previous else "disable"

    def confirm(key_ids: list[str]) -> bool:
        if yes:
            return True
        if STATE.output == "json" or not STATE.console.rich:
            return False
        return typer.confirm(f"Delete {len(key_ids)} key(s) no secret version uses: {', '.join(key_ids)}?",
                             err=True)

    result = run_rotate(STATE.context(dry_run=dry_run), verify=not no_verify, previous=previous, prune=prune,
                        confirm=confirm)
    STATE.console.show(result, dry_run)


@app.command()
def doctor(
    no_get_secret: Annotated[bool, typer.Option("--no-get-secret", help="Do not read the secret's value.")] = False,
) -> None:
    """Check every link from the GCP key to a Fargate task start; exit 3 when a check fails."""
    from gcpfargate.core.doctor import run_doctor
    from gcpfargate.errors import ExitCode

    report = run_doctor(STATE.context(), get_secret=not no_get_secret)
    STATE.console.show(report)
    if report.failed:
        raise typer.Exit(int(ExitCode.CHECK_FAILED))
