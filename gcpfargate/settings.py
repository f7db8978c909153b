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


# CloudWatch Logs' PutRetentionPolicy accepts only these day counts (API reference, retentionInDays);
# 0 here means "never expire" (no policy is set).
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
        else f"is not a CloudWatch retention (one of {', '.join(map(str, LOG_RETENTION_DAYS[1:]))}; 0: never expire)"
    )


def setting(
    default: Any, validate: Validator | None = None, normalise: Callable[[Any], Any] | None = None
) -> Any:
    """A settings field with its validation and canonical form; list and table defaults are empty
    and never shared."""
    metadata = {"validate": validate, "normalise": normalise}
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
    # How the IAM client talks to Google: gRPC, or HTTPS/JSON where the network blocks gRPC.
    transport: str = setting("grpc", _pattern(r"grpc|rest", "transport (grpc or rest)"))


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
    context: str = setting(".")
    dockerfile: str = setting("Dockerfile")
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
    shim_base_image: str = setting("python:3-slim")


@dataclass(frozen=True)
class TaskSettings:
    family: str = setting("", _pattern(r"[A-Za-z0-9_-]{1,255}", "task family name"))
    template: str = setting("task-definition.json.j2")
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
    return Key(kind, default, spec.metadata["validate"], item, spec.metadata["normalise"])


SCHEMA: dict[str, dict[str, Key]] = {
    section: {spec.name: _key(spec) for spec in fields(cls)} for section, cls in SECTIONS.items()
}


# The rule behind a validator, in words, for the keys people type by hand (init's flags and prompts).
RULES = {
    "gcp.project": "A GCP project id has 6-30 lowercase letters, digits or hyphens, starts with a "
    "letter and does not end with a hyphen (such as my-project-123)",
    "gcp.service_account": "A service account is its id (6-30 lowercase letters, digits or "
    "hyphens, starting with a letter, such as deployer) or its email "
    "(deployer@my-project-123.iam.gserviceaccount.com)",
}


def problem(dotted: str, value: Any) -> str | None:
    """Why `value` is not valid for the setting `dotted`, by the same rule loading uses; None if it is."""
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
        """A path setting, relative to the config file's directory."""
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
