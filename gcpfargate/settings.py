"""The settings schema: one frozen dataclass per config section, and `Settings` holding them all.

A field's annotation is its type and `setting()` holds its default and validation, so adding a key
is one field. Code reads values as attributes (`settings.image.pin_digest`, `settings.run.subnets`)
and derived names through the properties of `Settings`. `gcpfargate.config` builds the object
through the precedence chain.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Mapping
from dataclasses import Field, dataclass, field, fields
from pathlib import Path
from typing import Any

from gcpfargate.errors import ConfigError
from gcpfargate.keymaterial.rules import (
    credentials_env_problem,
    credentials_path_problem,
    shell_startup_problem,
    template_env_var_problem,
)

CONFIG_FILE = "gcpfargate.toml"
Validator = Callable[[Any], str | None]  # returns a reason when the value is invalid


@dataclass(frozen=True)
class Key:
    kind: type  # str, bool, int, list or dict
    default: Any = None
    validate: Validator | None = None
    item: type | None = None  # what a list's items or a table's values must be, when checked
    # The canonical form, applied once at load after validation: readers never re-normalise.
    normalise: Callable[[Any], Any] | None = None
    # A path setting is made absolute at load, relative to this: "config" (the config file's
    # directory) or another key of the same section (image.dockerfile lives in image.context).
    relative_to: str | None = None


def _pattern(regex: str, what: str) -> Validator:
    compiled = re.compile(regex)

    def check(value: Any) -> str | None:
        if value in ("", None) or compiled.fullmatch(str(value)):
            return None
        return f"is not a valid {what}"

    return check


def _all(check: Validator) -> Validator:
    def check_each(values: Any) -> str | None:
        for value in values:
            if reason := check(value):
                return f"item {value!r} {reason}"
        return None

    return check_each


# CloudWatch Logs' PutRetentionPolicy accepts only these day counts (API reference,
# retentionInDays); 0 here means "never expire" (no policy is set).
LOG_RETENTION_DAYS = (
    0,
    1,
    3,
    5,
    7,
    14,
    30,
    60,
    90,
    120,
    150,
    180,
    365,
    400,
    545,
    731,
    1096,
    1827,
    2192,
    2557,
    2922,
    3288,
    3653,
)


def _retention(value: Any) -> str | None:
    return (
        None
        if value in LOG_RETENTION_DAYS
        else "is not a CloudWatch retention (one of "
        f"{', '.join(map(str, LOG_RETENTION_DAYS[1:]))}; 0: never expire)"
    )


def setting(
    default: Any,
    validate: Validator | None = None,
    normalise: Callable[[Any], Any] | None = None,
    relative_to: str | None = None,
) -> Any:
    """A settings field with its validation and canonical form; list and table defaults are empty
    and never shared."""
    metadata = {"validate": validate, "normalise": normalise, "relative_to": relative_to}
    if isinstance(default, list | dict):
        return field(default_factory=type(default), metadata=metadata)
    return field(default=default, metadata=metadata)


# Docker and the OCI image spec name architectures amd64/arm64; uname and ECS say x86_64/aarch64.
_DOCKER_ARCH = {"x86_64": "amd64", "aarch64": "arm64"}


def docker_arch(name: str) -> str:
    """`x86_64` -> `amd64`, `aarch64` -> `arm64`; Docker's own names unchanged."""
    return _DOCKER_ARCH.get(name, name)


def canonical_platform(platform: Any) -> str:
    """`linux/x86_64` -> `linux/amd64`: the one spelling builds, registries and checks compare;
    empty is Fargate's default, `linux/amd64`."""
    os_name, _, arch = (str(platform) or "linux/amd64").partition("/")
    return f"{os_name}/{docker_arch(arch)}"


_SECRET_ID = re.compile(r"[A-Za-z0-9_.-]{1,128}")


