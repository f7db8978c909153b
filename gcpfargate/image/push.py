"""Step 3 of the recipe: build the image, refuse to ship a key inside it, push it to ECR.

- **Repository**: `image.repository` (default: the task family) is created when missing, with
  scan-on-push on. An existing repository is never reconfigured; scan-on-push off only warns.
- **Authentication**: ECR's GetAuthorizationToken; the credentials go to the Docker engine with
  this push only (`auth_config`), never into ~/.docker/config.json.
- **Tag**: `image.tag` (or `--tag`); otherwise derived (core/gittag.py): the short git SHA of the
  context when it is a git work tree (`<sha>-dirty-<content hash>` with uncommitted changes), else a
  UTC timestamp `YYYYmmddHHMMSS`.
- **latest** is *not* pushed unless `image.push_latest = true`: repositories with immutable tags
  reject a second `latest`, and the task definition pins the digest anyway, so `latest` only
  serves humans.
- **No-op**: nothing is pushed (`changed: false`) when the registry already holds an image with
  the built image's config digest (its image id) under the tag. When the tag was derived, the
  image pinned by the family's latest ACTIVE task definition counts too, so a timestamp tag does
  not force a new push of an unchanged image; that image is reported and `latest` is left alone.
- **Guard** (core/key_guard.py, rules in keyscan.py): build arguments are checked before the build;
  before anything is pushed, the build context (after `.dockerignore`), every layer of the built
  image and its config (Env, Labels, history) are searched for key material. Found: refuse,
  naming the paths, unless `allow_embedded_credentials` (then warn).
- **Plan**: creating the repository and pushing each tag are the changes (core/plan.py), recorded
  where they are made. A preview builds nothing and writes nothing: it lists the same changes
  (the repository when missing, each tag's push) without the built image, so a push it cannot
  rule out without building is listed.
- **Builder** (clients/buildkit.py): BuildKit through the docker CLI (buildx, else a CLI with it
  built in), else the classic builder with one warning. `image.secrets` become `--secret`s;
  `image.cache = "inline"` exports BuildKit's inline cache and takes `--cache-from` the image the
  family's latest revision runs (read once, before the build, and handed on).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gcpfargate.config import SCHEMA, Settings
from gcpfargate.core import plan as planning
from gcpfargate.core.context import Context
from gcpfargate.core.report import Reporter
from gcpfargate.core.results import NOT_SHOWN, PlannedResult
from gcpfargate.ecs import cluster as ecs
from gcpfargate.errors import (
    AwsError,
    ConfigError,
    EmbeddedCredentialsError,
    GcpfargateError,
    ImagePlatformError,
)
from gcpfargate.image import guard as key_guard
from gcpfargate.image import images
from gcpfargate.image.gittag import derive_tag
from gcpfargate.image.guard import scan_context
from gcpfargate.image.repository import (
    create_repository,
    describe_repository,
    ensure_repository,
    held_digest,
    push_tag,
)
from gcpfargate.settings import docker_arch

if TYPE_CHECKING:
    from gcpfargate.clients.engine.buildkit import BuildOptions, Secret
    from gcpfargate.image.scan_ahead import ScanAhead

# The guard's rules are keymaterial/keyscan.py's (keyscan.RULES_VERSION keys the layer cache).


@dataclass
class PushResult(PlannedResult):
    image: str  # host/repo:tag (or host/repo@sha256:… for a reused image no tag points at)
    digest: str | None  # the manifest digest, sha256:…; None: known after apply (a preview)
    tags: list[str]
    changed: bool
    plan: list[planning.Change] = field(default_factory=list)  # a preview's changes
    # The family's latest ACTIVE revision as push read it, for register-task in `deploy`; None: not
    # read.
    latest: ecs.LatestRevision | None = field(default=None, metadata=NOT_SHOWN)
    shim_image: str = ""  # keyless mode: the credential shim, host/repo@sha256:…

    def to_json(self) -> dict[str, Any]:
        data = super().to_json()
        if not self.shim_image:
            data.pop("shim_image")
        return data


@dataclass(frozen=True)
class BuildInputs:
    context: Path
    dockerfile: str  # as the docker SDK wants it: relative to the context, or absolute outside it
    platform: str  # normalised: linux/amd64 or linux/arm64
    build_args: dict[str, str]


@dataclass(frozen=True)
class Built:
    """What `build_image` made: the local image and the names it is to be pushed under."""

    repository: str
    inputs: BuildInputs
    tag: str
    explicit: bool  # the user chose the tag (rather than it being derived)
    tags: list[str]
    name: str  # host/repository
    image_id: str  # "": not built (a preview builds nothing)
    tag_existed: bool = (
        True  # the engine had `name:tag` before this build (else the build made that name)
    )
    # The family's latest ACTIVE revision when the build read it (for --cache-from): push and
    # register-task take it from here, so it is read once.
    latest: ecs.LatestRevision | None = None
    latest_read: bool = False


def build_image(
    ctx: Context,
    allow_embedded_credentials: bool = False,
    tag: str | None = None,
    reporter: Reporter | None = None,
    action: str = "push",
    latest: ecs.LatestRevision | None = None,
    read_first: bool = False,
    ahead: ScanAhead | None = None,
) -> Built:
    """push-image's first half: check the build context and build. No AWS call when the registry
    host is already known, so `deploy` runs it in a thread during bootstrap, with a `reporter` of
    its own; `latest` (the family's latest revision, read by the caller) gives BuildKit its
    --cache-from; `read_first`: read it here, once the context passed the guard; `ahead`: the
    context's key search deploy started in a child (image/scan_ahead.py)."""
    reporter = reporter or ctx.reporter
    settings = ctx.settings
    if not settings.repository:
        settings.require("image.repository")
    repository = images.check_repository_name(ctx)
    inputs = build_inputs(settings)
    key_guard.check_build_args(inputs.build_args)
    tag, explicit = choose_tag(settings, inputs.context, tag)
    tags = [tag, "latest"] if settings.image.push_latest and tag != "latest" else [tag]

    with reporter.step("Searching the build context for key files"):
        found = ahead.found(inputs.context, inputs.dockerfile) if ahead is not None else None
        if found is None:
            found = scan_context(inputs.context, inputs.dockerfile)
        else:
            reporter.detail("searched by a second process while the SDKs loaded")
    guard(ctx, found, "the build context", allow_embedded_credentials, reporter, action)

    name = ctx.registry.image_name(repository)
    if not ctx.plan.apply:  # a preview builds nothing: a build is work, not a change
        return Built(repository, inputs, tag, explicit, tags, name, "")
    ctx.docker.ping()  # an unreachable engine fails here, before any AWS write
    existed = ctx.docker.inspect(f"{name}:{tag}") is not None
    read = latest is not None
    if read_first and not read and wants_cache_from(ctx):
        latest, read = read_latest(ctx), True
    options = build_options(ctx, name, latest, reporter)
    with reporter.step(f"Building {name}:{tag} for {inputs.platform}"):
        image_id = ctx.docker.build(
            inputs.context,
            inputs.dockerfile,
            f"{name}:{tag}",
            inputs.platform,
            inputs.build_args,
            on_line=reporter.log,
            options=options,
        )
    return Built(
        repository,
        inputs,
        tag,
        explicit,
        tags,
        name,
        image_id,
        existed,
        latest,
        latest_read=read,
    )


def wants_cache_from(ctx: Context) -> bool:
    """Whether a build reads the family's latest revision first: its image is BuildKit's
    --cache-from (image.cache = "inline" and a builder that has BuildKit)."""
    return (
        ctx.settings.image.cache == "inline"
        and bool(ctx.settings.family)
        and ctx.docker.builder().buildkit
    )


def build_options(
    ctx: Context, name: str, latest: ecs.LatestRevision | None, reporter: Reporter | None = None
) -> BuildOptions:
    """How the app image is built: image.network, image.secrets, image.cache. Without BuildKit the
    classic builder is used, with one warning; secrets are then refused (they would need a build
    argument, which the image records)."""
    from gcpfargate.clients.engine.buildkit import BuildOptions

    image = ctx.settings.image
    secrets = build_secrets(ctx.settings)
    builder = ctx.docker.builder()
    if not builder.buildkit:
        if secrets:
            raise ConfigError(
                f"image.secrets needs BuildKit, and {builder.describe()} has none here",
                "Install the docker CLI's buildx plugin (Debian: docker-buildx; "
                "https://docs.docker.com/go/buildx/), then rerun",
            )
        if builder.kind != "podman":  # Podman's API builds with buildah: RUN --mount works
            (reporter or ctx.reporter).warn(
                "no BuildKit here (no docker CLI with buildx or with BuildKit built in): "
                "building with the classic builder, so RUN --mount, COPY --chmod/--link, heredocs, "
                "# syntax= and image.cache do not work; install the buildx plugin to have them"
            )
        return BuildOptions(network=image.network)
    inline = image.cache == "inline" and inline_cache_safe(ctx, reporter)
    cache_from = tuple(cache_image(name, latest)) if inline else ()
    return BuildOptions(
        network=image.network, secrets=secrets, cache_from=cache_from, inline_cache=inline
    )


_FROM = re.compile(r"^\s*FROM\s", re.IGNORECASE | re.MULTILINE)


def inline_cache_safe(ctx: Context, reporter: Reporter | None = None) -> bool:
    """Whether this build may export BuildKit's inline cache. The BuildKit inside engines before
    23.0 (Debian's docker.io 20.10) overflows its stack exporting the cache of some multi-stage
    builds, and the whole engine dies (moby/buildkit#1609: a COPY --from of a file an earlier step
    also added is enough); there a multi-stage Dockerfile is built without it."""
    if ctx.docker.builder().kind == "buildx" or ctx.docker.major_version() >= 23:
        return True
    inputs = build_inputs(ctx.settings)
    path = Path(inputs.dockerfile)
    dockerfile = path if path.is_absolute() else inputs.context / path
    try:
        stages = len(_FROM.findall(dockerfile.read_text(encoding="utf-8", errors="replace")))
    except OSError:
        return False
    if stages > 1:
        (reporter or ctx.reporter).detail(
            f"no inline cache: the BuildKit of Docker engine {ctx.docker.version().get('Version')} "
            "can crash exporting a multi-stage build's cache (moby/buildkit#1609)"
        )
        return False
    return True


def cache_image(name: str, latest: ecs.LatestRevision | None) -> list[str]:
    """The image of `name` (host/repository) the family's latest revision runs: by digest when it
    is pinned, as registered otherwise."""
    definition = (latest.definition if latest is not None else None) or {}
    for container in definition.get("containerDefinitions", []):
        registered = str(container.get("image", ""))
        if registered.startswith((name + "@", name + ":")):
            return [registered]
    return []


def build_secrets(settings: Settings) -> tuple[Secret, ...]:
    """`[image.secrets]` as the CLI's --secret: a file (relative to the config file) or a variable
    of the deployer's environment; each checked before the build, never read here."""
    import os

    from gcpfargate.clients.engine.buildkit import Secret

    secrets = []
    for secret_id, source in settings.image.secrets.items():
        if isinstance(source, str):
            path = settings.resolve(source)
            if not path.is_file() or not os.access(path, os.R_OK):
                raise ConfigError(
                    f"image.secrets.{secret_id}: {path} is not a readable file",
                    "Create it, or point image.secrets at the file (relative to the config "
                    'file) or at a variable: { env = "NAME" }',
                )
            secrets.append(Secret(secret_id, "src", str(path)))
        else:
            variable = str(dict(source)["env"])  # type: ignore[call-overload]
            if variable not in os.environ:
                raise ConfigError(
                    f"image.secrets.{secret_id}: environment variable {variable} is not set",
                    f"Set {variable} for the build, or remove image.secrets.{secret_id}",
                )
            secrets.append(Secret(secret_id, "env", variable))
    return tuple(secrets)


def push_image(
    ctx: Context,
    allow_embedded_credentials: bool = False,
    tag: str | None = None,
    built: Built | None = None,
) -> PushResult:
    """Build (unless `built` is given) and push; see the module docstring. The credential mode's
    own images (keyless: the shim) are its business: `CredentialMode.extra_images`."""
    mark = ctx.plan.mark()
    result = _push_app_image(ctx, allow_embedded_credentials, tag, built)
    result.plan = ctx.plan.shown(mark)
    return result


def _push_app_image(
    ctx: Context, allow_embedded_credentials: bool, tag: str | None, built: Built | None
) -> PushResult:
    built = built or build_image(ctx, allow_embedded_credentials, tag, read_first=True)
    if not built.image_id:  # not built (a preview): the image is known only after apply
        return _preview(ctx, built)
    latest = built.latest if built.latest_read else read_latest(ctx)
    result = _push(ctx, built, allow_embedded_credentials, latest.definition if latest else None)
    result.latest = latest
    return result


def _push(
    ctx: Context,
    built: Built,
    allow_embedded_credentials: bool,
    task_definition: dict[str, Any] | None,
) -> PushResult:
    repository, inputs, tag, explicit, tags, name = (
        built.repository,
        built.inputs,
        built.tag,
        built.explicit,
        built.tags,
        built.name,
    )
    image, image_id = f"{name}:{tag}", built.image_id
    # Docker's containerd image store reports the manifest digest as the id; RepoDigests names
    # pushed ones.
    repo_digests = tuple(
        check_platform(ctx, image, image_id, inputs.platform, task_definition).get("RepoDigests")
        or ()
    )
    # Authenticate before any write: an expired or refused token must leave nothing half-made.
    with ctx.reporter.step(f"Authenticating to {ctx.registry.host}"):
        ctx.registry.credentials()

    digest = held_digest(ctx, repository, tag, inputs.platform, image_id, repo_digests)
    if not digest and not explicit:
        reused = reuse_task_definition_image(
            ctx, repository, image_id, inputs.platform, task_definition, repo_digests
        )
        if reused is not None:
            # Nothing was pushed under the derived tag: do not leave a local name no registry has.
            if not built.tag_existed:
                ctx.docker.untag(image)
            return reused
    extra_tags = [each for each in tags if each != tag]
    if digest and not extra_tags:
        # The registry already holds this very image under this tag: it was scanned when it was
        # pushed, and pushing nothing cannot leak anything, so skip the (slow) layer scan too.
        ctx.reporter.info(f"{image} already holds this image: nothing to push")
        return PushResult(image=image, digest=digest, tags=tags, changed=False)
    with ctx.reporter.step(f"Searching the layers of {image} for key files"):
        found = scan_image(ctx, image_id)
    guard(ctx, found, f"image {image}", allow_embedded_credentials)
    created = ensure_repository(ctx, repository)
    pushed = False
    for each in tags:
        if each == tag and digest:
            ctx.reporter.info(f"{image} already holds this image: nothing to push")
            continue
        if each != tag:
            if held_digest(ctx, repository, each, inputs.platform, image_id, repo_digests):
                continue
            ctx.docker.tag(image_id, name, each)
        pushed_digest = _push_tag(ctx, built, each)
        pushed = True
        if each == tag:
            digest = pushed_digest or ""
    return PushResult(image=image, digest=digest, tags=tags, changed=created or pushed)


def _push_tag(ctx: Context, built: Built, tag: str) -> str | None:
    """The change that pushes `tag`: the manifest digest the registry then holds (None in a
    preview)."""
    name = f"{built.name}:{tag}"

    def push() -> str:
        # Not a step: a spinner and the per-layer bars cannot share the terminal.
        ctx.reporter.info(f"Pushing {name}")
        return push_tag(ctx, built.repository, tag)

    change = planning.create(
        "ECR image",
        f"{built.repository}:{tag}",
        f"push {name} unless the registry already holds this image there",
    )
    return ctx.plan.change(change, push)


# -- inputs --------------------------------------------------------------------------------------
def build_inputs(settings: Settings) -> BuildInputs:
    context = Path(settings.image.context)
    if context == Path(context.anchor):
        raise ConfigError(
            f"build context {context} is the root directory: the whole machine would be sent to "
            "the Docker engine",
            "Set image.context to the project's directory (the one with the Dockerfile)",
        )
    if not context.is_dir():
        raise ConfigError(
            f"build context {context} is not a directory",
            "Set image.context to the directory that holds the Dockerfile",
        )
    # Like docker compose: the Dockerfile path is relative to the context.
    dockerfile = Path(settings.image.dockerfile or context / "Dockerfile")
    if not dockerfile.is_file():
        raise ConfigError(
            f"Dockerfile {dockerfile} does not exist",
            f"Create it, or set image.dockerfile (a path relative to {context})",
        )
    relative = (
        dockerfile.relative_to(context).as_posix() if dockerfile.is_relative_to(context) else ""
    )
    return BuildInputs(
        context=context,
        dockerfile=relative or str(dockerfile),
        platform=settings.image.platform,
        build_args=dict(settings.image.build_args),
    )


def choose_tag(settings: Settings, context: Path, tag: str | None = None) -> tuple[str, bool]:
    """The tag and whether the user chose it (an argument or image.tag) rather than it being
    derived."""
    if tag:
        check = SCHEMA["image"]["tag"].validate
        if check is not None and (reason := check(tag)):
            raise ConfigError(f"image tag {tag!r} {reason}")
        return tag, True
    configured = settings.image.tag
    if configured:
        return configured, True
    return derive_tag(context), False


# -- the guard -----------------------------------------------------------------------------------
def scan_image(ctx: Context, image_id: str) -> list[str]:
    """Where the built image holds key material: its files (any layer, even if a later layer deletes
    them; layers scanned clean before are not read again) and its config (Env, Labels, history):
    core/key_guard.py."""
    return key_guard.scan_image_files(ctx.docker, image_id) + key_guard.scan_image_config(
        ctx.docker, image_id
    )


def guard(
    ctx: Context,
    found: list[str],
    where: str,
    allow: bool,
    reporter: Reporter | None = None,
    action: str = "push",
) -> None:
    """Refuse (or, when `allow`, warn about) key material found; `action`: what is refused."""
    if not found:
        return
    shown = ", ".join(found[:5]) + (f" and {len(found) - 5} more" if len(found) > 5 else "")
    what = (
        f"{where} holds what looks like a private key or a Google credential file (key file, PEM "
        f"block, authorized_user or external_account configuration, gha-creds-*.json) in: {shown}"
    )
    if allow:
        (reporter or ctx.reporter).warn(f"{what} (pushing anyway: --allow-embedded-credentials)")
        return
    override = ", or pass --allow-embedded-credentials" if action == "push" else ""
    raise EmbeddedCredentialsError(
        f"refusing to {action}: {what}",
        "Remove it from the image (exclude it in .dockerignore, gha-creds-*.json included; a key "
        "fetched by a RUN step stays in its layer even if deleted later; a build that needs a "
        "credential takes it as a build secret: [image.secrets] and RUN --mount=type=secret), "
        f"rotate that credential{override}",
    )


# -- AWS and the registry ------------------------------------------------------------------------
def read_latest(ctx: Context) -> ecs.LatestRevision | None:
    """The family's latest ACTIVE revision; None when it could not be read (no family, or a
    failure)."""
    family = ctx.settings.family
    if not family:
        return None
    try:
        # The same read register-task makes: `deploy` hands it on, so it is made once.
        return ecs.LatestRevision(ecs.latest_active(ctx, family))
    except AwsError as exc:
        # Only an optimisation and a platform check depend on it: say so and carry on.
        ctx.reporter.warn(
            f"{exc.message}; pushing without comparing to the registered task definition"
        )
        return None


def check_platform(
    ctx: Context, image: str, image_id: str, platform: str, task_definition: dict[str, Any] | None
) -> dict[str, Any]:
    """Refuse an image built for another platform than image.platform (Fargate would not start it);
    warn when the registered task definition asks for another architecture. The engine's inspect
    data of the image."""
    data = ctx.docker.inspect(image_id) or {}
    arch = docker_arch(str(data.get("Architecture", "")))
    built = f"{data.get('Os', 'linux')}/{arch}"
    if arch and built != platform:
        # Nothing is pushed yet: an image that fails every task start never reaches the registry.
        raise ImagePlatformError(
            f"refusing to push {image}: it was built for {built}, but image.platform is "
            f"{platform}, and Fargate would not start it (exec format error)",
            "Build FROM a base image that has a "
            f"{platform} variant (check the Dockerfile's FROM --platform), or set image.platform "
            f"to {built} with runtimePlatform to match",
        )
    task_definition = task_definition or {}
    wanted = images.ecs_arch(
        str((task_definition.get("runtimePlatform") or {}).get("cpuArchitecture", ""))
    )
    if wanted and arch and wanted != arch:
        ctx.reporter.warn(
            f"{image} is {built}, but task definition {task_definition.get('family')} "
            f"asks for runtimePlatform {wanted}: set image.platform and runtimePlatform alike"
        )
    return data


def reuse_task_definition_image(
    ctx: Context,
    repository: str,
    image_id: str,
    platform: str,
    task_definition: dict[str, Any] | None,
    repo_digests: tuple[str, ...] = (),
) -> PushResult | None:
    """The registered image when it is this very image (images.same_image) and still in the
    registry."""
    name = ctx.registry.image_name(repository)
    task_definition = task_definition or {}
    for container in task_definition.get("containerDefinitions", []):
        registered = str(container.get("image", ""))
        if not registered.startswith((name + "@", name + ":")):
            continue
        reference = registered[len(name) + 1 :]
        held = ctx.registry.resolve(repository, reference, platform)
        if held is None or not images.same_image(
            held.digest, held.config_digest, image_id, repo_digests, name
        ):
            continue
        # A digest-pinned registration is reported as such: finding a tag for it would cost a lookup
        # per tag.
        tag = reference if registered.startswith(name + ":") else None
        shown = f"{name}:{tag}" if tag else f"{name}@{held.digest}"
        ctx.reporter.info(
            f"task definition {task_definition.get('family')} already runs this image "
            f"({shown}): nothing to push"
        )
        return PushResult(image=shown, digest=held.digest, tags=[tag] if tag else [], changed=False)
    return None


def _rehearse(ctx: Context, built: Built) -> PushResult | None:
    """A dry run's answer for a derived tag the registry lacks: a new commit that leaves the image
    as it was deploys as a no-op (the task definition already runs that image), and only a build
    can tell. The build is local and cached (nothing is pushed, tagged for good or registered); an
    engine that does not answer, or an image that differs, leaves the plan as it was."""
    repository, inputs = built.repository, built.inputs
    latest = read_latest(ctx)
    if latest is None or ctx.registry.resolve(repository, built.tag, inputs.platform) is not None:
        return None
    image = f"{built.name}:{built.tag}"
    try:
        ctx.docker.ping()
        existed = ctx.docker.inspect(image) is not None
        options = build_options(ctx, built.name, latest)
        with ctx.reporter.step(f"Building {image} to compare it (dry run: nothing is pushed)"):
            image_id = ctx.docker.build(
                inputs.context,
                inputs.dockerfile,
                image,
                inputs.platform,
                inputs.build_args,
                on_line=ctx.reporter.log,
                options=options,
            )
    except GcpfargateError as exc:
        ctx.reporter.detail(f"not built, so not compared: {exc.message}")
        return None
    try:
        data = ctx.docker.inspect(image_id) or {}
        reused = reuse_task_definition_image(
            ctx,
            repository,
            image_id,
            inputs.platform,
            latest.definition,
            tuple(data.get("RepoDigests") or ()),
        )
    finally:
        if not existed:
            ctx.docker.untag(image)  # a rehearsal leaves no name behind
    if reused is not None:
        reused.latest = latest
    return reused


def _preview(ctx: Context, built: Built) -> PushResult:
    """What a push of the image a preview did not build changes: the repository when it is
    missing, and each tag's push unless the registry already has this very image (which, short of
    building, only a rehearsal of a derived tag can tell)."""
    repository, inputs, tags, image = (
        built.repository,
        built.inputs,
        built.tags,
        f"{built.name}:{built.tag}",
    )
    found = describe_repository(ctx, repository)
    if found is None:
        create_repository(ctx, repository)
    elif built.explicit and all(
        held := [ctx.registry.resolve(repository, each, inputs.platform) for each in tags]
    ):
        # A tag the user chose is already there: a rerun would build (a no-op from the cache) and
        # push nothing unless the build differs, which only building can tell; a dry run does not
        # build.
        ctx.reporter.info(
            f"{image} is already in the registry: nothing is pushed unless a build of "
            f"{inputs.context} differs from it"
        )
        digest = held[0].digest  # type: ignore[union-attr]  # all() saw every one
        return PushResult(image=image, digest=digest, tags=tags, changed=False)
    elif not built.explicit and (rehearsed := _rehearse(ctx, built)) is not None:
        return rehearsed
    for each in tags:
        _push_tag(ctx, built, each)
    return PushResult(image=image, digest=None, tags=tags, changed=True)
