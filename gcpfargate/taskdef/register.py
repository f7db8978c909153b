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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

from gcpfargate.awsspec import sizes
from gcpfargate.core import plan as planning
from gcpfargate.core.context import Context
from gcpfargate.core.results import plan_json
from gcpfargate.credentials import wiring
from gcpfargate.credentials.key import secret
from gcpfargate.credentials.mode import mode_for
from gcpfargate.ecs import cluster as ecs
from gcpfargate.ecs import fargate_rules, logs
from gcpfargate.errors import GcpfargateError, ImageNotFound, SecretNotFound, TemplateError
from gcpfargate.iam import propagation, roles
from gcpfargate.image import images
from gcpfargate.taskdef import exported, template

# Fields describe_task_definition returns that RegisterTaskDefinition does not take.
READ_ONLY = exported.DESCRIBE_ONLY


@dataclass
class RegisterResult:
    task_definition_arn: str | None  # None: known after apply (a preview that would register)
    revision: int | None
    changed: bool
    plan: list[planning.Change] = field(default_factory=list)  # a preview's changes
    diff: str = ""  # registered vs rendered, for --dry-run

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "task_definition_arn": self.task_definition_arn,
            "revision": self.revision,
            "changed": self.changed,
        }
        if self.plan:
            data["plan"] = plan_json(self.plan)
        return data


@dataclass
class RenderResult:
    definition: dict[str, Any]  # exactly what register-task would send

    def to_json(self) -> dict[str, Any]:
        return self.definition


@dataclass
class DiffResult:
    changed: bool
    diff: str

    def to_json(self) -> dict[str, Any]:
        return {"changed": self.changed, "diff": self.diff}


# -- rendering ------------------------------------------------------------------------------------
def template_path(ctx: Context) -> Path:
    return Path(ctx.settings.task.template)


# Stand-ins for the values only AWS or a push can give, for `check_renders`: shaped like the real
# ones.
_STAND_INS = {
    "secret_arn": "arn:aws:secretsmanager:us-east-1:000000000000:secret:stand-in-AbCdEf",
    "execution_role_arn": "arn:aws:iam::000000000000:role/stand-in",
    "account_id": "000000000000",
    "image": "stand-in.invalid/image:tag",
    "image_digest": "sha256:" + "0" * 64,
}


def check_renders(ctx: Context, region: str = "") -> tuple[dict[str, Any], str]:
    """Render and validate the template with stand-ins for what bootstrap and push-image will make:
    a template error is reported before anything is created. Touches no AWS or GCP endpoint. Returns
    the definition and the region it was rendered for (`region`, else aws.region, else a stand-in).
    """
    settings = ctx.settings
    path = template_path(ctx)
    variables: dict[str, Any] = {
        **_STAND_INS,
        "region": region or settings.aws.region or "us-east-1",
        "family": settings.family,
        "credentials_path": settings.task.credentials_path,
        "credentials_env": settings.task.credentials_env,
        "vars": dict(settings.task.vars),
    }
    shape = template.input_shape(ctx.aws.service_model("ecs"))
    definition = accept(
        template.render(path, variables, env_vars=settings.task.env_vars),
        shape,
        template.shown(path),
    )
    _validate(definition, template.shown(path), shape, settings.task.credentials_env)
    tmpfs = fargate_rules.tmpfs_containers(definition)
    if settings.task.wire_credentials:
        fargate_rules.refuse_windows(definition, template.shown(path))
        # Wiring gives each target container a tmpfs for its key unless a writable mount covers it.
        tmpfs += wiring.tmpfs_targets(
            definition,
            settings.task.containers or None,
            str(variables.get("image") or ""),
            settings.task.credentials_path,
        )
    fargate_rules.refuse_tmpfs_platform(tmpfs, settings.run.platform_version, template.shown(path))
    if settings.task.wire_credentials and mode_for(settings).holds_keys:
        # What wiring would refuse in the template itself, before bootstrap or push writes.
        wiring.check_shell_startup(
            definition, settings.task.containers or None, str(variables.get("image") or "")
        )
    return definition, str(variables["region"])


