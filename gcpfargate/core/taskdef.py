"""Step 4 of the recipe: render the template, wire the credentials, validate, register.

Registration is idempotent: the rendered definition and the family's latest ACTIVE revision are
both passed through `normalise` (read-only fields dropped, the defaults ECS fills in removed,
order-insensitive lists sorted) and nothing is registered when they are equal. `render` and `diff`
share every step up to the comparison and never write to AWS.
"""

from __future__ import annotations

import copy
import difflib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gcpfargate.core import template, wiring
from gcpfargate.core.context import Context
from gcpfargate.errors import AwsError, ConfigError, OperationError, TemplateError

# Fields describe_task_definition returns that RegisterTaskDefinition does not take.
READ_ONLY = ("taskDefinitionArn", "revision", "status", "requiresAttributes", "compatibilities", "registeredAt",
             "registeredBy", "deregisteredAt", "deleteRequestedAt")
_MISSING_CODES = ("ClientException", "ResourceNotFoundException", "InvalidParameterException")
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")


class ImageNotFound(OperationError):
    """The image to register is not in the registry (not pushed yet, or a wrong tag)."""


class SecretNotFound(ConfigError):
    """The secret that holds the key does not exist yet (bootstrap has not run)."""


@dataclass
class RegisterResult:
    task_definition_arn: str
    revision: int | None
    changed: bool
    plan: list[str] = field(default_factory=list)  # what a --dry-run would do
    diff: str = ""  # registered vs rendered, for --dry-run

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"task_definition_arn": self.task_definition_arn, "revision": self.revision,
                                "changed": self.changed}
        if self.plan:
            data["plan"] = self.plan
        return data


@dataclass
class DiffResult:
    changed: bool
    diff: str

    def to_json(self) -> dict[str, Any]:
        return {"changed": self.changed, "diff": self.diff}


# -- the image ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ResolvedImage:
    reference: str  # what the template's `image` is: host/repo@sha256:… when pinned
    digest: str  # sha256:… ("" when unknown)
    config: dict[str, Any] | None  # the image config's "config" section (Entrypoint, Cmd, …)


def split_image(image: str) -> tuple[str, str, str, str]:
    """`host/repo:tag@sha256:…` → (host, repository, tag, digest); missing parts are ""."""
    name, _, digest = image.partition("@")
    slash = name.find("/")
    first = name[:slash] if slash > 0 else ""
    # Docker's rule: the first component is a registry host when it has a dot or port, or is localhost.
    if first and ("." in first or ":" in first or first == "localhost"):
        host, rest = first, name[slash + 1:]
    else:
        host, rest = "", name
    repository, tag = rest, ""
    if ":" in rest.rsplit("/", 1)[-1]:
        repository, _, tag = rest.rpartition(":")
    return host, repository, tag, digest


def default_image(ctx: Context) -> str:
    tag = ctx.settings.image.tag
    if not tag:
        raise ConfigError("no image to register: image.tag is not set",
                          "Pass --image URI (push-image prints it) or set image.tag "
                          "(GCPFARGATE_IMAGE_TAG)")
    if not ctx.settings.repository:
        ctx.settings.require("image.repository")
    return f"{ctx.registry.host}/{ctx.settings.repository}:{tag}"


def resolve_image(ctx: Context, image: str | None) -> ResolvedImage:
    image = image or default_image(ctx)
    host, repository, tag, digest = split_image(image)
    if digest and not _DIGEST.fullmatch(digest):
        raise ConfigError(f"image {image}: {digest!r} is not a sha256 digest")
    pin = ctx.settings.image.pin_digest
    if host != ctx.registry.host:
        if pin and not digest:
            raise ConfigError(f"image {image} is not in registry {ctx.registry.host}, so it cannot be pinned by "
                              "digest", "Push it with gcpfargate push-image, pass host/repo@sha256:…, or set "
                              "image.pin_digest = false")
        return ResolvedImage(image, digest, None)
    platform = ctx.settings.image.platform or "linux/amd64"
    with ctx.reporter.step(f"Resolving {image}"):
        found = ctx.registry.resolve(repository, digest or tag or "latest", platform)
    if found is None:
        raise ImageNotFound(f"image {image} ({platform}) is not in registry {ctx.registry.host}",
                            "Run gcpfargate push-image first, or pass --image with a pushed image")
    reference = f"{host}/{repository}@{found.digest}" if pin else image
    return ResolvedImage(reference, found.digest, dict(found.config.get("config") or {}))


