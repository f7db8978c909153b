"""`gcpfargate deploy`: the whole job in one idempotent command."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from gcpfargate.cli.app import STATE, DryRun, app

if TYPE_CHECKING:
    from rich.console import Console


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

    def summary(console: Console) -> None:
        from rich.table import Table

        table = Table(title="gcpfargate deploy" + (" (dry run)" if dry_run else ""), title_justify="left")
        for column in ("step", "changed", "result"):
            table.add_column(column, overflow="fold")
        boot, push, task = (result.steps[name] for name in ("bootstrap", "push-image", "register-task"))
        key, secret = boot.key_id or "(new)", boot.secret_arn or "(new secret)"  # None: a dry run would create it
        table.add_row("bootstrap", _yes(boot.changed), f"key {key} in {secret}")
        table.add_row("push-image", _yes(push.changed), f"{push.image} {push.digest}".strip())
        task_json = task.to_json()
        table.add_row("register-task", _yes(task_json.get("changed")),
                      str(task_json.get("task_definition_arn", "")))
        console.print(table)

    STATE.console.result(result.to_json(), summary)


def _yes(changed: object) -> str:
    return "yes" if changed else "no"
