"""`run-local`: start the task's essential container on the local engine the way Fargate would.

Fargate resolves `secrets[].valueFrom` with the *execution role*, pulls the image, and starts the
container with the definition's entryPoint, command, environment, workingDirectory and user. This
does the same with the caller's credentials, after judging whether the execution role could read
each secret (a task that would fail on Fargate fails here first). The container gets network
`none` unless asked for `bridge` or `host`, and is always removed afterwards. It follows
`readonlyRootFilesystem` and mounts the task's own volumes as tmpfs; the credentials directory is a
tmpfs (or lies in one of those volumes), so the key file never reaches the engine's disk.

Secret values never enter the container's config: the engine shows that config to `docker
inspect` and stores it on its disk (config.v2.json). Instead the container starts a rehearsal
pre-step (`PRESTEP`) that reads the values from its stdin, which the engine passes through without
storing, exports them, and then execs the task's own entryPoint and command. Inside the container
the process tree and environment are then those of Fargate: the gcpfargate wrapper still finds the
key in the credentials_env variable and writes the file itself.
"""

from __future__ import annotations

import json
import posixpath
import re
from dataclasses import dataclass, field
from typing import Any

from gcpfargate.core.context import Context
from gcpfargate.credentials import wiring
from gcpfargate.credentials.mode import delivery_of
from gcpfargate.credentials.wiring import sh_quote
from gcpfargate.ecs import cluster as ecs
from gcpfargate.ecs import fargate_rules
from gcpfargate.ecs.overrides import TaskOverrides
from gcpfargate.errors import ConfigError, OperationError
from gcpfargate.iam import policy, roles
from gcpfargate.image.images import ResolvedImage

# none: no network; bridge: the engine's default network (egress, nothing reachable from the host);
# host: the host's own network. Never a network of the engine's that others' containers share.
NETWORKS = ("none", "bridge", "host")
PRESTEP_NAME = "gcpfargate-run-local"  # $0 of the pre-step: what `ps` and its messages show
END_OF_SECRETS = "# gcpfargate end of secrets"
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# POSIX sh only (`read`, `eval`, `exec` are built in): it must run in any image that has /bin/sh, as
# the Fargate wrapper does. The values arrive as `export NAME='value'` lines that gcpfargate quoted
# itself; the end marker tells a complete delivery from a container whose stdin closed early.
PRESTEP = "\n".join(
    [
        "payload=''",
        "complete=''",
        "while IFS= read -r line; do",
        f"  if [ \"$line\" = '{END_OF_SECRETS}' ]; then complete=1; break; fi",
        '  payload="$payload$line',
        '"',
        "done",
        'if [ -z "$complete" ]; then',
        f'  echo "{PRESTEP_NAME}: the secrets did not arrive on stdin" >&2',
        "  exit 125",
        "fi",
        'eval "$payload"',
        "unset payload complete line",
        # Fargate gives the task no stdin: neither does the rehearsal once the secrets are read.
        'exec "$@" </dev/null',
        "",
    ]
)


@dataclass
class ContainerSpec:
    """Everything the engine needs to start the container; `stdin` may hold secret values.

    `stdin` is written to the container's stdin once it has started and is never part of its config.
    """

    image: str
    name: str
    entrypoint: list[str] | None
    command: list[str] | None
    environment: dict[str, str]
    working_dir: str | None
    user: str | None
    network: str
    tmpfs: dict[str, str]
    secrets: dict[str, str] = field(
        default_factory=dict, repr=False
    )  # for redaction; delivered via `stdin`
    stdin: bytes = field(default=b"", repr=False)
    read_only: bool = False  # the task's readonlyRootFilesystem


@dataclass
class RunLocalResult:
    exit_code: int
    container: str
    image: str

    def to_json(self) -> dict[str, Any]:
        return {"exit_code": self.exit_code}


@dataclass(frozen=True)
class SecretRef:
    """A parsed `valueFrom`: a Secrets Manager secret (with optional json-key/stage/version) or an
    SSM parameter."""

    service: str  # "secretsmanager" or "ssm"
    secret_id: str
    json_key: str = ""
    version_stage: str = ""
    version_id: str = ""


