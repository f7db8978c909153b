"""ECS service commands: `rollback` and `deregister`, and the `[service]` flags deploy shares."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from gcpfargate.cli.app import STATE, DryRun, app

if TYPE_CHECKING:
    from rich.console import Console

    from gcpfargate.config import Overrides
    from gcpfargate.core.plan import Change
    from gcpfargate.ecs.service import ServiceResult
    from gcpfargate.taskdef.revisions import DeregisterResult


# The `[service]` flags that deploy, rollback and deregister share.
ServiceName = Annotated[
    str | None,
    typer.Option(
        "--service", metavar="NAME", show_default=False, help="ECS service to roll (service.name)."
    ),
]
# deregister rolls nothing: the service only names a revision that must stay.
KeptService = Annotated[
    str | None,
    typer.Option(
        "--service",
        metavar="NAME",
        show_default=False,
        help="ECS service whose revision is never deregistered (service.name).",
    ),
]
Cluster = Annotated[
    str | None,
    typer.Option(
        "--cluster",
        metavar="CLUSTER",
        show_default=False,
        help='The service\'s cluster (service.cluster; default "default").',
    ),
]
NoWait = Annotated[
    bool,
    typer.Option(
        "--no-wait",
        help="Return after UpdateService; do not wait for the rollout (service.wait = false).",
    ),
]
WaitTimeout = Annotated[
    int | None,
    typer.Option(
        "--wait-timeout",
        metavar="SECONDS",
        min=1,
        show_default=False,
        help="How long to wait for a stable rollout (service.wait_timeout).",
    ),
]


def service_flags(
    service: str | None, cluster: str | None, no_wait: bool, wait_timeout: int | None
) -> Overrides:
    """The `[service]` flags as settings overrides (None: not given, so env/file/default apply)."""
    return {
        "service.name": service,
        "service.cluster": cluster,
        "service.wait": False if no_wait else None,
        "service.wait_timeout": wait_timeout,
    }


def render_service(console: Console, result: ServiceResult) -> None:
    from gcpfargate.ecs.service import short

    now, before = short(result.task_definition_arn), short(result.previous_task_definition_arn)
    said = {
        "COMPLETED": f"runs {now} (rollout complete)",
        "IN_PROGRESS": f"is rolling out {now} (not waited for)",
        "UNCHANGED": f"already runs {now}",
        "PLANNED": f"would move {before} → {now}",
    }
    console.print(
        f"Service {result.service} on {result.cluster} {said.get(result.status, result.status)}.",
        markup=False,
    )
    for arn in result.deregistered:
        console.print(f"Deregistered {short(arn)}.", markup=False)


def _show_plan(plan: list[Change]) -> None:
    out = STATE.console
    if not out.json:
        out.info("Plan (dry run, nothing changed):" if plan else "Nothing to do.")
        for line in plan:
            out.info(f"  - {line}")


@app.command()
def rollback(
    revision: Annotated[
        int | None,
        typer.Option(
            "--revision",
            metavar="N",
            min=1,
            show_default=False,
            help="Roll back to this revision (default: the previous ACTIVE one).",
        ),
    ] = None,
    deregister: Annotated[
        bool, typer.Option("--deregister", help="Also deregister the revision left.")
    ] = False,
    service: ServiceName = None,
    cluster: Cluster = None,
    no_wait: NoWait = False,
    wait_timeout: WaitTimeout = None,
    dry_run: DryRun = False,
) -> None:
    """Move the service back to the previous ACTIVE revision (or --revision N) and wait until it is
    stable."""
    from gcpfargate.taskdef.revisions import rollback as run_rollback

    ctx = STATE.context(
        dry_run=dry_run, overrides=service_flags(service, cluster, no_wait, wait_timeout)
    )
    result = run_rollback(ctx, revision=revision, deregister=deregister)
    if dry_run:
        _show_plan(result.plan)
    STATE.console.result(result.to_json(), lambda console: render_service(console, result))


@app.command("deregister")
def deregister_command(
    keep_last: Annotated[
        int,
        typer.Option(
            "--keep-last",
            metavar="N",
            min=1,
            help="Keep the newest N ACTIVE "
            "revisions (besides the ones a service or schedule uses).",
        ),
    ],
    images: Annotated[
        bool,
        typer.Option(
            "--images",
            help="Also delete the registry images only the deregistered revisions referenced.",
        ),
    ] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    service: KeptService = None,
    cluster: Cluster = None,
    dry_run: DryRun = False,
) -> None:
    """Deregister the family's older ACTIVE revisions; never the latest, the service's or a
    schedule's."""
    from gcpfargate.errors import UsageError
    from gcpfargate.taskdef.revisions import deregister

    out = STATE.console
    can_ask = not out.json and out.rich
    if not (yes or dry_run or can_ask):
        # Checked before any AWS call: without a terminal to ask on, nothing is deleted unasked.
        raise UsageError(
            "deregister deletes revisions and needs confirmation",
            "Pass --yes (or run it on a terminal to confirm; --dry-run lists what it would do)",
        )

    def confirm(plan: DeregisterResult) -> bool:
        if yes:
            return True
        _list(plan, out.info)
        return typer.confirm(
            f"Deregister {len(plan.deregister)} revision(s)"
            + (f" and delete {len(plan.images)} image(s)" if plan.images else "")
            + "?",
            err=True,
        )

    ctx = STATE.context(dry_run=dry_run, overrides=service_flags(service, cluster, False, None))
    result = deregister(ctx, keep_last, images=images, confirm=confirm)
    out.result(
        result.to_json(),
        lambda console: _list(result, lambda line: console.print(line, markup=False)),
    )


def _list(result: DeregisterResult, say: Any) -> None:
    from gcpfargate.ecs.service import short

    verb = "Deregistered" if result.done else "Would deregister"
    for arn in result.kept:
        say(f"keep        {short(arn)}  ({result.reasons[arn]})")
    for arn in result.deregister:
        say(f"deregister  {short(arn)}")
    for image, pinned_by in (result.image_pins or {}).items():
        say(f"keep image  {image}  (pinned by {'; '.join(pinned_by)})")
    for image in result.images:
        say(f"delete      {image}")
    images = f" and {len(result.images)} image(s)" if result.images else ""
    say(
        f"{verb} {len(result.deregister)} revision(s){images} of {result.family}."
        if result.deregister
        else f"Nothing to deregister in {result.family}."
    )
