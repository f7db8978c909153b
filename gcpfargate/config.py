"""Settings: one frozen object built from a TOML file, the environment and flags.

Precedence, stated once and applied to every key: **flag > environment variable > config file >
default**. Every key `section.key` has the environment variable `GCPFARGATE_<SECTION>_<KEY>`
(`task.vars` and `image.build_args` are tables and come from the file only); an empty variable
counts as unset. Unknown sections and
keys are rejected by name, so a typo never silently falls back to a default. Missing required keys
are reported together, in one message, by `Settings.require`.
"""

from __future__ import annotations

import difflib
import os
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gcpfargate.errors import ConfigError

CONFIG_FILE = "gcpfargate.toml"
CONFIG_ENV = "GCPFARGATE_CONFIG"


@dataclass(frozen=True)
class Key:
    kind: type  # str, bool, int, list or dict
    default: Any = None
    validate: Callable[[Any], str | None] | None = None  # returns a reason when invalid


def _pattern(regex: str, what: str) -> Callable[[Any], str | None]:
    compiled = re.compile(regex)

    def check(value: Any) -> str | None:
        if value in ("", None) or compiled.fullmatch(str(value)):
            return None
        return f"is not a valid {what}"

    return check


def _all(check: Callable[[Any], str | None]) -> Callable[[Any], str | None]:
    def check_each(values: Any) -> str | None:
        for value in values:
            if reason := check(value):
                return f"item {value!r} {reason}"
        return None

    return check_each


def _absolute_path(value: Any) -> str | None:
    return None if str(value).startswith("/") and "\x00" not in str(value) else "must be an absolute path"


_REGION = _pattern(r"[a-z]{2}(-gov|-iso[a-z]*)?-[a-z]+-\d+|eusc-[a-z]{2}-[a-z]+-\d+",
                   "AWS region name (like ap-northeast-1)")
_ROLE_ARN = _pattern(r"arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]{1,512}", "IAM role ARN")

