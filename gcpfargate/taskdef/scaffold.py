"""`init`: write a starter gcpfargate.toml and task-definition template, or import an existing
family.

Importing (`--from-family`) turns a registered revision back into a template: read-only fields are
stripped, gcpfargate's own wiring is removed (register-task adds it again), and the family, image,
execution role, secret and region become template variables, so `render` gives back the same
definition. Nothing is overwritten without `force`.
"""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from gcpfargate.config import CONFIG_FILE
from gcpfargate.core import plan as planning
from gcpfargate.core.context import Context
from gcpfargate.core.results import plan_json
from gcpfargate.credentials import wiring
from gcpfargate.credentials.key import secret
from gcpfargate.ecs import cluster as ecs
from gcpfargate.errors import ConfigError, GcpfargateError, TaskDefinitionNotFound
from gcpfargate.image import images
from gcpfargate.taskdef import exported, recipe, template
from gcpfargate.taskdef import register as taskdef

TEMPLATE_FILE = "task-definition.json.j2"
AUTH_MODES = ("key", "keyless")
_SENTINEL = "@@gcpfargate:{}@@"


@dataclass
class ScaffoldResult:
    files: list[str]
    plan: list[planning.Change] = field(default_factory=list)  # a preview's changes

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"files": self.files}
        if self.plan:
            data["plan"] = plan_json(self.plan)
        return data


@dataclass
class Answers:
    """What goes into gcpfargate.toml; empty strings are left for the user to fill in."""

    family: str
    project: str = ""
    service_account: str = ""
    region: str = ""
    repository: str = ""
    auth: str = "key"  # gcp.auth
    platform: str = "linux/amd64"
    secret_name: str = ""
    execution_role_arn: str = ""
    credentials_path: str = "/tmp/gcp/credentials.json"
    credentials_env: str = "GCP_CREDENTIALS_JSON"
    containers: list[str] = field(default_factory=list)
    template: str = TEMPLATE_FILE
    vars: dict[str, str] = field(
        default_factory=dict
    )  # [task.vars], e.g. an image outside the registry
    notes: list[str] = field(default_factory=list)  # written as comments above [task.vars]


def packaged(name: str) -> str:
    return resources.files("gcpfargate.templates").joinpath(name).read_text(encoding="utf-8")


def family_from_directory(directory: Path) -> str:
    name = re.sub(r"[^A-Za-z0-9_-]+", "-", directory.resolve().name).strip("-")[:255]
    return name or "app"


def init(
    ctx: Context,
    directory: Path,
    answers: Answers,
    from_family: str | None = None,
    force: bool = False,
) -> ScaffoldResult:
    targets = [directory / CONFIG_FILE, directory / answers.template]
    existing = [path.name for path in targets if path.exists()]
    if existing and not force:
        raise ConfigError(
            f"{' and '.join(existing)} already exist{'s' if len(existing) == 1 else ''} in "
            f"{directory}",
            "Pass --force to overwrite, or run init in another directory",
        )
    template_text = (
        import_family(ctx, from_family, answers) if from_family else packaged(TEMPLATE_FILE)
    )
    config_text = render_config(answers)
    mark = ctx.plan.mark()
    for path, text in zip(targets, (config_text, template_text), strict=True):
        change = (
            planning.update("file", str(path), f"write {path}")
            if path.exists()
            else planning.create("file", str(path), f"write {path}")
        )
        ctx.plan.change(change, functools.partial(path.write_text, text, encoding="utf-8"))
    return ScaffoldResult(files=[str(path) for path in targets], plan=ctx.plan.shown(mark))


STARTER_DOCKERFILE = (
    """\
# A starter image for a Python job; replace with your own. The key file arrives at start """
    """(never here).
FROM python:3.12-slim
WORKDIR /app
COPY . .
RUN if [ -f requirements.txt ]; then pip install --no-cache-dir -r requirements.txt; fi
CMD ["python", "main.py"]
"""
)


STARTER_MAIN = """\
# The job the starter Dockerfile runs. Google's client libraries find the service account's
# credentials through GOOGLE_APPLICATION_CREDENTIALS, which gcpfargate sets in the task.
import os


def main() -> None:
    print("hello from gcpfargate; credentials at", os.environ.get("GOOGLE_APPLICATION_CREDENTIALS"))


if __name__ == "__main__":
    main()
"""