def check_named_images(ctx: Context, definition: dict[str, Any]) -> None:
    """Before any cloud write: the ENTRYPOINT/CMD of each container task.containers names whose
    image is in a registry other than gcpfargate's (public ECR, Docker Hub, another account's
    ECR) and that sets no entryPoint, read as wiring will read it; a refused or missing read
    stops here, with the container named, instead of after a key was made. `definition` is
    check_renders' (its `{{ image }}` is the stand-in, which push-image makes)."""
    settings = ctx.settings
    if not settings.task.wire_credentials or not settings.task.containers:
        return
    stand_in = str(_STAND_INS["image"])
    names = set(wiring.target_names(definition, settings.task.containers, stand_in))
    for container in definition.get("containerDefinitions") or []:
        image = str(container.get("image") or "")
        if (
            container.get("name") not in names
            or container.get("entryPoint")
            or wiring.image_name(image) == wiring.image_name(stand_in)
            or images.in_registry(ctx, image)
        ):
            continue
        wiring.original_parts(container, lambda ref: images.run_config(ctx, ref))


def _validate(definition: dict[str, Any], where: str, shape: Any, credentials_env: str) -> None:
    """The shape first, then key text anywhere (the gravest mistake is named first), then what
    Fargate cannot run."""
    template.validate(definition, where, shape, fargate=False)
    wiring.check_environment(definition, credentials_env)
    template.validate(definition, where, shape)


def accept(data: dict[str, Any], shape: Any, where: str, reporter: Any = None) -> dict[str, Any]:
    """The rendered JSON as gcpfargate registers it: an export taken as it is meant
    (exported.accept) and FARGATE among its requiresCompatibilities, so ECS checks Fargate's rules
    at register. `reporter` (when given) is told what was dropped or added."""
    accepted = exported.accept(data, shape)
    definition = accepted.definition
    added = fargate_rules.ensure_fargate(definition)
    if reporter is not None:
        if accepted.warning():
            reporter.warn(f"{where}: {accepted.warning()}")
        if added:
            reporter.info(
                f"{where}: FARGATE added to requiresCompatibilities (gcpfargate runs tasks on "
                "Fargate; ECS checks its rules when it registers the definition)"
            )
    return definition


def render_definition(
    ctx: Context,
    image: str | None,
    secret_arn: str | None = None,
    show_rendered: bool = False,
    role_arn: str | None = None,
    local: images.ResolvedImage | None = None,
) -> dict[str, Any]:
    """The final task definition register-task would send: rendered, wired, validated. Reads only.

    `secret_arn` and `role_arn` (the execution role's) are passed when the caller knows them
    (deploy: from bootstrap); else they are read.
    Without `image` and image.tag, the image of the family's latest ACTIVE revision is used (a
    derived tag is in no config). `show_rendered` logs the rendered text, numbered, when it is not
    JSON."""
    settings = ctx.settings
    settings.require("task.family")
    path = template_path(ctx)
    wire = settings.task.wire_credentials
    mode = mode_for(settings)
    needed = template.used_variables(path)
    if wire:
        needed |= mode.template_needs()

    variables: dict[str, Any] = {
        "family": settings.family,
        "credentials_path": settings.task.credentials_path,
        "credentials_env": settings.task.credentials_env,
        "vars": dict(settings.task.vars),
    }
    # Only what the template uses is looked up (a template without secret_arn needs no secret), in
    # the order a user fixes them: bootstrap's secret before push-image's image.
    lookups = {
        "secret_arn": lambda: secret_arn or secret.require_arn(ctx, settings.secret_name),
        "execution_role_arn": lambda: role_arn or roles.execution_role_arn(ctx),
        "region": lambda: ctx.aws.region,
        "account_id": lambda: ctx.aws.account_id,
    }
    for name, lookup in lookups.items():
        if name in needed:
            variables[name] = lookup()
    resolved: images.ResolvedImage | None = None
    if needed & {"image", "image_digest"}:
        # `local`: an image only the local engine holds (run-local --build), with its own config.
        resolved = local or images.resolve_image(ctx, image or images.registered_image(ctx))
        variables.update(image=resolved.reference, image_digest=resolved.digest)
    else:
        ctx.reporter.warn(
            f"{template.shown(path)} does not use {{{{ image }}}} or {{{{ image_digest }}}}: the "
            "image push-image builds is not the one this definition runs"
        )

    with ctx.reporter.step(f"Rendering {template.shown(path)}"):
        text = template.render_text(path, variables, env_vars=settings.task.env_vars)
    try:
        definition = template.parse_json(text, path)
    except TemplateError:
        if show_rendered:
            width = len(str(text.count("\n") + 1))
            for number, line in enumerate(text.splitlines(), start=1):
                ctx.reporter.log(f"{number:>{max(width, 4)}} | {line}")
        raise
    # Validate first: wiring relies on containerDefinitions being a list of objects.
    shape = template.input_shape(ctx.aws.service_model("ecs"))
    definition = accept(definition, shape, template.shown(path), ctx.reporter)
    _validate(definition, template.shown(path), shape, variables["credentials_env"])
    if wire:
        fargate_rules.refuse_windows(definition, template.shown(path))
    if wire:
        definition = mode.wire(
            ctx,
            definition,
            variables=variables,
            image_config=lambda ref: images.run_config(ctx, ref, resolved),
            shown=template.shown(path),
            image_user=lambda ref: images.configured_user(ctx, ref, resolved),
        )
    else:
        wiring.check_environment(definition, variables["credentials_env"])
    if fargate_rules.missing_execution_role(definition, lambda: ctx.registry.host):
        # ECS refuses secrets, ECR images and awslogs without one: the configured role, else
        # bootstrap's.
        definition["executionRoleArn"] = (
            variables.get("execution_role_arn") or role_arn or roles.execution_role_arn(ctx)
        )
    fargate_rules.refuse_tmpfs_platform(
        fargate_rules.tmpfs_containers(definition),
        settings.run.platform_version,
        template.shown(path),
    )
    for warning in fargate_rules.empty_environment(definition):
        ctx.reporter.warn(warning)
    template.validate(definition, template.shown(path), shape)
    if definition.get("family") != settings.family:
        raise TemplateError(
            f"{template.shown(path)}: family is {definition.get('family')!r}, but task.family is "
            f"{settings.family!r}",
            'Use "family": {{ family | tojson }}',
        )
    return definition