# -- rendering ------------------------------------------------------------------------------------
def execution_role_arn(ctx: Context) -> str:
    configured = ctx.settings.task.execution_role_arn
    if configured:
        return configured
    return f"arn:{ctx.aws.partition()}:iam::{ctx.aws.account_id}:role/{ctx.settings.execution_role_name}"


def secret_arn(ctx: Context) -> str:
    from gcpfargate.core import secret

    name = ctx.settings.secret_name
    found = secret.arn(ctx, name)
    if found is None:
        raise SecretNotFound(f"secret {name} does not exist, so the task cannot be given the key",
                          "Run `gcpfargate bootstrap` first")
    return found


def template_path(ctx: Context) -> Path:
    return ctx.settings.resolve(ctx.settings.task.template)


def render_definition(ctx: Context, image: str | None) -> dict[str, Any]:
    """The final task definition register-task would send: rendered, wired, validated. Reads only."""
    settings = ctx.settings
    settings.require("task.family")
    path = template_path(ctx)
    wire = settings.task.wire_credentials
    needed = template.used_variables(path)
    if wire:
        needed |= {"secret_arn"}

    variables: dict[str, Any] = {
        "family": settings.family,
        "credentials_path": settings.task.credentials_path,
        "credentials_env": settings.task.credentials_env,
        "vars": dict(settings.task.vars),
    }
    # Only what the template uses is looked up (a template without secret_arn needs no secret), in
    # the order a user fixes them: bootstrap's secret before push-image's image.
    lookups = {
        "secret_arn": lambda: secret_arn(ctx),
        "execution_role_arn": lambda: execution_role_arn(ctx),
        "region": lambda: ctx.aws.region,
        "account_id": lambda: ctx.aws.account_id,
    }
    for name, lookup in lookups.items():
        if name in needed:
            variables[name] = lookup()
    resolved: ResolvedImage | None = None
    if needed & {"image", "image_digest"}:
        resolved = resolve_image(ctx, image)
        variables.update(image=resolved.reference, image_digest=resolved.digest)

    with ctx.reporter.step(f"Rendering {template.shown(path)}"):
        definition = template.render(path, variables)
    # Validate first: wiring relies on containerDefinitions being a list of objects.
    shape = template.input_shape(ctx.aws.service_model("ecs"))
    template.validate(definition, template.shown(path), shape)
    if wire:
        definition = wiring.wire(
            definition, secret_arn=variables["secret_arn"], credentials_env=variables["credentials_env"],
            credentials_path=variables["credentials_path"], containers=settings.task.containers or None,
            image_config=lambda ref: _image_config(ctx, ref, resolved))
    else:
        wiring.check_environment(definition, variables["credentials_env"])
    template.validate(definition, template.shown(path), shape)
    if definition.get("family") != settings.family:
        raise TemplateError(f"{template.shown(path)}: family is {definition.get('family')!r}, but task.family is "
                            f"{settings.family!r}", 'Use "family": {{ family | tojson }}')
    return definition


def _image_config(ctx: Context, image: str, resolved: ResolvedImage | None) -> dict[str, Any]:
    """ENTRYPOINT/CMD of a container's image, for the wrapper to run exactly what the image runs."""
    if resolved is not None and resolved.config is not None and image == resolved.reference:
        return resolved.config
    host, repository, tag, digest = split_image(image)
    if host != ctx.registry.host:
        raise TemplateError(f"image {image} sets no entryPoint/command in the template and is not in registry "
                            f"{ctx.registry.host}, so its ENTRYPOINT/CMD cannot be read",
                            'Set "entryPoint" (and "command") for that container in the template')
    platform = ctx.settings.image.platform or "linux/amd64"
    found = ctx.registry.resolve(repository, digest or tag or "latest", platform)
    if found is None:
        raise ImageNotFound(f"image {image} ({platform}) is not in registry {ctx.registry.host}",
                            "Push it first, or set entryPoint/command for that container in the template")
    return dict(found.config.get("config") or {})


