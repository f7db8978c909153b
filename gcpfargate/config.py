"""Settings: one frozen, typed object built from a TOML file, the environment and flags.

Precedence, stated once and applied to every key: **flag > environment variable > config file >
default**. Every key `section.key` has the environment variable `GCPFARGATE_<SECTION>_<KEY>`
(table keys such as `task.vars` and `image.build_args` come from the file only); an empty variable
counts as unset. Flags arrive as `Overrides`, by `section.key`. Unknown sections and keys are
rejected by name, so a typo never silently falls back to a default. Missing required keys are
reported together, in one message, by `Settings.require`.

Environments: `[environments.<name>.<section>]` tables overlay any file setting (region, profile,
family, secret name, vars, service, schedule, run…) when `--environment NAME` or
`GCPFARGATE_ENVIRONMENT` selects them; they sit between the file's own values and the environment
variables: **flag > environment variable > selected environment > config file > default**. Every
environment is checked for unknown keys whether selected or not. The schema itself, and the typed
object code reads, are in `gcpfargate.settings`.
"""

from __future__ import annotations

import difflib
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypedDict

from gcpfargate.errors import ConfigError
from gcpfargate.settings import (
    CONFIG_FILE,
    RULES,
    SCHEMA,
    SECTIONS,
    Key,
    Settings,
    env_name,
    load_jobs,
)

__all__ = [
    "CONFIG_ENV",
    "CONFIG_FILE",
    "SCHEMA",
    "Overrides",
    "Settings",
    "env_name",
    "load_settings",
]

CONFIG_ENV = "GCPFARGATE_CONFIG"
ENVIRONMENT_ENV = "GCPFARGATE_ENVIRONMENT"
ENVIRONMENTS = "environments"
JOBS = "jobs"  # `[jobs.<name>]` tables: file only, checked by `settings.load_jobs`
# GCPFARGATE_* variables that are not settings (endpoint overrides and the config path).
_NON_SETTING_ENV = {
    CONFIG_ENV,
    ENVIRONMENT_ENV,
    "GCPFARGATE_ECR_REGISTRY",
    "GCPFARGATE_CALL_LOG",
    "GCPFARGATE_IAM_REST_ENDPOINT",
    "GCPFARGATE_SERVICEUSAGE_ENDPOINT",
    "GCPFARGATE_STS_ENDPOINT",
    "GCPFARGATE_IAMCREDENTIALS_ENDPOINT",
}
# The settings a command-line flag can set, by `section.key`; None means the flag was not given.
# A type checker holds commands to these names and types; `load_settings` checks both again at run
# time against SCHEMA, so a flag value is validated exactly like a file value.
Overrides = TypedDict(
    "Overrides",
    {
        "aws.region": str | None,
        "aws.profile": str | None,
        "secret.name": str | None,
        "image.tag": str | None,
        "task.family": str | None,
        "task.template": str | None,
        "run.cluster": str | None,
        "run.subnets": list[str] | None,
        "run.security_groups": list[str] | None,
        "run.wait_timeout": int | None,
        "schedule.expression": str | None,
        "schedule.timezone": str | None,
        "schedule.name": str | None,
        "schedule.group": str | None,
        "service.name": str | None,
        "service.cluster": str | None,
        "service.wait": bool | None,
        "service.wait_timeout": int | None,
    },
    total=False,
)


