"""Images: names (`host/repo:tag@digest`), platforms, and what gcpfargate's registry holds for an
image.

Architecture names come in three spellings: Docker's (`amd64`, `arm64`), the kernel's that Docker
also accepts in `--platform` (`x86_64`, `aarch64`), and ECS's `runtimePlatform.cpuArchitecture`
(`X86_64`, `ARM64`). Everything inside gcpfargate uses Docker's; this module converts.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from gcpfargate.core.context import Context
from gcpfargate.errors import ConfigError, ImageNotFound, RegistryError, TemplateError

if TYPE_CHECKING:
    from gcpfargate.clients.registry import ImageRef

_ECS_ARCH = {"X86_64": "amd64", "ARM64": "arm64"}
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
# ECR's private registry host in every partition: <account>.dkr.ecr[-fips].<region>.<DNS suffix>
# (the ECR user guide, "Private registry concepts"; amazonaws.com, amazonaws.com.cn, …).
_ECR_HOST = re.compile(r"(\d{12})\.dkr\.ecr(?:-fips)?\.([a-z0-9-]+)\.[a-z0-9.-]+")


def ecs_arch(cpu_architecture: str) -> str:
    """ECS's runtimePlatform.cpuArchitecture (`X86_64`, `ARM64`) in Docker's words; "" for ""."""
    return _ECS_ARCH.get(cpu_architecture, cpu_architecture.lower())


def configured_platform(ctx: Context) -> str:
    """image.platform, in Docker's words (linux/amd64 or linux/arm64): canonical since load."""
    return ctx.settings.image.platform


def split_image(image: str) -> tuple[str, str, str, str]:
    """`host/repo:tag@sha256:…` → (host, repository, tag, digest); missing parts are ""."""
    name, _, digest = image.partition("@")
    slash = name.find("/")
    first = name[:slash] if slash > 0 else ""
    # Docker's rule: the first component is a registry host when it has a dot or port, or is
    # localhost.
    if first and ("." in first or ":" in first or first == "localhost"):
        host, rest = first, name[slash + 1 :]
    else:
        host, rest = "", name
    repository, tag = rest, ""
    if ":" in rest.rsplit("/", 1)[-1]:
        repository, _, tag = rest.rpartition(":")
    return host, repository, tag, digest


def in_registry(ctx: Context, image: str) -> bool:
    """Whether `image` is in gcpfargate's registry (the only one whose contents it reads)."""
    return split_image(image)[0] == ctx.registry.host


def held(ctx: Context, image: str, platform: str = "") -> ImageRef | None:
    """What the registry holds for `image` (by digest, else tag, else latest) for `platform`
    (default image.platform); None when it holds nothing there. Call only for an image
    `in_registry`."""
    _, repository, tag, digest = split_image(image)
    return ctx.registry.resolve(
        repository, digest or tag or "latest", platform or configured_platform(ctx)
    )


def same_image(
    digest: str, config_digest: str, image_id: str, repo_digests: Sequence[str], name: str
) -> bool:
    """Whether the registry's image (manifest or index `digest`, config `config_digest`) is the
    engine's image.

    The classic image store's image id is the config digest. Docker's containerd image store (the
    default of current releases) reports the image's own manifest or index digest as its id, and
    lists every pushed digest in RepoDigests as `name@sha256:…` (moby/moby#45122, docker/cli#5526).
    """
    return image_id in (config_digest, digest) or f"{name}@{digest}" in repo_digests


@dataclass(frozen=True)
class ResolvedImage:
    reference: str  # what the template's `image` is: host/repo@sha256:… when pinned
    digest: str  # sha256:… ("" when unknown)
    config: dict[str, Any] | None  # the image config's "config" section (Entrypoint, Cmd, …)


