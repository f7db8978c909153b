"""The `[service]` flags that deploy, rollback and deregister share."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from gcpfargate.config import Overrides

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