def load_settings(
    config_path: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] | None = None,
    overrides: Overrides | None = None,
    read_file: bool = True,
    environment: str | None = None,
) -> Settings:
    """Build settings from file, environment and flags (`overrides`, by `section.key`);
    `environment` (else GCPFARGATE_ENVIRONMENT) selects an `[environments.<name>]` overlay.

    `read_file=False` leaves the file out (`init --force` replacing a file that does not load).
    """
    environ = os.environ if environ is None else environ
    path = _find_config(config_path, environ) if read_file else None
    file_values, environments, job_tables = _read_file(path) if path else ({}, {}, {})
    chosen = environment or environ.get(ENVIRONMENT_ENV) or ""
    if chosen:
        if chosen not in environments:
            known = ", ".join(environments) or "none"
            raise ConfigError(
                f"environment {chosen!r} is not defined in {path or CONFIG_FILE} (defined: "
                f"{known})",
                f"Add an [environments.{chosen}] table, or pick one of those",
            )
        file_values = {**file_values, **environments[chosen]}
    env_values = _read_env(environ)
    flag_values = _read_flags(overrides or {})

    base_dir = path.parent.resolve() if path else Path.cwd()
    sections: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for section, keys in SCHEMA.items():
        values: dict[str, Any] = {}
        for key, spec in keys.items():
            dotted = f"{section}.{key}"
            # The precedence chain, highest first.
            for source, layer in (
                ("flag", flag_values),
                ("env", env_values),
                ("file", file_values),
            ):
                if layer.get(dotted) is not None:
                    values[key], sources[dotted] = layer[dotted], source
                    break
            else:
                values[key] = (
                    type(spec.default)(spec.default) if spec.kind in (list, dict) else spec.default
                )
                sources[dotted] = "default"
            _validate(dotted, values[key], spec, sources[dotted], path)
            if spec.normalise is not None and values[key] is not None:
                values[key] = spec.normalise(values[key])
            if spec.relative_to is not None and values[key]:
                # Paths are absolute from here on: every reader sees the same file.
                base = base_dir if spec.relative_to == "config" else Path(values[spec.relative_to])
                values[key] = str((base / values[key]).resolve())
        sections[section] = SECTIONS[section](**values)
    # Every environment's job tables are checked, selected or not, like its other keys.
    jobs = load_jobs(job_tables.get("", {}), {}, str(path))
    for name, overlay in job_tables.items():
        if name:
            selected = load_jobs(job_tables.get("", {}), overlay, f"{path} [{ENVIRONMENTS}.{name}]")
            if name == chosen:
                jobs = selected
    return Settings(
        **sections,
        sources=sources,
        config_path=path,
        base_dir=base_dir,
        environment=chosen,
        environments={name: dict(values) for name, values in environments.items()},
        jobs=jobs,
    )


def _find_config(
    config_path: str | os.PathLike[str] | None, environ: Mapping[str, str]
) -> Path | None:
    explicit = config_path or environ.get(CONFIG_ENV)
    if explicit:
        path = Path(explicit)
        if not path.is_file():
            raise _not_a_config_file(path)
        return path
    default = Path.cwd() / CONFIG_FILE
    return default if default.is_file() else None


def _not_a_config_file(path: Path) -> ConfigError:
    """Why `path` (which is not a regular file) cannot be the config: missing, a directory, a
    FIFO…"""
    import stat

    try:
        mode = path.stat().st_mode
    except OSError:
        return ConfigError(
            f"config file {path} does not exist",
            "Pass an existing file with --config or run `gcpfargate init`",
        )
    kind = (
        "a directory"
        if stat.S_ISDIR(mode)
        else "a FIFO"
        if stat.S_ISFIFO(mode)
        else "a device"
        if stat.S_ISCHR(mode) or stat.S_ISBLK(mode)
        else "not a regular file"
    )
    return ConfigError(
        f"config file {path} is {kind}", "Pass the path of a gcpfargate.toml file with --config"
    )