def _build_secrets_problem(value: Any) -> str | None:
    """`[image.secrets]`: each id names a file path (a string) or `{ env = "VAR" }`."""
    for name, source in dict(value or {}).items():
        if not _SECRET_ID.fullmatch(str(name)):
            return f"id {name!r} is not a valid secret id (letters, digits, '_', '.', '-')"
        if isinstance(source, str) and source:
            continue
        if (
            isinstance(source, dict)
            and set(source) == {"env"}
            and isinstance(source["env"], str)
            and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", source["env"])
        ):
            continue
        return f'{name} must be a file path ("path") or {{ env = "VARIABLE" }}'
    return None


_REGION = _pattern(
    r"[a-z]{2}(-gov|-iso[a-z]*)?-[a-z]+-\d+|eusc-[a-z]{2}-[a-z]+-\d+",
    "AWS region name (like ap-northeast-1)",
)
_ROLE_ARN = _pattern(r"arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]{1,512}", "IAM role ARN")


@dataclass(frozen=True)
class GcpSettings:
    project: str = setting("", _pattern(r"[a-z][a-z0-9-]{4,28}[a-z0-9]", "GCP project id"))
    service_account: str = setting(
        "",
        _pattern(
            r"[a-z][a-z0-9-]{4,28}[a-z0-9](@[a-z0-9.-]+\.iam\.gserviceaccount\.com)?"
            r"|[^@\s]+@[a-z0-9.-]+\.gserviceaccount\.com",
            "service account id or email",
        ),
    )
    create_service_account: bool = setting(False)
    # "key": a service-account key in Secrets Manager; "keyless": workload identity federation from
    # the task role (README "Keyless").
    auth: str = setting("key", _pattern(r"key|keyless", 'authentication mode ("key" or "keyless")'))
    # Keyless mode: the IAM user or role (ARN; `*` allowed, IAM's ArnLike) that may assume the task
    # role for run-local. Opt-in: bootstrap then adds a second trust statement for that principal
    # only, and removes it when this is emptied (README "Keyless").
    local_principal: str = setting(
        "",
        _pattern(
            r"arn:aws[a-z-]*:iam::\d{12}:(user|role)/[\w+=,.@/*?-]{1,512}",
            "IAM user or role ARN",
        ),
    )
    # How the IAM client talks to Google: gRPC, or HTTPS/JSON where the network blocks gRPC.
    transport: str = setting("grpc", _pattern(r"grpc|rest", "transport (grpc or rest)"))
    # Google's universe domain ("" : GOOGLE_CLOUD_UNIVERSE_DOMAIN, else googleapis.com): the APIs
    # are https://<service>.<universe domain> (clients/universe.py).
    universe_domain: str = setting(
        "", _pattern(r"(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}", "domain name")
    )


@dataclass(frozen=True)
class AwsSettings:
    region: str = setting("", _REGION)
    profile: str = setting("")


@dataclass(frozen=True)
class SecretSettings:
    name: str = setting("", _pattern(r"[A-Za-z0-9/_+=.@-]{1,512}", "Secrets Manager secret name"))
    kms_key_id: str = setting("")


@dataclass(frozen=True)
class ImageSettings:
    repository: str = setting(
        "",
        _pattern(
            r"[a-z0-9]+(?:[._-][a-z0-9]+)*(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)*", "ECR repository name"
        ),
    )
    context: str = setting(".", relative_to="config")  # absolute after load
    dockerfile: str = setting("Dockerfile", relative_to="context")  # absolute after load
    tag: str = setting("", _pattern(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}", "image tag"))
    platform: str = setting(
        "linux/amd64",
        _pattern(r"linux/(amd64|arm64|x86_64|aarch64)", "platform (linux/amd64 or linux/arm64)"),
        canonical_platform,
    )
    pin_digest: bool = setting(True)
    push_latest: bool = setting(False)
    build_args: dict[str, str] = setting({})
    # Keyless mode: the base of the credential-shim image (any Python 3.11+ image).
    shim_base_image: str = setting(
        "python:3.12-slim@sha256:78387bc3881b8273120a12ebe6c1ab22b018ccc2c9adf565ae1ac9b536e184ea"
    )
    # Docker's build --network: RUN steps' network ("default": the engine's bridge).
    network: str = setting(
        "default", _pattern(r"default|none|host", 'build network ("default", "none" or "host")')
    )
    # "inline": BuildKit's cache goes with the pushed image and the next build starts from the
    # image the family last registered (--cache-from), so a cold CI engine rebuilds only what
    # changed; "none": neither.
    cache: str = setting("inline", _pattern(r"inline|none", 'build cache ("inline" or "none")'))
    # BuildKit build secrets (RUN --mount=type=secret,id=ID): `id = "path"` or `id = { env = "VAR"
    # }`.
    secrets: dict[str, object] = setting({}, _build_secrets_problem)
    # The account whose ECR registry holds the images (a central image account); "" for the
    # caller's own. Its repository policy must let this account push, and the execution role pull.
    registry_id: str = setting("", _pattern(r"\d{12}", "AWS account id (12 digits)"))
    # Where gcpfargate pushes and reads when the registry's own name does not lead there (an
    # interface VPC endpoint's DNS name without private DNS, a proxy); task definitions keep the
    # registry's name.
    registry_host: str = setting(
        "",
        _pattern(
            r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)*[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}"
            r"[A-Za-z0-9])?(?::\d{1,5})?|\[[0-9A-Fa-f:.]+\](?::\d{1,5})?",
            "registry host (host or host:port)",
        ),
    )


