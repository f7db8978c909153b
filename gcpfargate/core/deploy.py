"""`deploy`: bootstrap → push-image → register-task, each idempotent, stopping at the first failure.

Each step is the same function its own command runs, so `deploy` can never drift from them. A
failure is reported with the step's name; what earlier steps made stays consistent on its own
(a stored key with its role, a pushed image), so a rerun resumes where it stopped.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gcpfargate.core.context import Context
from gcpfargate.errors import GcpfargateError, StepError

STEPS = ("bootstrap", "push-image", "register-task")


@dataclass
class DeployResult:
    steps: dict[str, Any]  # step name -> that step's result object

    @property
    def changed(self) -> bool:
        return any(getattr(result, "changed", False) for result in self.steps.values())

    def to_json(self) -> dict[str, Any]:
        return {name: result.to_json() for name, result in self.steps.items()}


def deploy(ctx: Context, allow_embedded_credentials: bool = False, new_key: bool = False, grant: bool = False,
           tag: str | None = None) -> DeployResult:
    from gcpfargate.core.bootstrap import bootstrap
    from gcpfargate.core.push import push_image
    from gcpfargate.core.taskdef import register_task

    ctx.settings.require("gcp.project", "gcp.service_account", "task.family")
    results: dict[str, Any] = {}
    with _step("bootstrap"):
        results["bootstrap"] = bootstrap(ctx, new_key=new_key, grant=grant)
    with _step("push-image"):
        pushed = push_image(ctx, allow_embedded_credentials=allow_embedded_credentials, tag=tag)
        results["push-image"] = pushed
    with _step("register-task"):
        image = pushed.image if ctx.dry_run or not pushed.digest else _pinned(pushed.image, pushed.digest)
        results["register-task"] = register_task(ctx, image=image)
    return DeployResult(results)


def _pinned(image: str, digest: str) -> str:
    """`host/repo:tag` → `host/repo@sha256:…`: register exactly what was pushed, with no second lookup."""
    if "@" in image:
        return image
    name, _, _ = image.rpartition(":") if image.rfind(":") > image.rfind("/") else (image, "", "")
    return f"{name}@{digest}"


class _step:
    """Name the failing step in front of the error, keeping its exit code."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: object) -> bool:
        if isinstance(exc, GcpfargateError) and not isinstance(exc, StepError):
            raise StepError(self.name, exc) from None
        return False
