"""Key mode as a credential mode: a key in Secrets Manager, written to a file at task start."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from gcpfargate.core.checks import DoctorEntry
from gcpfargate.core.context import Context
from gcpfargate.core.forked import Forked
from gcpfargate.credentials import wiring
from gcpfargate.credentials.wiring import ImageConfig, ImageUser


class KeyMode:
    name = "key"
    holds_keys = True

    def template_needs(self) -> frozenset[str]:
        return frozenset({"secret_arn"})

    def bootstrap(
        self, ctx: Context, *, new_key: bool, grant: bool, retire: Callable[[Any], bool] | None
    ) -> Any:
        from gcpfargate.credentials.key.bootstrap import bootstrap

        return bootstrap(ctx, new_key=new_key, grant=grant)

    def after_rollout(
        self, ctx: Context, booted: Any, retire: Callable[[Any], bool] | None
    ) -> None:
        return None

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
        from gcpfargate.ecs import fargate_rules

        containers = ctx.settings.task.containers or None
        wired = wiring.wire(
            definition,
            secret_arn=variables["secret_arn"],
            credentials_env=variables["credentials_env"],
            credentials_path=variables["credentials_path"],
            containers=containers,
            image_config=image_config,
            image=variables.get("image"),
            image_user=image_user or wiring.no_user,
        )
        fargate_rules.check_read_only_root(
            wired,
            variables["credentials_path"],
            wiring.target_names(wired, containers, variables.get("image")),
            shown,
        )
        return wired

    def extra_images(self, ctx: Context, pushed: Any) -> None:
        return None

    def reads_ahead(self, ctx: Context, after: Forked | None) -> Any:
        from gcpfargate.credentials.key import ahead

        return ahead.start(ctx, after)

    def execution_role_policy(self, ctx: Context) -> str | None:
        from gcpfargate.iam.policy import secret_policy_name

        return secret_policy_name(ctx.aws.region, ctx.settings.secret_name)

    def doctor_checks(self, get_secret: bool) -> tuple[list[DoctorEntry], list[DoctorEntry]]:
        from gcpfargate.credentials.key import doctor

        return doctor.checks(get_secret)

    def require_keys(self, what: str) -> None:
        return None


class SecretsDelivery:
    """run-local in key mode: the secrets were resolved into the container's spec."""

    def run(self, ctx: Context, definition: dict[str, Any], spec: Any, network: str) -> int:
        from gcpfargate.keymaterial.redaction import MaterialRedactor

        ctx.reporter.info(f"Starting container {spec.name} (network {network})")
        # The key's own material is removed from every log line, however the app folds or splits it.
        redactor = MaterialRedactor(spec.secrets.values())
        return int(
            ctx.docker.run_container(spec, on_line=lambda line: ctx.reporter.log(redactor(line)))
        )