def _read_file(
    path: Path,
) -> tuple[dict[str, Any], dict[str, dict[str, Any]], dict[str, Any]]:
    """The file's settings, flat by `section.key`, each environment's overlay likewise, and the
    job tables: the file's under "", each environment's under its name."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(
            f"cannot parse {path}: {exc}", "Fix the TOML syntax at that position"
        ) from None
    except RecursionError:
        raise ConfigError(
            f"cannot parse {path}: arrays or tables nest too deeply",
            "gcpfargate's settings are at most two levels deep",
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from None
    environments: dict[str, dict[str, Any]] = {}
    job_tables: dict[str, Any] = {"": data.pop(JOBS, {})}
    overlays = data.pop(ENVIRONMENTS, {})
    if not isinstance(overlays, dict):
        raise ConfigError(f"{ENVIRONMENTS} in {path} must be a table ([{ENVIRONMENTS}.NAME])")
    for name, overlay in overlays.items():
        if not isinstance(overlay, dict):
            raise ConfigError(f"{ENVIRONMENTS}.{name} in {path} must be a table")
        overlay = dict(overlay)
        job_tables[name] = overlay.pop(JOBS, {})
        environments[name] = _flatten(overlay, path, f"{ENVIRONMENTS}.{name}.")
    return _flatten(data, path, ""), environments, job_tables


def _flatten(data: dict[str, Any], path: Path, prefix: str) -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for section, table in data.items():
        if section not in SCHEMA:
            raise ConfigError(
                f"unknown section [{prefix}{section}] in {path}{_suggest(section, SCHEMA)}"
            )
        if not isinstance(table, dict):
            raise ConfigError(f"{prefix}{section} in {path} must be a table ([{section}])")
        for key, value in table.items():
            dotted = f"{section}.{key}"
            if key not in SCHEMA[section]:
                raise ConfigError(
                    f"unknown key {prefix}{dotted} in {path}{_suggest(key, SCHEMA[section])}"
                )
            flat[dotted] = _check_type(dotted, value, SCHEMA[section][key], f"in {path}")
    return flat


def _read_env(environ: Mapping[str, str]) -> dict[str, Any]:
    by_name = {
        env_name(f"{s}.{k}"): f"{s}.{k}"
        for s, keys in SCHEMA.items()
        for k in keys
        if keys[k].kind is not dict
    }  # tables come from the file only
    flat: dict[str, Any] = {}
    for name, raw in environ.items():
        if not name.startswith("GCPFARGATE_") or name in _NON_SETTING_ENV:
            continue
        dotted = by_name.get(name)
        if raw == "" and dotted is not None:
            # an empty variable is unset, as in most tools: it never blanks out the file's value
            continue
        if dotted is None:
            section = name.removeprefix("GCPFARGATE_").split("_", 1)[0].lower()
            if section in SCHEMA:  # a known section with an unknown key: almost surely a typo
                known = {env_name(d): d for d in by_name.values() if d.startswith(section + ".")}
                raise ConfigError(
                    f"unknown setting in environment variable {name}{_suggest(name, known)}"
                )
            continue
        section, key = dotted.split(".")
        flat[dotted] = _parse_env(name, raw, SCHEMA[section][key])
    return flat


def _read_flags(overrides: Overrides) -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for dotted, value in dict(overrides).items():
        section, _, key = dotted.partition(".")
        if key not in SCHEMA.get(section, {}):
            raise ValueError(
                f"no setting {dotted!r} to override"
            )  # a bug in a command, not user input
        if value is not None:
            flat[dotted] = _check_type(dotted, value, SCHEMA[section][key], "given as a flag")
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
            raise ConfigError(
                f"environment variable {name} must be a whole number, not {raw!r}"
            ) from None
    if spec.kind is list:
        return [item.strip() for item in raw.split(",") if item.strip()]
    return raw


def _check_type(dotted: str, value: Any, spec: Key, where: str) -> Any:
    names = {
        str: "a string",
        bool: "true or false",
        int: "a whole number",
        list: "a list of strings",
        dict: "a table",
    }
    ok = isinstance(value, spec.kind) and not (spec.kind is int and isinstance(value, bool))
    if ok and spec.item is not None:
        ok = all(
            isinstance(item, spec.item)
            for item in (value.values() if isinstance(value, dict) else value)
        )
    if not ok:
        raise ConfigError(
            f"{dotted} {where} must be {names[spec.kind]}, not {type(value).__name__} "
            f"{_short(value)}"
        )
    return value


def _validate(dotted: str, value: Any, spec: Key, source: str, path: Path | None) -> None:
    if spec.validate is None or value in ("", None, []):
        return
    if reason := spec.validate(value):
        origin = {
            "flag": "flag",
            "env": f"environment variable {env_name(dotted)}",
            "file": str(path),
            "default": "default",
        }[source]
        raise ConfigError(f"{dotted} = {_short(value)} ({origin}) {reason}", RULES.get(dotted, ""))


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _suggest(word: str, choices: Mapping[str, Any]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f" (did you mean {close[0]}?)" if close else f" (known: {', '.join(choices)})"
