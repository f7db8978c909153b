"""The credential-mode interface: everything that differs between key mode and keyless mode.

Key mode delivers a service-account key from Secrets Manager; keyless mode delivers an
`external_account` configuration and federates the task role. Each implements this interface once
(`key/mode.py`, `keyless/mode.py`). Commands ask `mode_for(settings)`, or `delivery_of(definition)`
for a registered revision, and call it: nothing outside this package compares `gcp.auth` to a mode
name.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from gcpfargate.config import Settings
    from gcpfargate.core.context import Context
    from gcpfargate.core.forked import Forked
    from gcpfargate.core.plan import Change
    from gcpfargate.credentials.wiring import ImageConfig, ImageUser

from gcpfargate.core.checks import DoctorEntry as DoctorEntry

# Asked whether to retire what key mode left behind (keyless mode), given what was found.
Retire = Callable[[Any], bool]


class Booted(Protocol):
    """What bootstrap hands on to the later steps, whichever the mode."""

    execution_role_arn: str
    changed: bool
    plan: list[Change]  # its changes, shown in a preview

    def identity(self) -> str: ...

    def to_json(self) -> dict[str, Any]: ...


class CredentialMode(Protocol):
    name: str  # the `gcp.auth` value
    holds_keys: bool  # tasks hold a key: rotate-key, prune-keys and --new-key apply

    def template_needs(self) -> frozenset[str]:
        """Template variables the wiring needs looked up whether the template uses them or not."""
        ...

    def bootstrap(
        self, ctx: Context, *, new_key: bool, grant: bool, retire: Retire | None
    ) -> Booted:
        """Everything a task needs before its definition is registered; idempotent."""
        ...

    def after_rollout(self, ctx: Context, booted: Any, retire: Retire | None) -> None:
        """What may happen only once the new revision is registered and the service runs it."""
        ...

    def wire(
        self,
        ctx: Context,
        definition: dict[str, Any],
        *,
        variables: dict[str, Any],
        image_config: ImageConfig,
        shown: str,
        image_user: ImageUser | None = None,
    ) -> dict[str, Any]:
        """The rendered definition with the credentials delivered to its target containers."""
        ...

    def extra_images(self, ctx: Context, pushed: Any) -> None:
        """Images the mode's task needs beside the job's own (pushed, recorded on `pushed`)."""
        ...

    def reads_ahead(self, ctx: Context, after: Forked | None) -> Any:
        """bootstrap's GCP reads started in a forked child (once the child `after` ended) that
        waits for `go()` (deploy sends it once its local checks pass), with `close()`; None when
        the mode has none to send."""
        ...

    def execution_role_policy(self, ctx: Context) -> str | None:
        """The inline policy gcpfargate keeps on the execution role, if any (read ahead)."""
        ...

    def doctor_checks(self, get_secret: bool) -> tuple[list[DoctorEntry], list[DoctorEntry]]:
        """This mode's links: those checked before the image and logs, and those after."""
        ...

    def require_keys(self, what: str) -> None:
        """Refuse `what` (a key operation) where tasks hold no key."""
        ...


class LocalDelivery(Protocol):
    def run(self, ctx: Context, definition: dict[str, Any], spec: Any, network: str) -> int:
        """Start `spec` (a run-local ContainerSpec) with its credentials; the exit code."""
        ...


def mode_for(settings: Settings) -> CredentialMode:
    if settings.gcp.auth == "keyless":
        from gcpfargate.credentials.keyless.mode import KeylessMode

        return KeylessMode()
    from gcpfargate.credentials.key.mode import KeyMode

    return KeyMode()


def delivery_of(definition: dict[str, Any], container_name: str) -> LocalDelivery:
    """How a registered definition delivers credentials: the definition decides, not the config
    (run-local rehearses what was registered, even after gcp.auth changed)."""
    from gcpfargate.credentials.keyless.run_local import shim_container

    shim = shim_container(definition)
    if shim is not None and container_name != shim.get("name"):
        from gcpfargate.credentials.keyless.mode import ShimDelivery

        return ShimDelivery(shim)
    from gcpfargate.credentials.key.mode import SecretsDelivery

    return SecretsDelivery()