SCHEMA: dict[str, dict[str, Key]] = {
    "gcp": {
        "project": Key(str, "", _pattern(r"[a-z][a-z0-9-]{4,28}[a-z0-9]", "GCP project id")),
        "service_account": Key(
            str,
            "",
            _pattern(
                r"[a-z][a-z0-9-]{4,28}[a-z0-9](@[a-z0-9.-]+\.iam\.gserviceaccount\.com)?"
                r"|[^@\s]+@[a-z0-9.-]+\.gserviceaccount\.com",
                "service account id or email",
            ),
        ),
        "create_service_account": Key(bool, False),
    },
    "aws": {
        "region": Key(str, "", _REGION),
        "profile": Key(str, ""),
    },
    "secret": {
        "name": Key(str, "", _pattern(r"[A-Za-z0-9/_+=.@-]{1,512}", "Secrets Manager secret name")),
        "kms_key_id": Key(str, ""),
    },
    "image": {
        "repository": Key(str, "", _pattern(r"[a-z0-9]+(?:[._-][a-z0-9]+)*(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)*",
                                            "ECR repository name")),
        "context": Key(str, "."),
        "dockerfile": Key(str, "Dockerfile"),
        "tag": Key(str, "", _pattern(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}", "image tag")),
        "platform": Key(str, "linux/amd64", _pattern(r"linux/(amd64|arm64|x86_64|aarch64)", "platform "
                                                     "(linux/amd64 or linux/arm64)")),
        "pin_digest": Key(bool, True),
        "push_latest": Key(bool, False),
        "build_args": Key(dict, None),
    },
    "task": {
        "family": Key(str, "", _pattern(r"[A-Za-z0-9_-]{1,255}", "task family name")),
        "template": Key(str, "task-definition.json.j2"),
        "execution_role_arn": Key(str, "", _ROLE_ARN),
        "credentials_path": Key(str, "/tmp/gcp/credentials.json", _absolute_path),
        "credentials_env": Key(str, "GCP_CREDENTIALS_JSON", _pattern(r"[A-Za-z_][A-Za-z0-9_]*",
                                                                      "environment variable name")),
        "wire_credentials": Key(bool, True),
        "containers": Key(list, None),
        "vars": Key(dict, None),
    },
    "run": {
        "cluster": Key(str, "default"),
        "subnets": Key(list, None, _all(_pattern(r"subnet-[0-9a-f]{8,17}", "subnet id"))),
        "security_groups": Key(list, None, _all(_pattern(r"sg-[0-9a-f]{8,17}", "security group id"))),
        "assign_public_ip": Key(bool, False),
        "platform_version": Key(str, "LATEST"),
        "wait_timeout": Key(int, 3600),
        "poll_interval": Key(int, 6),  # longest pause between status polls while waiting, in seconds
    },
    "schedule": {
        "name": Key(str, "", _pattern(r"[0-9a-zA-Z_.-]{1,64}", "schedule name")),
        "expression": Key(str, ""),
        "timezone": Key(str, "UTC"),
        "group": Key(str, "default"),
        "role_arn": Key(str, "", _ROLE_ARN),
    },
}

_TABLE_KEYS = {"image.build_args", "task.vars"}
# GCPFARGATE_* variables that are not settings (endpoint overrides and the config path).
_NON_SETTING_ENV = {CONFIG_ENV, "GCPFARGATE_ECR_REGISTRY", "GCPFARGATE_CALL_LOG"}


def env_name(dotted: str) -> str:
    section, key = dotted.split(".")
    return f"GCPFARGATE_{section.upper()}_{key.upper()}"


@dataclass(frozen=True)
class Settings:
    """Resolved settings. Read values with `settings.get("section.key")` or the properties."""

    values: Mapping[str, Any]
    sources: Mapping[str, str]  # "flag", "env", "file" or "default": for `doctor` and --verbose
    config_path: Path | None
    base_dir: Path = field(default_factory=Path.cwd)

    def get(self, dotted: str) -> Any:
        return self.values[dotted]

    def require(self, *dotted: str) -> None:
        missing = [key for key in dotted if self.values.get(key) in ("", None, [])]
        if missing:
            names = ", ".join(f"{key} ({env_name(key)})" for key in missing)
            where = self.config_path or CONFIG_FILE
            raise ConfigError(
                f"missing required setting{'s' if len(missing) > 1 else ''}: {names}",
                f"Set {'them' if len(missing) > 1 else 'it'} in {where} or the environment "
                "(`gcpfargate init` writes a starter file)",
            )

    def path(self, dotted: str) -> Path:
        """A path setting, relative to the config file's directory."""
        return (self.base_dir / str(self.values[dotted])).resolve()

    # Derived values used by several commands.
    @property
    def account_id(self) -> str:
        """The service account's id: the part before '@' when an email was given."""
        return str(self.values["gcp.service_account"]).split("@", 1)[0]

    @property
    def service_account_email(self) -> str:
        account = str(self.values["gcp.service_account"])
        if "@" in account:
            return account
        return f"{account}@{self.values['gcp.project']}.iam.gserviceaccount.com"

    @property
    def secret_name(self) -> str:
        return str(self.values["secret.name"]) or f"gcpfargate/{self.account_id}"

    @property
    def family(self) -> str:
        return str(self.values["task.family"])

    @property
    def repository(self) -> str:
        return str(self.values["image.repository"]) or self.family

    @property
    def execution_role_name(self) -> str:
        return f"gcpfargate-{self.family}-execution"


def load_settings(
    config_path: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] | None = None,
    flags: Mapping[str, Any] | None = None,
) -> Settings:
    """Build settings from file, environment and flags (`flags` maps `section.key` to a value;
    `None` means the flag was not given)."""
    environ = os.environ if environ is None else environ
    path = _find_config(config_path, environ)
    file_values = _read_file(path) if path else {}
    env_values = _read_env(environ)

    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for section, keys in SCHEMA.items():
        for key, spec in keys.items():
            dotted = f"{section}.{key}"
            # The precedence chain, highest first.
            for source, layer in (("flag", flags or {}), ("env", env_values), ("file", file_values)):
                if layer.get(dotted) is not None:
                    values[dotted], sources[dotted] = layer[dotted], source
                    break
            else:
                default = spec.default
                values[dotted] = dict(default or {}) if spec.kind is dict else (
                    list(default or []) if spec.kind is list else default)
                sources[dotted] = "default"
            _validate(dotted, values[dotted], spec, sources[dotted], path)
    base_dir = path.parent.resolve() if path else Path.cwd()
    return Settings(values=values, sources=sources, config_path=path, base_dir=base_dir)