@dataclass(frozen=True)
class TaskSettings:
    family: str = setting("", _pattern(r"[A-Za-z0-9_-]{1,255}", "task family name"))
    template: str = setting("task-definition.json.j2", relative_to="config")  # absolute after load
    execution_role_arn: str = setting("", _ROLE_ARN)
    credentials_path: str = setting("/tmp/gcp/credentials.json", credentials_path_problem)
    credentials_env: str = setting("GCP_CREDENTIALS_JSON", credentials_env_problem)
    wire_credentials: bool = setting(True)
    containers: list[str] = setting([])
    log_retention_days: int = setting(
        30, _retention
    )  # for the awslogs groups register-task creates
    vars: dict[str, object] = setting({})  # free TOML values for the template
    # The deployer's environment variables env()/must_env() may read (besides GCPFARGATE_VAR_*).
    env_vars: list[str] = setting([], _all(template_env_var_problem))


@dataclass(frozen=True)
class RunSettings:
    cluster: str = setting("default")
    subnets: list[str] = setting([], _all(_pattern(r"subnet-[0-9a-f]{8,17}", "subnet id")))
    security_groups: list[str] = setting(
        [], _all(_pattern(r"sg-[0-9a-f]{8,17}", "security group id"))
    )
    assign_public_ip: bool = setting(False)
    platform_version: str = setting("LATEST")
    wait_timeout: int = setting(3600)
    poll_interval: int = setting(6)  # longest pause between status polls while waiting, in seconds


@dataclass(frozen=True)
class ScheduleSettings:
    name: str = setting("", _pattern(r"[0-9a-zA-Z_.-]{1,64}", "schedule name"))
    expression: str = setting("")
    timezone: str = setting("UTC")
    group: str = setting("default")
    role_arn: str = setting("", _ROLE_ARN)


@dataclass(frozen=True)
class ServiceSettings:
    name: str = setting(
        "", _pattern(r"[A-Za-z0-9_-]{1,255}", "ECS service name")
    )  # empty: no service
    cluster: str = setting("default")
    wait: bool = setting(True)
    # Seconds deploy/rollback wait for a stable rollout: deregistration delay plus health checks
    # behind a load balancer often pass 10 minutes (the AWS CLI waiter's 40 x 15 s, the floor).
    wait_timeout: int = setting(1800)


@dataclass(frozen=True)
class NotifySettings:
    # Failure alerts (ecs/alerts.py): an SNS topic of yours, or one deploy creates.
    topic_arn: str = setting(
        "", _pattern(r"arn:aws[a-z-]*:sns:[a-z0-9-]+:\d{12}:[\w-]{1,256}", "SNS topic ARN")
    )
    create_topic: bool = setting(False)
    email: str = setting("", _pattern(r"[^@\s]+@[^@\s]+\.[^@\s]+", "e-mail address"))


