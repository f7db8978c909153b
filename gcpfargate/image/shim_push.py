"""Keyless mode's credential-shim image: built from `shim_image.build_context`, pushed,
digest-pinned.

The tag is a hash of the build context (the shim's files and the Dockerfile, whose FROM names
`image.shim_base_image` and its digest), so an unchanged shim is recognised in the registry and
neither rebuilt into a new tag nor pushed again; register-task resolves the same tag to its digest.
Before an image found under that tag is reused, its config must carry the content label the build
would give it: anyone who can push to the repository can put another image under a tag, and
this one becomes the credential sidecar of every keyless task. A newly built shim goes through the
key guard like the application's image.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from gcpfargate.core import plan as planning
from gcpfargate.core.context import Context
from gcpfargate.errors import ImageNotFound, OperationError
from gcpfargate.image import shim_image
from gcpfargate.image.repository import ensure_repository, held_digest, push_tag

if TYPE_CHECKING:
    from gcpfargate.clients.registry import ImageRef

REPOSITORY = "gcpfargate-credential-shim"


@dataclass(frozen=True)
class ShimPush:
    image: str  # host/repository@sha256:… ("": known after apply, in a preview)
    changed: bool


def _context(ctx: Context) -> dict[str, bytes]:
    return shim_image.build_context(
        ctx.settings.image.shim_base_image or shim_image.DEFAULT_BASE_IMAGE
    )


def shim_tag(files: dict[str, bytes]) -> str:
    return "shim-" + shim_image.content_digest(files)[:20]


def verified(ctx: Context, held: ImageRef, files: dict[str, bytes], tag: str) -> ImageRef:
    """`held` if it is the shim this gcpfargate builds from `files`; else refused, in one line."""
    expected = shim_image.content_digest(files)
    found = str((held.run_config.get("Labels") or {}).get(shim_image.CONTENT_LABEL) or "")
    if found == expected:
        return held
    label = f"label {found[:12]}…" if found else "no content label"
    raise OperationError(
        f"{ctx.registry.image_name(REPOSITORY)}:{tag} ({held.digest[:19]}…) is not the credential "
        f"shim gcpfargate builds ({label}, expected {expected[:12]}…): refusing to use it as the "
        "credential sidecar",
        f"Someone pushed another image under the shim's tag: inspect it, delete the tag (aws ecr "
        f"batch-delete-image --repository-name {REPOSITORY} --image-ids imageTag={tag}) and "
        "rerun; only gcpfargate should push to that repository",
    )


def _platform(ctx: Context) -> str:
    return ctx.settings.image.platform


def resolve_shim(ctx: Context) -> str:
    """The pushed shim image for this gcpfargate and base, pinned by digest."""
    files = _context(ctx)
    tag = shim_tag(files)
    found = ctx.registry.resolve(REPOSITORY, tag, _platform(ctx))
    if found is not None:
        found = verified(ctx, found, files, tag)
    if found is None:
        raise ImageNotFound(
            f"the credential-shim image {REPOSITORY}:{tag} is not in registry {ctx.registry.host}",
            "Run gcpfargate push-image (keyless mode pushes the shim too)",
        )
    return f"{ctx.registry.image_name(REPOSITORY)}@{found.digest}"


def push_shim(ctx: Context) -> ShimPush:
    """The shim image for this gcpfargate and base: reused when the registry holds it, else built,
    checked by the key guard and pushed (a preview builds nothing: it lists the repository and the
    push). Its changes are recorded on `ctx.plan`."""
    files = _context(ctx)
    tag, platform = shim_tag(files), _platform(ctx)
    name = ctx.registry.image_name(REPOSITORY)
    held = ctx.registry.resolve(REPOSITORY, tag, platform)
    if held is not None:
        held = verified(ctx, held, files, tag)
        return ShimPush(f"{name}@{held.digest}", changed=False)
    digest = ""
    if ctx.plan.apply:  # a preview builds nothing: a build is work, not a change
        image_id = _build(ctx, files, name, tag, platform)
        ctx.registry.credentials()  # authenticate before any write
        digest = held_digest(ctx, REPOSITORY, tag, platform, image_id)
    ensure_repository(ctx, REPOSITORY)
    if not digest:
        change = planning.create(
            "ECR image",
            f"{REPOSITORY}:{tag}",
            f"build and push the credential-shim image {name}:{tag}",
        )
        digest = ctx.plan.change(change, lambda: _push(ctx, name, tag)) or ""
    return ShimPush(f"{name}@{digest}" if digest else "", changed=True)


def _build(ctx: Context, files: dict[str, bytes], name: str, tag: str, platform: str) -> str:
    """Build the shim and pass it through the key guard; its image id."""
    with tempfile.TemporaryDirectory(prefix="gcpfargate-shim-") as directory:
        for relative, content in files.items():
            path = Path(directory) / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(content)
        with ctx.reporter.step(f"Building the credential shim {name}:{tag}"):
            image_id = ctx.docker.build(
                Path(directory), "Dockerfile", f"{name}:{tag}", platform, on_line=ctx.reporter.log
            )
    # The key guard, as for the application's image: the shim's base (image.shim_base_image) is
    # the user's to choose, and nothing the shim needs is ever a key, so there is no override.
    from gcpfargate.image.push import guard, scan_image

    with ctx.reporter.step(f"Scanning {name}:{tag} for key material"):
        found = scan_image(ctx, image_id)
    guard(ctx, found, f"the credential-shim image {name}:{tag}", allow=False)
    return image_id


def _push(ctx: Context, name: str, tag: str) -> str:
    ctx.reporter.info(f"Pushing {name}:{tag}")
    return push_tag(ctx, REPOSITORY, tag)