# -- comparing ------------------------------------------------------------------------------------
def latest_active(ctx: Context, family: str) -> dict[str, Any] | None:
    """The latest ACTIVE revision of `family` with its tags (as `tags`); None when there is none.

    Read once per command: in `deploy`, push-image has read it already (ctx.known)."""
    memo = f"task_definition:{family}"
    if memo not in ctx.known:
        ctx.known[memo] = _describe_latest(ctx, family)
    return copy.deepcopy(ctx.known[memo])


def _describe_latest(ctx: Context, family: str) -> dict[str, Any] | None:
    try:
        data = ctx.aws.call("ecs", "describe_task_definition", f"read task definition family {family}",
                            taskDefinition=family, include=["TAGS"])
    except AwsError as exc:
        if exc.code in _MISSING_CODES:
            return None
        raise
    definition = dict(data.get("taskDefinition") or {})
    if not definition:
        return None
    if data.get("tags"):
        definition["tags"] = data["tags"]
    return definition


_CONTAINER_DEFAULTS: dict[str, Any] = {"cpu": 0, "essential": True, "versionConsistency": "enabled"}
_TOP_DEFAULTS: dict[str, Any] = {"enableFaultInjection": False}


def normalise(definition: dict[str, Any]) -> dict[str, Any]:
    """One form for a rendered definition and a registered revision (moto's and real ECS's alike)."""
    data = copy.deepcopy(definition)
    for key in READ_ONLY:
        data.pop(key, None)
    for key, default in _TOP_DEFAULTS.items():
        if data.get(key) == default:
            data.pop(key)
    # ECS stores "1 vCPU" / "2 GB" as units; compare in units.
    if isinstance(data.get("cpu"), str) and (cpu := template.parse_cpu(data["cpu"])) is not None:
        data["cpu"] = str(cpu)
    if isinstance(data.get("memory"), str) and (memory := template.parse_memory(data["memory"])) is not None:
        data["memory"] = str(memory)
    if isinstance(data.get("requiresCompatibilities"), list):
        data["requiresCompatibilities"] = sorted(data["requiresCompatibilities"])
    if isinstance(data.get("tags"), list):
        data["tags"] = sorted(data["tags"], key=lambda tag: str(tag.get("key")))
    for container in data.get("containerDefinitions") or []:
        if not isinstance(container, dict):
            continue
        for key, default in _CONTAINER_DEFAULTS.items():
            if container.get(key) == default:
                container.pop(key)
        for key in ("environment", "secrets"):
            if isinstance(container.get(key), list):
                container[key] = sorted(container[key], key=lambda item: str(item.get("name")))
        for mapping in container.get("portMappings") or []:
            # awsvpc: ECS fills hostPort = containerPort and protocol tcp.
            if mapping.get("protocol") == "tcp":
                mapping.pop("protocol")
            if mapping.get("hostPort") in (mapping.get("containerPort"), 0):
                mapping.pop("hostPort")
        for mount in (container.get("mountPoints") or []) + (container.get("volumesFrom") or []):
            if mount.get("readOnly") is False:
                mount.pop("readOnly")
    return _drop_empty(data)


def _drop_empty(value: Any) -> Any:
    """ECS answers [] / {} / null for what was never given: the same as absent."""
    if isinstance(value, dict):
        cleaned = {key: _drop_empty(item) for key, item in value.items()}
        return {key: item for key, item in cleaned.items() if item not in (None, [], {})}
    if isinstance(value, list):
        return [_drop_empty(item) for item in value]
    return value


def pretty(definition: dict[str, Any] | None) -> str:
    return "" if definition is None else json.dumps(definition, indent=2, sort_keys=True) + "\n"


def unified_diff(registered: dict[str, Any] | None, rendered: dict[str, Any], family: str) -> str:
    old = "/dev/null" if registered is None else f"{family}:{registered.get('revision')} (registered)"
    lines = difflib.unified_diff(
        pretty(None if registered is None else normalise(registered)).splitlines(keepends=True),
        pretty(normalise(rendered)).splitlines(keepends=True), fromfile=old, tofile=f"{family} (rendered)")
    return "".join(lines)