def parse_value_from(value_from: str) -> SecretRef:
    if value_from.startswith("arn:") and ":secretsmanager:" in value_from:
        parts = value_from.split(":")
        # arn:aws:secretsmanager:region:account:secret:name-AbCdEf, then optionally
        # [:json-key[:version-stage[:version-id]]]
        if len(parts) < 7 or parts[5] != "secret":
            raise ConfigError(f"valueFrom {value_from} is not a Secrets Manager secret ARN")
        extra = [*parts[7:], "", "", ""]
        return SecretRef("secretsmanager", ":".join(parts[:7]), extra[0], extra[1], extra[2])
    if value_from.startswith("arn:") and ":ssm:" in value_from:
        return SecretRef("ssm", value_from)
    if value_from.startswith("arn:"):
        raise ConfigError(
            f"valueFrom {value_from} is neither a Secrets Manager nor an SSM parameter ARN"
        )
    return SecretRef("ssm", value_from)  # ECS accepts a parameter name in the task's own region


def resolve_secret(ctx: Context, name: str, ref: SecretRef) -> str:
    if ref.service == "ssm":
        found = ctx.aws.find(
            "ssm",
            "get_parameter",
            "ParameterNotFound",
            f"read SSM parameter {ref.secret_id} for {name}",
            Name=ref.secret_id,
            WithDecryption=True,
        )
        if found is None:
            raise OperationError(
                f"secret {name}: SSM parameter {ref.secret_id} does not exist",
                "Fix valueFrom or create the parameter",
            )
        return str(found["Parameter"]["Value"])
    params: dict[str, Any] = {"SecretId": ref.secret_id}
    if ref.version_id:
        params["VersionId"] = ref.version_id
    else:
        # What ECS reads when valueFrom names no stage; said explicitly (moto's stage-less read
        # ignores UpdateSecretVersionStage, which rotate-key uses to make a key current).
        params["VersionStage"] = ref.version_stage or "AWSCURRENT"
    value = ctx.aws.find(
        "secretsmanager",
        "get_secret_value",
        "ResourceNotFoundException",
        f"read secret {ref.secret_id} for {name}",
        **params,
    )
    if value is None:
        raise OperationError(
            f"secret {name}: {ref.secret_id} does not exist (or has no such version)",
            "Run gcpfargate bootstrap, or fix valueFrom in the task definition",
        )
    text = value.get("SecretString")
    if text is None:
        raise OperationError(
            f"secret {name}: {ref.secret_id} holds binary data, which ECS cannot inject"
        )
    if not ref.json_key:
        return str(text)
    try:
        document = json.loads(text)
    except ValueError:
        raise OperationError(
            f"secret {name}: json-key {ref.json_key} asked for, but the value is not JSON"
        ) from None
    if not isinstance(document, dict) or ref.json_key not in document:
        raise OperationError(f"secret {name}: the secret's JSON has no key {ref.json_key}")
    item = document[ref.json_key]
    return item if isinstance(item, str) else json.dumps(item)


def load_definition(
    ctx: Context,
    from_template: bool,
    revision: int | None = None,
    local: ResolvedImage | None = None,
) -> dict[str, Any]:
    if from_template or local is not None:
        from gcpfargate.taskdef.register import render_definition

        return render_definition(ctx, None, local=local)
    return ecs.require_task_definition(
        ctx, ctx.settings.family, revision, f"{ecs.REGISTER_HINT}, or use --from-template"
    )


def build_local(ctx: Context) -> ResolvedImage:
    """run-local --build: the local build context built as push-image builds it (the same settings,
    the same key guard on the context and on the image's layers), left on the local engine only."""
    from gcpfargate.image.push import build_image, guard, scan_image

    built = build_image(ctx, action="run it locally")
    image = f"{built.name}:{built.tag}"
    with ctx.reporter.step(f"Searching the layers of {image} for key files"):
        found = scan_image(ctx, built.image_id)
    guard(ctx, found, f"image {image}", False, action="run it locally")
    config = dict((ctx.docker.inspect(built.image_id) or {}).get("Config") or {})
    return ResolvedImage(reference=image, digest="", config=config)


def essential_container(definition: dict[str, Any], name: str | None) -> dict[str, Any]:
    containers: list[dict[str, Any]] = definition.get("containerDefinitions", [])
    if not name:  # the job's container, not a sidecar listed before it
        containers = wiring.app_containers(definition)
    for container in containers:
        if not name or container.get("name") == name:
            return container
    wanted = f"container {name}" if name else "an essential container"
    raise ConfigError(f"the task definition has no {wanted}")


