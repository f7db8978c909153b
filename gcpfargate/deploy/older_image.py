"""deploy's warning when it moves a service to an image older than the one the service runs.

Two pipelines deploying different commits at once can finish in the wrong order: the later deploy
then rolls the service back to the earlier commit's image. Nothing stops that (a CI concurrency
group does, docs/ci.md), but deploy says so in one line and carries on: moving to an older image
is also what a deliberate redeploy of an old commit does.

"Older" is ECR's `imagePushedAt` of the two images (DescribeImages, one call for both), compared
only when both are in gcpfargate's repository; a read that fails only leaves the warning out.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from gcpfargate.core.context import Context
from gcpfargate.errors import AwsError
from gcpfargate.image.images import split_image


def _image_id(ctx: Context, image: str) -> dict[str, str] | None:
    """DescribeImages' id of `image` (by digest, else tag) when it is in gcpfargate's repository."""
    host, repository, tag, digest = split_image(image)
    if host != ctx.registry.host or repository != ctx.settings.repository:
        return None
    if digest:
        return {"imageDigest": digest}
    return {"imageTag": tag or "latest"}


def _app_image(ctx: Context, definition: dict[str, Any] | None) -> dict[str, str] | None:
    for container in (definition or {}).get("containerDefinitions") or []:
        found = _image_id(ctx, str(container.get("image") or ""))
        if found is not None:
            return found
    return None


def warn_if_older(
    ctx: Context,
    service_name: str,
    current_definition: dict[str, Any] | None,
    new_digest: str | None,
) -> None:
    """Warn when `new_digest` (the image deploy registered) was pushed before the image of
    `current_definition` (the revision the service runs)."""
    running = _app_image(ctx, current_definition)
    if running is None or not new_digest or running.get("imageDigest") == new_digest:
        return
    try:
        answer = ctx.aws.call(
            "ecr",
            "describe_images",
            "compare the pushed times of the service's image and the new one",
            repositoryName=ctx.settings.repository,
            imageIds=[running, {"imageDigest": new_digest}],
            **ctx.registry.ecr_params,
        )
    except AwsError as exc:  # only a warning depends on it
        ctx.reporter.detail(f"image ages not compared: {exc.message}")
        return
    details = answer.get("imageDetails") or []
    new = next((d for d in details if d.get("imageDigest") == new_digest), None)
    old = next((d for d in details if d is not new), None)
    if new is None or old is None or old.get("imageDigest") == new_digest:
        return
    new_at, old_at = new.get("imagePushedAt"), old.get("imagePushedAt")
    if new_at is None or old_at is None or not new_at < old_at:
        return
    old_name = f"@{old.get('imageDigest')}"  # by its tag when the revision names it by tag
    if running.get("imageTag"):
        old_name = f":{running['imageTag']}"
    ctx.reporter.warn(
        f"service {service_name} moves to an older image: {ctx.settings.repository}@{new_digest} "
        f"was pushed {_utc(new_at)}, before the one it runs "
        f"({ctx.settings.repository}{old_name}, {_utc(old_at)}); if another "
        "pipeline deployed a newer commit meanwhile, deploy that commit again"
    )


def _utc(moment: datetime) -> str:
    # botocore gives timestamps in the local zone; the line says UTC, as ECR's console does not.
    return f"{moment.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC"