def _find_config(config_path: str | os.PathLike[str] | None, environ: Mapping[str, str]) -> Path | None:
    explicit = config_path or environ.get(CONFIG_ENV)
    if explicit:
        path = Path(explicit)
        if not path.is_file():
            raise ConfigError(f"config file {path} does not exist",
                              "Pass an existing file with --config or run `gcpfargate init`")
        return path
    default = Path.cwd() / CONFIG_FILE
    return default if default.is_file() else None


def _read_file(path: Path) -> dict[str, Any]:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"cannot parse {path}: {exc}", "Fix the TOML syntax at that position") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from None
    flat: dict[str, Any] = {}
    for section, table in data.items():
        if section not in SCHEMA:
            raise ConfigError(f"unknown section [{section}] in {path}{_suggest(section, SCHEMA)}")
        if not isinstance(table, dict):
            raise ConfigError(f"{section} in {path} must be a table ([{section}])")
        for key, value in table.items():
            dotted = f"{section}.{key}"
            if key not in SCHEMA[section]:
                raise ConfigError(f"unknown key {dotted} in {path}{_suggest(key, SCHEMA[section])}")
            flat[dotted] = _check_type(dotted, value, SCHEMA[section][key], f"in {path}")
    return flat


def _read_env(environ: Mapping[str, str]) -> dict[str, Any]:
    by_name = {env_name(f"{s}.{k}"): f"{s}.{k}" for s, keys in SCHEMA.items() for k in keys
               if f"{s}.{k}" not in _TABLE_KEYS}
    flat: dict[str, Any] = {}
    for name, raw in environ.items():
        if not name.startswith("GCPFARGATE_") or name in _NON_SETTING_ENV:
            continue
        dotted = by_name.get(name)
        if raw == "" and dotted is not None:
            continue  # an empty variable is unset, as in most tools: it never blanks out the file's value
        if dotted is None:
            section = name.removeprefix("GCPFARGATE_").split("_", 1)[0].lower()
            if section in SCHEMA:  # a known section with an unknown key: almost surely a typo
                known = {env_name(d): d for d in by_name.values() if d.startswith(section + ".")}
                raise ConfigError(f"unknown setting in environment variable {name}{_suggest(name, known)}")
            continue
        section, key = dotted.split(".")
        flat[dotted] = _parse_env(name, raw, SCHEMA[section][key])
    return flat


def _parse_env(name: str, raw: str, spec: Key) -> Any:
    if spec.kind is bool:
        lowered = raw.strip().lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off", ""):
            return False
        raise ConfigError(f"environment variable {name} must be true or false, not {raw!r}")
    if spec.kind is int:
        try:
            return int(raw)
        except ValueError:
            raise ConfigError(f"environment variable {name} must be a whole number, not {raw!r}") from None
    if spec.kind is list:
        return [item.strip() for item in raw.split(",") if item.strip()]
    return raw


def _check_type(dotted: str, value: Any, spec: Key, where: str) -> Any:
    names = {str: "a string", bool: "true or false", int: "a whole number", list: "a list of strings",
             dict: "a table"}
    ok = isinstance(value, spec.kind) and not (spec.kind is int and isinstance(value, bool))
    if spec.kind is list and ok:
        ok = all(isinstance(item, str) for item in value)
    if spec.kind is dict and ok and dotted == "image.build_args":
        ok = all(isinstance(item, str) for item in value.values())
    if not ok:
        raise ConfigError(f"{dotted} {where} must be {names[spec.kind]}, not {type(value).__name__} "
                          f"{_short(value)}")
    return value


def _validate(dotted: str, value: Any, spec: Key, source: str, path: Path | None) -> None:
    if spec.validate is None or value in ("", None, []):
        return
    if reason := spec.validate(value):
        origin = {"flag": "flag", "env": f"environment variable {env_name(dotted)}",
                  "file": str(path), "default": "default"}[source]
        raise ConfigError(f"{dotted} = {_short(value)} ({origin}) {reason}")


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _suggest(word: str, choices: Mapping[str, Any]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f" (did you mean {close[0]}?)" if close else f" (known: {', '.join(choices)})"