def check_role_can_read(
    ctx: Context, definition: dict[str, Any], container: dict[str, Any]
) -> None:
    """Fail like Fargate would when the execution role cannot read a secret."""
    role_arn = definition.get("executionRoleArn")
    secrets = container.get("secrets", [])
    if not secrets:
        return
    if not role_arn:
        raise OperationError(
            "the task definition has secrets but no executionRoleArn: Fargate cannot fetch them",
            "Set executionRoleArn (bootstrap creates one)",
        )
    documents = roles.role_documents(ctx, roles.role_name_from_arn(role_arn))
    for item in secrets:
        ref = parse_value_from(item["valueFrom"])
        action = (
            "secretsmanager:GetSecretValue"
            if ref.service == "secretsmanager"
            else "ssm:GetParameters"
        )
        resource = (
            ref.secret_id
            if ref.secret_id.startswith("arn:")
            else (
                f"arn:{ctx.aws.partition()}:ssm:{ctx.aws.region}:{ctx.aws.account_id}:"
                f"parameter/{ref.secret_id.lstrip('/')}"
            )
        )
        verdict = policy.judge(documents, action, resource)
        if verdict.decision in (policy.Decision.DENIED, policy.Decision.NOT_ALLOWED):
            raise OperationError(
                f"on Fargate this task would fail to start: execution role "
                f"{roles.role_name_from_arn(role_arn)} may not read secret {item['name']} "
                f"({verdict.reason})",
                "Run gcpfargate bootstrap --grant, or fix the role's policy",
            )


def secrets_payload(secrets: dict[str, str]) -> bytes:
    """What the pre-step reads from stdin: one `export NAME='value'` per secret, then the end
    marker."""
    lines = []
    for name, value in secrets.items():
        if not _NAME.fullmatch(name) or "\x00" in value or END_OF_SECRETS in value:
            # ECS refuses such a name at registration; a NUL cannot be in an environment at all;
            # the marker inside a value would end the delivery early.
            raise ConfigError(f"secret {name!r} cannot be passed as an environment variable")
        lines.append(f"export {name}={sh_quote(value)}")
    return ("\n".join([*lines, END_OF_SECRETS]) + "\n").encode()


def process_argv(container: dict[str, Any], image_config: dict[str, Any]) -> list[str]:
    """The argv the engine would run, merged as Docker does: a task entryPoint drops the image's
    CMD."""
    entrypoint, command = container.get("entryPoint") or [], container.get("command") or []
    if entrypoint:
        return [*entrypoint, *command]
    return [*(image_config.get("Entrypoint") or []), *(command or image_config.get("Cmd") or [])]


def container_spec(
    ctx: Context, definition: dict[str, Any], container: dict[str, Any], network: str
) -> ContainerSpec:
    environment = {
        item["name"]: str(item.get("value", "")) for item in container.get("environment", [])
    }
    region = ctx.aws.region
    # Fargate adds these to every container.
    environment.setdefault("AWS_REGION", region)
    environment.setdefault("AWS_DEFAULT_REGION", region)
    environment.setdefault("AWS_EXECUTION_ENV", "AWS_ECS_FARGATE")
    secrets = {
        item["name"]: resolve_secret(ctx, item["name"], parse_value_from(item["valueFrom"]))
        for item in container.get("secrets", [])
    }
    for name in secrets:
        environment.pop(
            name, None
        )  # the secret's value wins over an environment entry of that name
    # The task's own writable mounts become tmpfs (Fargate's task volumes start empty). A read-only
    # root gets nothing else, so the rehearsal fails where Fargate would; otherwise the
    # credentials directory is a tmpfs too, so the key file never reaches the engine's disk.
    read_only = bool(container.get("readonlyRootFilesystem"))
    tmpfs = {path: "rw,mode=0755" for path in fargate_rules.writable_mounts(container)}
    # The definition's own tmpfs mounts (the key's, with its mode and owner, among
    # them), as Fargate mounts them: size in MiB, the mount options as given.
    for mount in (container.get("linuxParameters") or {}).get("tmpfs") or []:
        if mount.get("containerPath"):
            size = [f"size={int(mount['size'])}m"] if mount.get("size") else []
            options = ["rw", *size, *(str(o) for o in mount.get("mountOptions") or [])]
            tmpfs[str(mount["containerPath"])] = ",".join(options)
    credentials_path = environment.get("GOOGLE_APPLICATION_CREDENTIALS", "")
    if credentials_path.startswith("/") and not read_only:
        tmpfs.setdefault(posixpath.dirname(credentials_path) or "/", "rw,mode=0755")
    return ContainerSpec(
        image=str(container["image"]),
        name=str(container.get("name", "app")),
        entrypoint=container.get("entryPoint") or None,
        command=container.get("command") or None,
        environment=environment,
        working_dir=container.get("workingDirectory") or None,
        user=container.get("user") or None,
        network=network,
        tmpfs=tmpfs,
        read_only=read_only,
        secrets=secrets,
        stdin=secrets_payload(secrets) if secrets else b"",
    )