SECTIONS: dict[str, type] = {
    "gcp": GcpSettings,
    "aws": AwsSettings,
    "secret": SecretSettings,
    "image": ImageSettings,
    "task": TaskSettings,
    "run": RunSettings,
    "schedule": ScheduleSettings,
    "service": ServiceSettings,
    "notify": NotifySettings,
}
# A field's annotation (a string under `from __future__ import annotations`) → its kind and the type
# its items must have. A field with any other annotation fails at import, before any command runs.
_KINDS: dict[str, tuple[type, type | None]] = {
    "str": (str, None),
    "bool": (bool, None),
    "int": (int, None),
    "list[str]": (list, str),
    "dict[str, str]": (dict, str),
    "dict[str, object]": (dict, None),
}


def _key(spec: Field[Any]) -> Key:
    kind, item = _KINDS[str(spec.type)]
    factory = (
        spec.default_factory
    )  # `setting()` gives lists and tables a factory, never a shared default
    default = factory() if kind in (list, dict) and callable(factory) else spec.default
    return Key(
        kind,
        default,
        spec.metadata["validate"],
        item,
        spec.metadata["normalise"],
        spec.metadata.get("relative_to"),
    )


SCHEMA: dict[str, dict[str, Key]] = {
    section: {spec.name: _key(spec) for spec in fields(cls)} for section, cls in SECTIONS.items()
}


# The rule behind a validator, in words, for the keys people type by hand (init's flags and
# prompts).
RULES = {
    "gcp.project": "A GCP project id has 6-30 lowercase letters, digits or hyphens, starts with a "
    "letter and does not end with a hyphen (such as my-project-123)",
    "gcp.service_account": "A service account is its id (6-30 lowercase letters, digits or "
    "hyphens, starting with a letter, such as deployer) or its email "
    "(deployer@my-project-123.iam.gserviceaccount.com)",
}


def problem(dotted: str, value: Any) -> str | None:
    """Why `value` is not valid for the setting `dotted`, by the same rule loading uses; None if it
    is."""
    section, key = dotted.split(".")
    spec = SCHEMA[section][key]
    return spec.validate(value) if spec.validate is not None and value else None


def env_name(dotted: str) -> str:
    section, key = dotted.split(".")
    return f"GCPFARGATE_{section.upper()}_{key.upper()}"


@dataclass(frozen=True)
class Settings:
    """Resolved settings: one typed, frozen object per section, plus where each value came from."""

    gcp: GcpSettings = field(default_factory=GcpSettings)
    aws: AwsSettings = field(default_factory=AwsSettings)
    secret: SecretSettings = field(default_factory=SecretSettings)
    image: ImageSettings = field(default_factory=ImageSettings)
    task: TaskSettings = field(default_factory=TaskSettings)
    run: RunSettings = field(default_factory=RunSettings)
    schedule: ScheduleSettings = field(default_factory=ScheduleSettings)
    service: ServiceSettings = field(default_factory=ServiceSettings)
    notify: NotifySettings = field(default_factory=NotifySettings)
    sources: Mapping[str, str] = field(
        default_factory=dict
    )  # `section.key` → flag/env/file/default
    config_path: Path | None = None
    base_dir: Path = field(default_factory=Path.cwd)
    environment: str = ""  # the selected [environments.<name>] overlay ("" for none)
    # every environment's overlay by `section.key`, so doctor can say where a secret lives
    environments: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    # `[jobs.<name>]` tables (with the selected environment's `[environments.<env>.jobs.<name>]`
    # overlaid key by key), by job name, in file order.
    jobs: dict[str, JobSettings] = field(default_factory=dict)

    def require(self, *dotted: str) -> None:
        """Raise one error naming every key in `dotted` (`section.key`) that has no value."""
        missing = [key for key in dotted if _lookup(self, key) in ("", None, [])]
        if missing:
            names = ", ".join(f"{key} ({env_name(key)})" for key in missing)
            where = self.config_path or CONFIG_FILE
            raise ConfigError(
                f"missing required setting{'s' if len(missing) > 1 else ''}: {names}",
                f"Set {'them' if len(missing) > 1 else 'it'} in {where} or the environment "
                "(`gcpfargate init` writes a starter file)",
            )

    def resolve(self, relative: str) -> Path:
        """A path relative to the config file's directory (path settings are absolute already)."""
        return (self.base_dir / relative).resolve()

    # Derived values used by several commands.
    @property
    def account_id(self) -> str:
        """The service account's id: the part before '@' when an email was given."""
        return self.gcp.service_account.split("@", 1)[0]

    @property
    def service_account_email(self) -> str:
        account = self.gcp.service_account
        if "@" in account:
            return account
        return f"{account}@{self.gcp.project}.iam.gserviceaccount.com"

    @property
    def secret_name(self) -> str:
        return self.secret.name or f"gcpfargate/{self.account_id}"

    @property
    def family(self) -> str:
        return self.task.family

    @property
    def repository(self) -> str:
        return self.image.repository or self.family

    @property
    def execution_role_name(self) -> str:
        return own_role_name(self.family, "execution")


