"""Keyless mode as a credential mode: the task role, federated through workload identity."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from gcpfargate.core.checks import DoctorEntry
from gcpfargate.core.context import Context
from gcpfargate.core.forked import Forked
from gcpfargate.credentials.wiring import ImageConfig, ImageUser
from gcpfargate.errors import ConfigError


class KeylessMode:
    name = "keyless"
    holds_keys = False

    def template_needs(self) -> frozenset[str]:
        return frozenset()

    def bootstrap(
        self, ctx: Context, *, new_key: bool, grant: bool, retire: Callable[[Any], bool] | None
    ) -> Any:
        from gcpfargate.credentials.keyless.bootstrap import bootstrap_keyless

        return bootstrap_keyless(ctx, retire=retire)

    def after_rollout(
        self, ctx: Context, booted: Any, retire: Callable[[Any], bool] | None
    ) -> None:
        """Key mode's leftovers are offered for retirement only once the keyless revision runs."""
        if retire is None or not booted.account_exists:
            return
        from gcpfargate.credentials.keyless import retire as keyless_retire

        mark = ctx.plan.mark()
        booted.retired_keys = keyless_retire.offer(ctx, booted.service_account, retire)
        booted.plan += ctx.plan.shown(mark)
        booted.changed = booted.changed or bool(booted.retired_keys)

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
        from gcpfargate.credentials import wiring
        from gcpfargate.credentials.keyless.bootstrap import wire_definition
        from gcpfargate.ecs import fargate_rules

        wired = wire_definition(ctx, definition, image_config, variables.get("image"), image_user)
        # The wrapper writes the credential configuration to a file, as it writes key mode's key:
        # wiring gave each wired container a tmpfs there unless the template covers it otherwise.
        targets = wiring.target_names(
            wired, ctx.settings.task.containers or None, variables.get("image")
        )
        fargate_rules.check_read_only_root(
            wired,
            ctx.settings.task.credentials_path,
            targets,
            shown,
            what="the credential configuration",
        )
        return wired

    def extra_images(self, ctx: Context, pushed: Any) -> None:
        from gcpfargate.image.shim_push import push_shim

        shim = push_shim(ctx)
        pushed.shim_image, pushed.changed = shim.image, pushed.changed or shim.changed

    def reads_ahead(self, ctx: Context, after: Forked | None) -> Any:
        return None  # its reads depend on one another (the pool, then its provider)

    def execution_role_policy(self, ctx: Context) -> str | None:
        return None  # the execution role only pulls the image and writes logs

    def doctor_checks(self, get_secret: bool) -> tuple[list[DoctorEntry], list[DoctorEntry]]:
        from gcpfargate.credentials.keyless import doctor

        return doctor.checks(), []

    def require_keys(self, what: str) -> None:
        raise ConfigError(
            f'{what} does not apply in keyless mode (gcp.auth = "keyless"): tasks hold no key, '
            "only short-lived tokens",
            "To retire keys left from key mode, see README "
            '"Keyless" (migration); gcloud iam service-accounts keys list lists them',
        )


class ShimDelivery:
    """run-local in keyless mode: the task role endpoint and the credential shim come first."""

    def __init__(self, shim: dict[str, Any]) -> None:
        self.shim = shim

    def run(self, ctx: Context, definition: dict[str, Any], spec: Any, network: str) -> int:
        from gcpfargate.credentials.keyless.run_local import run_with_shim

        return run_with_shim(ctx, definition, self.shim, spec, network)