def default_image(ctx: Context) -> str:
    tag = ctx.settings.image.tag
    if not tag:
        raise ConfigError(
            "no image to register: image.tag is not set",
            "Pass --image URI (push-image prints it) or set image.tag (GCPFARGATE_IMAGE_TAG)",
        )
    if not ctx.settings.repository:
        ctx.settings.require("image.repository")
    return f"{ctx.registry.host}/{ctx.settings.repository}:{tag}"


# ECR CreateRepository: repositoryName length 2-256, pattern from botocore's ECR model.
_REPOSITORY = re.compile(r"(?:[a-z0-9]+(?:[._-][a-z0-9]+)*/)*[a-z0-9]+(?:[._-][a-z0-9]+)*")


def check_repository_name(ctx: Context) -> str:
    """The repository to push to, refused before any build when ECR would refuse its name."""
    name = ctx.settings.repository
    if 2 <= len(name) <= 256 and _REPOSITORY.fullmatch(name):
        return name
    source = "image.repository" if ctx.settings.image.repository else "derived from task.family"
    raise ConfigError(
        f"{name!r} ({source}) is not a valid ECR repository name: 2-256 lowercase letters, digits, "
        "and . _ - / between them",
        "Set image.repository (GCPFARGATE_IMAGE_REPOSITORY) to a valid name",
    )


def registered_image(ctx: Context) -> str | None:
    """Without image.tag (a derived tag is in no config): the image in gcpfargate's repository that
    the family's latest ACTIVE revision runs, so render/diff/run-local need no --image after a
    deploy."""
    if ctx.settings.image.tag or not ctx.settings.repository:
        return None
    from gcpfargate.ecs import cluster as ecs

    definition = ecs.latest_active(ctx, ctx.settings.family) or {}
    name = ctx.registry.image_name(ctx.settings.repository)
    for container in definition.get("containerDefinitions") or []:
        image = str(container.get("image", ""))
        if image.startswith((name + ":", name + "@")):
            return image
    return None


def resolve_image(ctx: Context, image: str | None) -> ResolvedImage:
    """The image to register: checked to be in the registry, and pinned by digest when
    image.pin_digest."""
    image = image or default_image(ctx)
    host, repository, _, digest = split_image(image)
    if digest and not _DIGEST.fullmatch(digest):
        raise ConfigError(f"image {image}: {digest!r} is not a sha256 digest")
    pin = ctx.settings.image.pin_digest
    if host != ctx.registry.host:
        if pin and not digest:
            raise ConfigError(
                f"image {image} is not in registry {ctx.registry.host}, so it cannot be pinned by "
                "digest",
                "Push it with gcpfargate push-image, pass host/repo@sha256:…, or set "
                "image.pin_digest = false",
            )
        return ResolvedImage(image, digest, None)
    platform = configured_platform(ctx)
    with ctx.reporter.step(f"Resolving {image}"):
        found = held(ctx, image, platform)
    if found is None:
        raise ImageNotFound(
            f"image {image} ({platform}) is not in registry {ctx.registry.host}",
            "Run gcpfargate push-image first, or pass --image with a pushed image",
        )
    reference = f"{host}/{repository}@{found.digest}" if pin else image
    return ResolvedImage(reference, found.digest, found.run_config)