# -- scheduled jobs --------------------------------------------------------------------------------

JOB_NAME = re.compile(r"[A-Za-z0-9_-]{1,40}")
# The `[run]` keys a job may set for itself; unset ones come from `[run]`.
JOB_RUN_KEYS = (
    "cluster",
    "subnets",
    "security_groups",
    "assign_public_ip",
    "platform_version",
    "wait_timeout",
)


@dataclass(frozen=True)
class JobSettings:
    """One `[jobs.<name>]` table: a schedule of the family's task definition with its overrides.

    `cron`/`rate` hold the expression as EventBridge takes it (`cron(0 3 * * ? *)`,
    `rate(1 hour)`), a five-field line or `@daily` already converted; `written` keeps what was
    typed. `command` is as written (a list, or a string split like a shell would); `argv` is the
    list. Empty `[run]` keys (`cluster = ""`, `subnets = []`, None) fall back to `[run]`.
    """

    name: str
    cron: str = ""
    rate: str = ""
    timezone: str = "UTC"
    command: list[str] | str = ""
    env: dict[str, str] = field(default_factory=dict)
    cpu: str = ""
    memory: str = ""
    enabled: bool = True
    description: str = ""
    written: str = ""
    cluster: str = ""
    subnets: list[str] = field(default_factory=list)
    security_groups: list[str] = field(default_factory=list)
    assign_public_ip: bool | None = None
    platform_version: str = ""
    wait_timeout: int | None = None

    @property
    def expression(self) -> str:
        return self.cron or self.rate

    @property
    def argv(self) -> list[str] | None:
        """The command as a list; None keeps the task definition's own command."""
        if isinstance(self.command, list):
            return list(self.command) if self.command else None
        import shlex

        return shlex.split(self.command) if self.command.strip() else None

    @property
    def group(self) -> str:
        """The ECS task group of every task this job starts (by its schedule or `run --job`)."""
        return f"job:{self.name}"

    def run_settings(self, base: RunSettings, keep: tuple[str, ...] = ()) -> RunSettings:
        """`[run]` with this job's own values in place of the ones it sets (but not `keep`)."""
        import dataclasses

        changes = {
            key: getattr(self, key)
            for key in JOB_RUN_KEYS
            if getattr(self, key) not in ("", None, []) and key not in keep
        }
        return dataclasses.replace(base, **changes)


# Each job key: its TOML types (in words for the error) and a check of the value.
_JOB_TYPES: dict[str, tuple[tuple[type, ...], str]] = {
    "cron": ((str,), "a string"),
    "rate": ((str,), "a string"),
    "timezone": ((str,), "a string"),
    "command": ((str, list), "a string or a list of strings"),
    "env": ((dict,), "a table of strings"),
    "cpu": ((str, int), "a string or a whole number"),
    "memory": ((str, int), "a string or a whole number"),
    "enabled": ((bool,), "true or false"),
    "description": ((str,), "a string"),
    "cluster": ((str,), "a string"),
    "subnets": ((list,), "a list of strings"),
    "security_groups": ((list,), "a list of strings"),
    "assign_public_ip": ((bool,), "true or false"),
    "platform_version": ((str,), "a string"),
    "wait_timeout": ((int,), "a whole number"),
}