def diff_definition(ctx: Context, image: str | None) -> DiffResult:
    rendered = render_definition(ctx, image)
    with ctx.reporter.step(f"Reading the latest ACTIVE revision of {ctx.settings.family}"):
        registered = latest_active(ctx, ctx.settings.family)
    text = unified_diff(registered, rendered, ctx.settings.family)
    return DiffResult(changed=bool(text), diff=text)


# -- registering ----------------------------------------------------------------------------------
def register_task(ctx: Context, image: str | None) -> RegisterResult:
    family = ctx.settings.family
    plan: list[str] = []
    try:
        rendered = render_definition(ctx, image)
    except (ImageNotFound, SecretNotFound) as exc:
        if not ctx.dry_run:
            raise
        # A dry-run deploy renders before bootstrap and push-image have made anything: say so rather than fail.
        return RegisterResult("", None, True, plan=[f"register a new revision of {family} (not checked yet: "
                                                    f"{exc.message}; {exc.hint[:1].lower()}{exc.hint[1:]})"])
    with ctx.reporter.step(f"Reading the latest ACTIVE revision of {family}"):
        registered = latest_active(ctx, family)
    created_groups = ensure_log_groups(ctx, rendered, plan)
    if registered is not None and normalise(registered) == normalise(rendered):
        arn, revision = str(registered["taskDefinitionArn"]), int(registered["revision"])
        ctx.reporter.info(f"{family}:{revision} already matches the template: nothing to register")
        return RegisterResult(arn, revision, bool(created_groups), plan=plan if ctx.dry_run else [])
    diff = unified_diff(registered, rendered, family)
    next_revision = int(registered["revision"]) + 1 if registered else 1
    plan.append(f"register revision {next_revision} of {family}" if registered
                else f"register task definition family {family} (first revision)")
    if ctx.dry_run:
        return RegisterResult("", None, True, plan=plan, diff=diff)
    with ctx.reporter.step(f"Registering a new revision of {family}"):
        created = ctx.aws.call("ecs", "register_task_definition", f"register task definition {family}",
                               **rendered)["taskDefinition"]
    ctx.known.pop(f"task_definition:{family}", None)  # no longer the latest
    return RegisterResult(str(created["taskDefinitionArn"]), int(created["revision"]), True, plan=[], diff=diff)


def log_groups(definition: dict[str, Any]) -> list[tuple[str, str]]:
    """(group, region) of every awslogs container, region "" when the definition names none."""
    found: list[tuple[str, str]] = []
    for container in definition.get("containerDefinitions") or []:
        config = container.get("logConfiguration") or {}
        options = config.get("options") or {}
        if config.get("logDriver") == "awslogs" and options.get("awslogs-group"):
            entry = (str(options["awslogs-group"]), str(options.get("awslogs-region", "")))
            if entry not in found:
                found.append(entry)
    return found


def ensure_log_groups(ctx: Context, definition: dict[str, Any], plan: list[str]) -> list[str]:
    """Create the awslogs groups the definition names and that do not exist (plan only in a dry run)."""
    created: list[str] = []
    for group, region in log_groups(definition):
        if region and region != ctx.aws.region:
            ctx.reporter.warn(f"log group {group} is in {region}, not {ctx.aws.region}: not checked; create it "
                              "there if it is missing")
            continue
        if log_group_exists(ctx, group):
            continue
        plan.append(f"create CloudWatch log group {group}")
        if ctx.dry_run:
            continue
        with ctx.reporter.step(f"Creating log group {group}"):
            try:
                ctx.aws.call("logs", "create_log_group", f"create log group {group}", logGroupName=group)
            except AwsError as exc:
                if exc.code != "ResourceAlreadyExistsException":
                    raise
                continue  # created meanwhile by someone else: not our change
        created.append(group)
    return created


def log_group_exists(ctx: Context, group: str) -> bool:
    # A prefix lists every group below it: page through all of them, not just the first 50.
    found = ctx.aws.paginate("logs", "describe_log_groups", "logGroups", f"look up log group {group}",
                             logGroupNamePrefix=group)
    return any(item.get("logGroupName") == group for item in found)