def with_prestep(
    spec: ContainerSpec, container: dict[str, Any], image_config: dict[str, Any]
) -> None:
    """Run the task's argv behind the pre-step that delivers the secrets from stdin."""
    argv = process_argv(container, image_config)
    if not argv:
        raise ConfigError(
            f"container {spec.name} has no entryPoint or command, and neither has its image"
        )
    spec.entrypoint, spec.command = ["/bin/sh", "-c", PRESTEP, PRESTEP_NAME], argv


def overridden(container: dict[str, Any], overrides: TaskOverrides) -> dict[str, Any]:
    """The container as ECS applies containerOverrides: the command replaces `command` (the
    entryPoint stays), and each variable is added or replaces the definition's."""
    changed = dict(container)
    if overrides.command is not None:
        changed["command"] = overrides.command
    if overrides.environment:
        kept = [
            e
            for e in container.get("environment") or []
            if e.get("name") not in overrides.environment
        ]
        changed["environment"] = [
            *kept,
            *({"name": k, "value": v} for k, v in overrides.environment.items()),
        ]
    return changed


def run_local(
    ctx: Context,
    network: str = "none",
    from_template: bool = False,
    container_name: str | None = None,
    revision: int | None = None,
    check_role: bool = True,
    overrides: TaskOverrides | None = None,
    build: bool = False,
    job: str | None = None,
) -> RunLocalResult:
    if job is not None:
        # A job rehearsed: its command and env (flags over them); its size is Fargate's concern.
        from gcpfargate.ecs import jobs

        overrides = jobs.overrides_for(jobs.find(ctx.settings, job), overrides)
    if network not in NETWORKS:
        raise ConfigError(
            f"--network {network} is not allowed", "Use none (the default), bridge or host"
        )
    if build and revision is not None:
        raise ConfigError(
            "--build and --revision exclude each other",
            "--build runs the template with the local build; --revision a registered revision",
        )
    # Built before anything is read: the template may name the image, and a refused context
    # (a key file) stops here.
    local = build_local(ctx) if build else None
    definition = load_definition(ctx, from_template, revision, local)
    container = essential_container(definition, container_name)
    if check_role:
        with ctx.reporter.step("Checking the execution role can read the task's secrets"):
            check_role_can_read(ctx, definition, container)
    if overrides is not None:
        container = overridden(container, overrides)
    with ctx.reporter.step("Resolving secrets"):
        spec = container_spec(ctx, definition, container, network)
    image = spec.image
    if local is None or image != local.reference:  # the local build is on the engine already
        ours = image.startswith(ctx.registry.host + "/")
        credentials = ctx.registry.credentials() if ours else None
        if ours and ctx.registry.endpoint != ctx.registry.host:
            # The registry's name does not lead here (image.registry_host): the same image, by
            # the name this network reaches it under.
            image = spec.image = ctx.registry.endpoint + image[len(ctx.registry.host) :]
        with ctx.reporter.step(f"Pulling {image}"):
            ctx.docker.pull(image, credentials)
    if spec.stdin:
        with_prestep(spec, container, dict((ctx.docker.inspect(image) or {}).get("Config") or {}))
    delivery = delivery_of(definition, str(container.get("name")))
    exit_code = delivery.run(ctx, definition, spec, network)
    return RunLocalResult(exit_code=exit_code, container=spec.name, image=image)