def load_jobs(
    tables: Mapping[str, Any], overlay: Mapping[str, Any], where: str
) -> dict[str, JobSettings]:
    """`[jobs.*]` tables, with an environment's job tables laid over them key by key, checked;
    every error names the job and the key."""
    merged: dict[str, dict[str, Any]] = {}
    for source in (tables, overlay):
        if not isinstance(source, Mapping):
            raise ConfigError(f"jobs in {where} must be tables ([jobs.NAME])")
        for name, table in source.items():
            if not isinstance(table, Mapping):
                raise ConfigError(f"jobs.{name} in {where} must be a table ([jobs.{name}])")
            merged.setdefault(name, {}).update(table)
    return {name: _job(name, values, where) for name, values in merged.items()}


def _job(name: str, values: Mapping[str, Any], where: str) -> JobSettings:
    import difflib

    from gcpfargate.awsspec import cron
    from gcpfargate.errors import ExpressionError

    if not JOB_NAME.fullmatch(name):
        raise ConfigError(
            f"job name {name!r} in {where} is not 1-40 letters, digits, '-' or '_'",
            "It names the job's schedule and its ECS task group (job:<name>)",
        )
    label = f"jobs.{name}"
    for key, value in values.items():
        if key not in _JOB_TYPES:
            close = difflib.get_close_matches(key, list(_JOB_TYPES), n=1)
            known = f"did you mean {close[0]}?" if close else f"known: {', '.join(_JOB_TYPES)}"
            raise ConfigError(f"unknown key {label}.{key} in {where} ({known})")
        kinds, words = _JOB_TYPES[key]
        ok = isinstance(value, kinds) and not (bool not in kinds and isinstance(value, bool))
        if ok and isinstance(value, list):
            ok = all(isinstance(item, str) for item in value)
        if ok and isinstance(value, dict):
            ok = all(isinstance(item, str) for item in value.values())
        if not ok:
            raise ConfigError(f"{label}.{key} in {where} must be {words}, not {value!r}"[:200])

    def bad(key: str, why: str, hint: str = "") -> ConfigError:
        return ConfigError(f"{label}.{key} = {values.get(key)!r} in {where} {why}", hint)

    given = [key for key in ("cron", "rate") if str(values.get(key) or "").strip()]
    if len(given) != 1:
        raise ConfigError(
            f"{label} in {where} needs exactly one of cron or rate"
            + (" (both are set)" if given else ""),
            'For example cron = "0 3 * * *" (or "@daily") or rate = "1 hour"',
        )
    key = given[0]
    text = str(values[key]).strip()
    if key == "cron" and not text.startswith(("cron(", "@")):
        text = f"cron({text})"
    elif key == "rate" and not text.startswith("rate("):
        text = f"rate({text})"
    try:
        parsed = cron.parse(text)
    except ExpressionError as exc:
        raise bad(key, f"is not a schedule expression: {exc.message}", exc.hint) from None
    if parsed.kind != key:
        raise bad(key, f"is a {parsed.kind} expression", f"Put it under {parsed.kind} =")
    timezone = str(values.get("timezone") or "UTC")
    try:
        cron.zone(timezone)
    except ExpressionError:
        raise bad(
            "timezone",
            "is not an IANA time zone",
            "Use a name such as UTC, Asia/Tokyo or America/New_York",
        ) from None
    command = values.get("command", "")
    if isinstance(command, str) and command.strip():
        import shlex

        try:
            shlex.split(command)
        except ValueError as exc:
            raise bad("command", f"cannot be split like a shell would: {exc}") from None
    elif isinstance(command, list) and not command and "command" in values:
        raise bad("command", "is empty", "Give the program and its arguments, or leave it out")
    env = dict(values.get("env") or {})
    for env_key in env:
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", env_key):
            raise ConfigError(f"{label}.env key {env_key!r} in {where} is not a variable name")
        if problem := shell_startup_problem(env_key):
            raise ConfigError(f"{label}.env.{env_key} in {where} is refused: {problem}")
    from gcpfargate.keymaterial.keyscan import key_paths, key_text

    if key_paths([command, env], is_key=key_text):
        # The values are stored in the schedule, readable like a task definition: never a key.
        raise ConfigError(
            f"{label} in {where} holds what looks like private key text in its command or env",
            "Never put a key in a job: gcpfargate delivers the key through secrets",
        )
    cpu, memory = _job_sizes(label, values, where)
    for list_key, check in (
        ("subnets", _pattern(r"subnet-[0-9a-f]{8,17}", "subnet id")),
        ("security_groups", _pattern(r"sg-[0-9a-f]{8,17}", "security group id")),
    ):
        if reason := _all(check)(values.get(list_key) or []):
            raise bad(list_key, reason)
    wait = values.get("wait_timeout")
    if wait is not None and wait < 1:
        raise bad("wait_timeout", "is not a positive number of seconds")
    return JobSettings(
        name=name,
        cron=parsed.text if key == "cron" else "",
        rate=parsed.text if key == "rate" else "",
        timezone=timezone,
        command=list(command) if isinstance(command, list) else str(command),
        env=env,
        cpu=cpu,
        memory=memory,
        enabled=bool(values.get("enabled", True)),
        description=str(values.get("description") or ""),
        written=parsed.written if parsed.converted else "",
        cluster=str(values.get("cluster") or ""),
        subnets=list(values.get("subnets") or []),
        security_groups=list(values.get("security_groups") or []),
        assign_public_ip=values.get("assign_public_ip"),
        platform_version=str(values.get("platform_version") or ""),
        wait_timeout=wait,
    )