# -- comparing ------------------------------------------------------------------------------------
_CONTAINER_DEFAULTS: dict[str, Any] = {"cpu": 0, "essential": True, "versionConsistency": "enabled"}
_TOP_DEFAULTS: dict[str, Any] = {"enableFaultInjection": False}


def normalise(definition: dict[str, Any]) -> dict[str, Any]:
    """One form for a rendered definition and a registered revision (moto's and real ECS's
    alike)."""
    data = copy.deepcopy(definition)
    for key in READ_ONLY:
        data.pop(key, None)
    for key, default in _TOP_DEFAULTS.items():
        if data.get(key) == default:
            data.pop(key)
    # ECS stores "1 vCPU" / "2 GB" as units; compare in units.
    if isinstance(data.get("cpu"), str) and (cpu := sizes.parse_cpu(data["cpu"])) is not None:
        data["cpu"] = str(cpu)
    if (
        isinstance(data.get("memory"), str)
        and (memory := sizes.parse_memory(data["memory"])) is not None
    ):
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
    fargate_rules.drop_ecs_defaults(data)
    cleaned: dict[str, Any] = _drop_empty(data)
    return cleaned


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
    old = (
        "/dev/null" if registered is None else f"{family}:{registered.get('revision')} (registered)"
    )
    lines = difflib.unified_diff(
        pretty(None if registered is None else normalise(registered)).splitlines(keepends=True),
        pretty(normalise(rendered)).splitlines(keepends=True),
        fromfile=old,
        tofile=f"{family} (rendered)",
    )
    return "".join(lines)


def diff_definition(ctx: Context, image: str | None) -> DiffResult:
    rendered = render_definition(ctx, image)
    with ctx.reporter.step(f"Reading the latest ACTIVE revision of {ctx.settings.family}"):
        registered = ecs.latest_active(ctx, ctx.settings.family)
    text = unified_diff(registered, rendered, ctx.settings.family)
    return DiffResult(changed=bool(text), diff=text)


# -- registering ----------------------------------------------------------------------------------
def check_runs_pushed(definition: dict[str, Any], pushed: str, where: str) -> None:
    """`deploy` pushed `pushed`: refuse to register a definition that runs another image."""
    host, repository, _, _ = images.split_image(pushed)
    name = f"{host}/{repository}" if host else repository
    if any(
        str(c.get("image", "")).startswith((name + ":", name + "@"))
        for c in definition.get("containerDefinitions") or []
    ):
        return
    raise TemplateError(
        f"deploy pushed {pushed}, but {where} runs no image of {name} (it does not use "
        "{{ image }}): the new image would never run",
        'Use "image": {{ image | tojson }} in the container that runs your code '
        "(or push-image and register-task separately)",
    )


def _secret_arns(definition: dict[str, Any]) -> list[str]:
    """The Secrets Manager secrets the definition's containers read (valueFrom without its
    suffix)."""
    arns = {
        str(item.get("valueFrom", ""))
        for container in definition.get("containerDefinitions", [])
        for item in container.get("secrets", [])
    }
    return sorted(
        ":".join(arn.split(":")[:7])
        for arn in arns
        if arn.startswith("arn:") and ":secretsmanager:" in arn
    )