def write_starter_dockerfile(directory: Path) -> list[Path]:
    """The starter Dockerfile and the main.py it runs (an existing main.py is kept)."""
    path = directory / "Dockerfile"
    path.write_text(STARTER_DOCKERFILE, encoding="utf-8")
    written = [path]
    main = directory / "main.py"
    if not main.exists():
        main.write_text(STARTER_MAIN, encoding="utf-8")
        written.append(main)
    return written


def next_steps(answers: Answers, has_dockerfile: bool, region_known: bool) -> str:
    """What the user must still do after init, in order, ending with the command to run."""
    todo = [
        f"set {name}"
        for name, value in (
            ("gcp.project", answers.project),
            ("gcp.service_account", answers.service_account),
            ("aws.region", answers.region or region_known),
        )
        if not value
    ]
    if todo:
        todo[-1] = todo[-1] + f" in {CONFIG_FILE}"
    if not has_dockerfile:
        todo.append("write a Dockerfile")
    text = (
        ", ".join(todo) + ", then run `gcpfargate deploy`." if todo else "run `gcpfargate deploy`."
    )
    return text[0].upper() + text[1:]


def render_config(answers: Answers) -> str:
    from jinja2 import StrictUndefined
    from jinja2.sandbox import SandboxedEnvironment

    environment = SandboxedEnvironment(undefined=StrictUndefined, keep_trailing_newline=True)
    # A JSON string is a valid TOML basic string, and a JSON list of strings a valid TOML array.
    environment.filters["toml"] = lambda value: json.dumps(value, ensure_ascii=False)
    return environment.from_string(packaged("gcpfargate.toml.j2")).render(**vars(answers))


def import_family(ctx: Context, family: str, answers: Answers) -> str:
    """The template text for the latest ACTIVE revision of `family`; fills `answers` from it."""
    with ctx.reporter.step(f"Reading task definition {family}"):
        registered = ecs.describe_task_definition(ctx, family, tags=True)
    if registered is None:
        raise TaskDefinitionNotFound(
            f"task definition {family} does not exist (or has no ACTIVE revision)",
            "Check the name and region (--region), or run init without --from-family",
        )
    # The rules an exported template follows (Describe-only fields, null and "" for absent).
    shape = template.input_shape(ctx.aws.service_model("ecs"))
    definition = exported.accept(registered, shape).definition
    # A family built the old way may carry the key in a plain variable: never copy that to disk.
    wiring.check_environment(definition, answers.credentials_env)
    recipe_secrets: list[str] = []
    for container in definition.get("containerDefinitions") or []:
        unwrapped = wiring.unwrap(container)
        if unwrapped is not None:
            answers.credentials_env, answers.credentials_path = (
                unwrapped.credentials_env,
                unwrapped.credentials_path,
            )
        found = recipe.recognise(container)
        if (
            found is not None
        ):  # the hand-built `echo "$KEY" > file && exec …`: strip it, keep its settings
            recipe.strip(container, found)
            answers.credentials_env, answers.credentials_path = (
                found.credentials_env,
                found.credentials_path,
            )
            recipe_secrets.append(found.secret_arn)
    definition, secret_arns = wiring.unwire(
        definition, lambda image: _image_config_or_none(ctx, image)
    )
    secret_arns = [*recipe_secrets, *secret_arns]
    if secret_arns:
        _account_from_key(ctx, _secret_name(secret_arns[0]), answers)
    definition = taskdef.normalise(definition)

    placeholders: dict[str, str] = {"family": "family"}
    definition["family"] = _SENTINEL.format("family")
    role = str(definition.get("executionRoleArn", ""))
    if role:
        definition["executionRoleArn"] = _SENTINEL.format("execution_role_arn")
        placeholders["execution_role_arn"] = "execution_role_arn"
        if not role.endswith(f":role/gcpfargate-{family}-execution"):
            answers.execution_role_arn = role
    _replace_image(ctx, definition, answers, placeholders)
    for secret_arn in dict.fromkeys(secret_arns):
        _replace_value_from(definition, secret_arn, placeholders)
        answers.secret_name = _secret_name(secret_arn)
    answers.secret_name = _secret_name(secret_arns[0]) if secret_arns else answers.secret_name
    region = _region(ctx)
    for container in definition.get("containerDefinitions") or []:
        options = (container.get("logConfiguration") or {}).get("options") or {}
        if region and options.get("awslogs-region") == region:
            options["awslogs-region"] = _SENTINEL.format("region")
            placeholders["region"] = "region"
    arch = (definition.get("runtimePlatform") or {}).get("cpuArchitecture")
    if arch:
        answers.platform = f"linux/{images.ecs_arch(arch)}"
    for note in answers.notes:
        ctx.reporter.info(f"note: {note}")
    return to_template(definition, placeholders)