def run_config(ctx: Context, image: str, resolved: ResolvedImage | None = None) -> dict[str, Any]:
    """ENTRYPOINT/CMD (the config's "config" section) of a container's image, for the credentials
    wrapper to run exactly what the image runs; `resolved` is the image already read, when it is
    this one."""
    if resolved is not None and resolved.config is not None and image == resolved.reference:
        return resolved.config
    if not in_registry(ctx, image):
        from gcpfargate.clients.public_registry import locate

        if locate(image) is not None:  # public ECR or Docker Hub: read anonymously
            try:
                with ctx.reporter.step(f"Reading the image config of {image}"):
                    return ctx.public_registry.run_config(image, configured_platform(ctx))
            except RegistryError as exc:
                raise TemplateError(
                    f"image {image}: its ENTRYPOINT/CMD cannot be read: {exc.message}",
                    exc.hint or 'Set "entryPoint" (and "command") for that container',
                ) from None
        ecr = _ECR_HOST.fullmatch(split_image(image)[0].lower())
        if ecr is not None:  # another account's ECR: read with the caller's credentials
            return _other_account_config(ctx, image, ecr.group(1), ecr.group(2))
        raise TemplateError(
            f"image {image} sets no entryPoint/command in the template and is not in registry "
            f"{ctx.registry.host}, so its ENTRYPOINT/CMD cannot be read",
            'Set "entryPoint" (and "command") for that container in the template',
        )
    found = held(ctx, image)
    if found is None:
        raise ImageNotFound(
            f"image {image} ({configured_platform(ctx)}) is not in registry {ctx.registry.host}",
            "Push it first, or set entryPoint/command for that container in the template",
        )
    return found.run_config


def _ecr_endpoints() -> dict[str, str]:
    """GCPFARGATE_ECR_ENDPOINTS (`<account>=host[:port],…`): where another account's registry is
    reached when its own name does not lead there (a mirror, a proxy, a test's registry)."""
    import os

    found: dict[str, str] = {}
    for item in os.environ.get("GCPFARGATE_ECR_ENDPOINTS", "").split(","):
        account, sep, endpoint = item.strip().partition("=")
        if sep and endpoint.strip():
            found[account.strip()] = endpoint.strip()
    return found


def _other_account_config(ctx: Context, image: str, account: str, region: str) -> dict[str, Any]:
    """The image config of `image` in account `account`'s ECR registry: ECR's
    GetAuthorizationToken for that registry (`registryIds`), then the Registry HTTP API v2. ECR
    lets the caller read it when the repository policy grants ecr:BatchGetImage (the manifest)
    and ecr:GetDownloadUrlForLayer (the config blob) to the caller's account."""
    from gcpfargate.clients.registry import Registry
    from gcpfargate.errors import AwsError

    fix = (
        f"the repository policy in account {account} must allow ecr:BatchGetImage and "
        "ecr:GetDownloadUrlForLayer to this caller"
    )
    if region != ctx.aws.region:
        raise TemplateError(
            f"image {image} is in account {account}'s ECR in {region}, and gcpfargate reads other "
            f"accounts' registries in its own region ({ctx.aws.region}) only"
        )
    registry = ctx.other_registries.get(account)
    if registry is None:
        registry = Registry(ctx.aws, account, _ecr_endpoints().get(account, ""))
        ctx.other_registries[account] = registry
    _, repository, tag, digest = split_image(image)
    platform = configured_platform(ctx)
    try:
        with ctx.reporter.step(f"Reading the image config of {image}"):
            found = registry.resolve(repository, digest or tag or "latest", platform)
    except (RegistryError, AwsError) as exc:
        # The registry's 401/403 is the repository policy's no (an AwsError from
        # GetAuthorizationToken names the caller's own missing permission itself).
        refused = isinstance(exc, RegistryError) and "refused access" in exc.message
        raise TemplateError(
            f"image {image} in account {account}'s ECR cannot be read with the caller's "
            f"credentials ({exc.message.rstrip('.')})" + (f": {fix}" if refused else "")
        ) from None
    if found is None:
        raise TemplateError(
            f"image {image} ({platform}) is not in account {account}'s ECR registry "
            "(no such tag or digest for that platform)"
        )
    return found.run_config


def configured_user(ctx: Context, image: str, resolved: ResolvedImage | None = None) -> str | None:
    """The USER `image` runs as ("" when it sets none); None when its config cannot be read (an
    image in no registry gcpfargate reads), so the wiring gives its tmpfs a mode any user can
    write to."""
    try:
        return str(run_config(ctx, image, resolved).get("User") or "")
    except (TemplateError, ImageNotFound):
        return None