def register_task(
    ctx: Context,
    image: str | None,
    secret_arn: str | None = None,
    latest: ecs.LatestRevision | None = None,
    pushed: str = "",
    role_arn: str | None = None,
) -> RegisterResult:
    """Register the rendered definition unless the latest revision already matches it. `deploy`
    passes the secret's and the execution role's ARNs from bootstrap and the `latest` revision
    push-image read, so none is read twice (the role's ARN would otherwise cost an STS
    GetCallerIdentity)."""
    family = ctx.settings.family
    mark = ctx.plan.mark()
    try:
        rendered = render_definition(ctx, image, secret_arn, role_arn=role_arn)
    except (ImageNotFound, SecretNotFound) as exc:
        return _unchecked(ctx, mark, exc)
    if pushed:
        check_runs_pushed(rendered, pushed, template.shown(template_path(ctx)))
    if latest is not None:
        registered = latest.definition
    else:
        with ctx.reporter.step(f"Reading the latest ACTIVE revision of {family}"):
            registered = ecs.latest_active(ctx, family)
    created_groups = _ensure_log_groups(ctx, rendered)
    if registered is not None and normalise(registered) == normalise(rendered):
        arn, revision = str(registered["taskDefinitionArn"]), int(registered["revision"])
        ctx.reporter.info(f"{family}:{revision} already matches the template: nothing to register")
        return RegisterResult(arn, revision, bool(created_groups), plan=ctx.plan.shown(mark))
    diff = unified_diff(registered, rendered, family)
    previous = int(registered["revision"]) if registered else None
    change = planning.create(
        "task definition",
        family,
        f"register revision {previous + 1} of {family}"
        if previous
        else f"register task definition family {family} (first revision)",
        after={"revision": (previous or 0) + 1},
    )
    created = ctx.plan.change(change, lambda: _register(ctx, family, rendered))
    if created is None:  # known after apply
        return RegisterResult(None, None, True, plan=ctx.plan.shown(mark), diff=diff)
    # Record the family on the secrets it reads (deploy's bootstrap did that for its own secret).
    for arn in _secret_arns(rendered) if secret_arn is None else []:
        secret.note_family(ctx, arn, family)
    return RegisterResult(
        str(created["taskDefinitionArn"]), int(created["revision"]), True, plan=[], diff=diff
    )


def _register(ctx: Context, family: str, rendered: dict[str, Any]) -> dict[str, Any]:
    with ctx.reporter.step(f"Registering a new revision of {family}"):
        # Right after bootstrap made or changed the execution role, ECS may not see it yet
        # (iam:PassRole).
        created: dict[str, Any] = propagation.retry_while(
            lambda: ctx.aws.call(
                "ecs", "register_task_definition", f"register task definition {family}", **rendered
            ),
            propagation.pass_role_refused,
            ctx.reporter,
            f"register task definition {family}",
        )["taskDefinition"]
    return created


def _unchecked(ctx: Context, mark: int, missing: ImageNotFound | SecretNotFound) -> RegisterResult:
    """A registration whose secret or image bootstrap or push-image has yet to make (a preview of
    `deploy` on a fresh project): the log groups the template names (rendered with stand-ins for
    what is missing) and the registration, not checked yet. Each is planned with the error as its
    write, so applying any of them is that error, raised before anything is written."""

    def refuse() -> NoReturn:
        raise missing

    family = ctx.settings.family
    # Which log groups are missing, read without writing: a private preview of those changes.
    reading = copy.copy(ctx)
    reading.plan = planning.Plan(apply=False)
    try:
        _ensure_log_groups(reading, check_renders(ctx, ctx.aws.region)[0])
    except GcpfargateError as exc:  # the registration's own error is the one to report
        ctx.reporter.detail(f"log groups not checked: {exc.message}")
    text = (
        f"register a new revision of {family} (not checked yet: "
        f"{missing.message}; {missing.hint[:1].lower()}{missing.hint[1:]})"
    )
    for change in [*reading.plan.changes, planning.create("task definition", family, text)]:
        ctx.plan.change(change, refuse)
    return RegisterResult(None, None, True, plan=ctx.plan.shown(mark))


def _ensure_log_groups(ctx: Context, definition: dict[str, Any]) -> list[str]:
    """The awslogs groups the definition names, created when missing (ecs/logs.py); each a change
    on `ctx.plan`. The groups this run created."""
    return logs.ensure_log_groups(ctx, definition)