def to_template(definition: dict[str, Any], placeholders: dict[str, str]) -> str:
    text = json.dumps(definition, indent=2, ensure_ascii=False)
    # Literal text that Jinja would read as a tag ({{, {%, {#) is written as an expression
    # printing "{".
    text = re.sub(r"\{(?=[{%#])", "{{ '{' }}", text)
    for name, variable in placeholders.items():
        text = text.replace(json.dumps(_SENTINEL.format(name)), "{{ " + variable + " | tojson }}")
    return text + "\n"


def _replace_image(
    ctx: Context, definition: dict[str, Any], answers: Answers, placeholders: dict[str, str]
) -> None:
    containers = definition.get("containerDefinitions") or []
    main = next(
        (c for c in containers if c.get("essential", True)), containers[0] if containers else None
    )
    if main is None or not main.get("image"):
        return
    host, repository, _, _ = images.split_image(str(main["image"]))
    try:
        ours = bool(host) and host == ctx.registry.host
    except GcpfargateError:
        ours = False
    if not ours:
        # `image` always means gcpfargate's registry: an image from elsewhere becomes `vars.image`,
        # with a note, so the first render works and the user decides whether to push it to ECR
        # later.
        answers.vars["image"] = str(main["image"])
        answers.notes.append(
            f"image {main['image']} is outside the registry: kept as task.vars.image; use "
            "{{ image }} in the template to deploy your own build"
        )
        for container in containers:
            if container.get("image") == main["image"]:
                container["image"] = _SENTINEL.format("vars.image")
                placeholders["vars.image"] = "vars.image"
        return
    answers.repository = repository
    for container in containers:
        if images.split_image(str(container.get("image", "")))[:2] == (host, repository):
            container["image"] = _SENTINEL.format("image")
            placeholders["image"] = "image"


def _account_from_key(ctx: Context, secret_name: str, answers: Answers) -> None:
    """gcp.project and gcp.service_account from the stored key's client_email, when it can be read.
    Only that address is kept; the key itself is never written anywhere."""
    if answers.project and answers.service_account:
        return
    try:
        state = secret.read(ctx, secret_name)
    except GcpfargateError:
        return
    if state is None or state.key is None:
        return
    project, email = recipe.account_of(state.key.client_email)
    answers.service_account = answers.service_account or email
    answers.project = answers.project or project


def _replace_value_from(
    definition: dict[str, Any], secret_arn: str, placeholders: dict[str, str]
) -> None:
    for container in definition.get("containerDefinitions") or []:
        for item in container.get("secrets") or []:
            if item.get("valueFrom") == secret_arn:
                item["valueFrom"] = _SENTINEL.format("secret_arn")
                placeholders["secret_arn"] = "secret_arn"


def _secret_name(secret_arn: str) -> str:
    # arn:aws:secretsmanager:REGION:ACCOUNT:secret:NAME-AbCdEf
    # (Secrets Manager appends 6 characters)
    name = secret_arn.split(":secret:", 1)[-1]
    return re.sub(r"-[A-Za-z0-9]{6}$", "", name)


def _region(ctx: Context) -> str:
    try:
        return ctx.aws.region
    except GcpfargateError:
        return ""


def _image_config_or_none(ctx: Context, image: str) -> dict[str, Any] | None:
    """The image's config when the registry has it; None means "keep the argv explicit"."""
    try:
        found = images.held(ctx, image) if images.in_registry(ctx, image) else None
    except GcpfargateError:
        return None
    return None if found is None else found.run_config