def _job_sizes(label: str, values: Mapping[str, Any], where: str) -> tuple[str, str]:
    """cpu/memory as cpu units and MiB; a pair when both are given must be a Fargate size."""
    from gcpfargate.awsspec.sizes import FARGATE_SIZES, parse_cpu, parse_memory

    cpu_text, memory_text = str(values.get("cpu") or ""), str(values.get("memory") or "")
    cpu = parse_cpu(cpu_text) if cpu_text else None
    memory = parse_memory(memory_text) if memory_text else None
    if cpu_text and cpu not in FARGATE_SIZES:
        raise ConfigError(
            f"{label}.cpu = {values.get('cpu')!r} in {where} is not a Fargate cpu value",
            f'Use one of {", ".join(map(str, FARGATE_SIZES))} (cpu units) or "1 vCPU"',
        )
    if memory_text and memory is None:
        raise ConfigError(
            f"{label}.memory = {values.get('memory')!r} in {where} is not a memory size",
            'Use MiB ("2048") or GB ("2 GB")',
        )
    if cpu is not None and memory is not None and memory not in FARGATE_SIZES[cpu]:
        allowed = FARGATE_SIZES[cpu]
        raise ConfigError(
            f"{label}: cpu {cpu} with memory {memory} in {where} is not a Fargate task size",
            f"With cpu {cpu}, memory must be between {allowed[0]} and {allowed[-1]} MiB",
        )
    return (str(cpu) if cpu else "", str(memory) if memory else "")


IAM_ROLE_NAME_MAX = 64  # IAM CreateRole: RoleName length 1-64 (botocore's IAM model, roleNameType)


def own_role_name(family: str, purpose: str, limit: int = IAM_ROLE_NAME_MAX) -> str:
    """`gcpfargate-<family>-<purpose>` within `limit` characters (IAM's 64 unless a caller needs
    fewer). A family too long for it is cut and followed by 8 hex digits of its SHA-256, so the name
    stays stable and two long families sharing a prefix still get different roles."""
    name = f"gcpfargate-{family}-{purpose}"
    if len(name) <= limit:
        return name
    digest = hashlib.sha256(family.encode("utf-8")).hexdigest()[:8]
    room = limit - len(f"gcpfargate---{purpose}") - len(digest)
    return f"gcpfargate-{family[:room]}-{digest}-{purpose}"


def _lookup(settings: Settings, dotted: str) -> object:
    section, key = dotted.split(".")
    return getattr(getattr(settings, section), key)
