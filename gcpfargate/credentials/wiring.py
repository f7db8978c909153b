"""Credential wiring: a pure transformation of a task definition (no AWS, no Docker).

For each target container the key arrives through ECS `secrets` as an environment variable, and a
start-up wrapper (POSIX `sh`: dash, busybox, bash) writes it to `credentials_path` with mode 0600,
removes the variable and `exec`s the original program. The wrapper is:

    entryPoint = ["/bin/sh", "-c", SCRIPT, "gcpfargate-wrapper", *original_entrypoint]
    command    = original_command

Docker's model is kept: the wrapper and the ENTRYPOINT go in `entryPoint`, the
CMD (or the template's `command`) stays in `command`, so an ECS `containerOverrides.command` (the
console's "run with override", `aws ecs run-task --overrides`, EventBridge targets) replaces
exactly the CMD, as it would without gcpfargate. ECS starts `entryPoint + command`; both travel to
the script as positional parameters and it ends with `exec "$@"`, so no argument is ever
re-quoted: quotes, spaces, `$`, newlines reach the program exactly. The original entry point and
command follow Docker's rules: the template's entryPoint (with its command, if any), else the
image's ENTRYPOINT with the template's command or the image's CMD. `printf` is a shell builtin in
dash and busybox, so the key is never in a process's argv (/proc/*/cmdline).

The script's first line is `{ set +xv; } 2>/dev/null`: where /bin/sh is bash, `SHELLOPTS=xtrace`
in the image or task environment would otherwise trace the `printf` line, key expanded, to stderr
(CloudWatch Logs); the braces send the trace of `set +xv` itself to /dev/null. A wired container's
environment may not set SHELLOPTS, BASHOPTS, BASH_ENV or ENV (the template's, and the image's
when its config is read to find the original argv).
"""

from __future__ import annotations

import copy
import posixpath
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from gcpfargate.ecs import fargate_rules
from gcpfargate.errors import TemplateError
from gcpfargate.keymaterial.keyscan import key_paths, key_text
from gcpfargate.keymaterial.rules import (
    credentials_env_problem,
    credentials_path_problem,
    shell_startup_problem,
)

# Turns off xtrace/verbose before anything else runs; its own trace line goes to /dev/null.
XTRACE_OFF = "{ set +xv; } 2>/dev/null"
MARKER = "# gcpfargate credentials wrapper v2"
# What the script starts with; v1 (no XTRACE_OFF) is still recognised as gcpfargate's, so doctor
# and `init --from-family` see it, and register-task replaces it.
HEAD = f"{XTRACE_OFF}\n{MARKER}"
LEGACY_MARKER = "# gcpfargate credentials wrapper v1"
WRAPPER_NAME = "gcpfargate-wrapper"  # $0 of the script: what `ps` and error messages show
SHELL = ["/bin/sh", "-c"]
CREDENTIALS_VARIABLE = "GOOGLE_APPLICATION_CREDENTIALS"

# image -> the image config's "config" section (Entrypoint, Cmd, ...); raises when it cannot be read
ImageConfig = Callable[[str], Mapping[str, Any]]
# image -> its configured USER ("" when it sets none, so root), None when it cannot be read
ImageUser = Callable[[str], "str | None"]


def no_user(image: str) -> str | None:
    """An ImageUser for callers whose images set no USER (the wiring's pure callers and tests)."""
    return ""


def sh_quote(text: str) -> str:
    """Single-quote for POSIX sh: the only character needing care inside '...' is ' itself."""
    return "'" + text.replace("'", "'\\''") + "'"


def wrapper_script(credentials_env: str, credentials_path: str) -> str:
    if reason := credentials_env_problem(credentials_env):
        raise TemplateError(f"task.credentials_env {credentials_env!r} {reason}")
    if reason := credentials_path_problem(credentials_path):
        raise TemplateError(f"task.credentials_path {credentials_path!r} {reason}")
    var, path = credentials_env, sh_quote(credentials_path)
    directory = sh_quote(posixpath.dirname(credentials_path) or "/")
    # Messages name the variable and path only; the value is never echoed.
    return "\n".join(
        [
            XTRACE_OFF,
            MARKER,
            "set -eu",
            "umask 077",
            f'if [ -z "${{{var}:-}}" ]; then',
            f'  echo "gcpfargate-wrapper: environment variable {var} is empty or unset: the task '
            "definition's"
            ' secrets did not deliver the key" >&2',
            "  exit 1",
            "fi",
            f'mkdir -p {directory} || {{ echo "gcpfargate-wrapper: cannot create directory '
            f'"{directory} >&2; exit 1; }}',
            f"rm -f {path} 2>/dev/null || :",
            f"printf '%s' \"${var}\" > {path} || "
            f'{{ echo "gcpfargate-wrapper: cannot write "{path} >&2; exit 1; }}',
            f"chmod 600 {path}",
            f"unset {var}",
            'exec "$@"',
            "",
        ]
    )


def is_wrapped(container: Mapping[str, Any]) -> bool:
    entry = container.get("entryPoint") or []
    return (
        len(entry) >= 4
        and entry[:2] == SHELL
        and str(entry[2]).startswith((HEAD, LEGACY_MARKER))
        and entry[3] == WRAPPER_NAME
    )


def is_legacy_wrapper(container: Mapping[str, Any]) -> bool:
    """A wrapper written by an older gcpfargate (one that does not turn xtrace off first)."""
    return is_wrapped(container) and str(container["entryPoint"][2]).startswith(LEGACY_MARKER)


def shell_startup_names(environment: Any) -> list[str]:
    """The SHELLOPTS-like names set in an ECS `environment` list or an image config's `Env`."""
    names = []
    for item in environment or []:
        if isinstance(item, Mapping):
            name = str(item.get("name", ""))
        else:
            name = str(item).partition("=")[0]
        if shell_startup_problem(name):
            names.append(name)
    return names


def is_exact_wrapper(container: Mapping[str, Any]) -> bool:
    """Whether the container's wrapper is, byte for byte, the script gcpfargate writes for the
    variable and path it names (not merely one that carries the marker)."""
    unwrapped = unwrap(container)
    if unwrapped is None:
        return False
    try:
        return str(container["entryPoint"][2]) == wrapper_script(
            unwrapped.credentials_env, unwrapped.credentials_path
        )
    except TemplateError:
        return False


@dataclass(frozen=True)
class Unwrapped:
    argv: list[str]
    credentials_env: str
    credentials_path: str


_WRITES = re.compile(r"printf '%s' \"\$([A-Za-z_][A-Za-z0-9_]*)\" > ('(?:[^']|'\\'')*')")


def unwrap(container: Mapping[str, Any]) -> Unwrapped | None:
    """What a wrapped container runs and where it writes the key; None when it is not wrapped."""
    if not is_wrapped(container):
        return None
    entry = list(container["entryPoint"])
    match = _WRITES.search(entry[2])
    env_name, quoted = (match.group(1), match.group(2)) if match else ("", "''")
    path = quoted[1:-1].replace("'\\''", "'")
    return Unwrapped(
        argv=entry[4:] + list(container.get("command") or []),
        credentials_env=env_name,
        credentials_path=path,
    )


def original_parts(
    container: Mapping[str, Any], image_config: ImageConfig
) -> tuple[list[str], list[str] | None]:
    """(entry point, command) the container runs without gcpfargate, by Docker's rules; the command
    is None when there is none (the image is read only when needed)."""
    command = list(container.get("command") or []) or None
    if is_wrapped(container):
        return list(container["entryPoint"])[4:], command
    entry = list(container.get("entryPoint") or [])
    if entry:  # Docker: an entry point from the template drops the image's CMD
        return entry, command
    image = str(container.get("image", ""))
    try:
        config = image_config(image)
    except TemplateError as exc:  # an image gcpfargate cannot read: say what to write instead
        raise TemplateError(
            f"container {container.get('name')}: {exc.message}",
            f'Set "entryPoint" (and "command") for container {container.get("name")} in the '
            "template to what the image runs (`docker image inspect --format "
            f"'{{{{json .Config.Entrypoint}}}} {{{{json .Config.Cmd}}}}' {image}` shows it), "
            "or leave the container out of task.containers",
        ) from None
    image_entry = list(config.get("Entrypoint") or [])
    command = command or list(config.get("Cmd") or []) or None
    if not image_entry and not command:
        raise TemplateError(
            f"container {container.get('name')}: nothing to run: the template sets no "
            f"entryPoint/command and image {container.get('image')} has no ENTRYPOINT or CMD",
            'Set "entryPoint" or "command" in the template',
        )
    return image_entry, command


def wrap_program(container: dict[str, Any], script: str, image_config: ImageConfig) -> None:
    """Put the wrapper in front of the container's program, keeping Docker's split (see the module
    docstring): the wrapper and the ENTRYPOINT in `entryPoint`, the CMD in `command`, so a command
    override replaces exactly the CMD. Key and keyless wiring both use it."""
    entry, command = original_parts(container, image_config)
    container["entryPoint"] = [*SHELL, script, WRAPPER_NAME, *entry]
    if command:
        container["command"] = command
    else:
        container.pop("command", None)


def original_argv(container: Mapping[str, Any], image_config: ImageConfig) -> list[str]:
    """What the container runs without gcpfargate, by Docker's rules (the image is read only when
    needed)."""
    entry, command = original_parts(container, image_config)
    return entry + (command or [])


def check_environment(definition: Mapping[str, Any], credentials_env: str) -> None:
    """The key must only ever arrive through `secrets`: refuse key text anywhere in the definition
    (command, entryPoint, dockerLabels, log options, … at any depth) and its variable in
    `environment`."""
    found = key_paths(definition, is_key=key_text)
    if found:
        raise TemplateError(
            f"the task definition holds what looks like private key text at {', '.join(found[:5])}",
            "Never put a key in a task definition (an env() value or an included file): "
            "gcpfargate delivers it through secrets",
        )
    for index, container in enumerate(definition.get("containerDefinitions") or []):
        for position, item in enumerate(container.get("environment") or []):
            if str(item.get("name", "")) == credentials_env:
                raise TemplateError(
                    f"containerDefinitions[{index}].environment[{position}] sets "
                    f"{credentials_env}, "
                    "the variable that carries the key",
                    "Remove it: gcpfargate adds it under secrets (task.credentials_env)",
                )


def image_name(image: str) -> str:
    """`host/repo:tag@sha256:…` → `host/repo`: the image whatever its tag or digest."""
    name = image.split("@", 1)[0]
    return name[: name.rfind(":")] if name.rfind(":") > name.rfind("/") else name


def target_names(
    definition: Mapping[str, Any], containers: Sequence[str] | None, image: str | None = None
) -> list[str]:
    """The containers that get the credentials: those `containers` (task.containers) names; else
    those that run `image`, the image gcpfargate built (`{{ image }}`), whatever its tag or digest;
    else, when none does (a template without `{{ image }}`), the essential ones. Sidecars (an App
    Mesh envoy, a FireLens log router, a CloudWatch agent) run images of their own, so they are
    left exactly as written unless named."""
    defined = [str(c.get("name")) for c in definition.get("containerDefinitions") or []]
    if containers:
        unknown = [name for name in containers if name not in defined]
        if unknown:
            raise TemplateError(
                f"task.containers names {', '.join(unknown)}, which the template does not define",
                f"Containers in the template: {', '.join(defined) or 'none'}",
            )
        return list(containers)
    if image:
        ours = [
            str(c.get("name"))
            for c in definition.get("containerDefinitions") or []
            if image_name(str(c.get("image", ""))) == image_name(image)
        ]
        if ours:
            return ours
    essential = [
        str(c.get("name"))
        for c in definition.get("containerDefinitions") or []
        if c.get("essential", True)
    ]
    if not essential:
        raise TemplateError(
            "the task definition has no essential container to give the credentials to",
            'Mark one "essential": true or list names in task.containers',
        )
    return essential


def check_shell_startup(
    definition: Mapping[str, Any], containers: Sequence[str] | None, image: str | None = None
) -> None:
    """The target containers' template `environment` sets none of SHELLOPTS, BASHOPTS, BASH_ENV,
    ENV: deploy checks this with the rendered template before it creates anything."""
    for container in definition.get("containerDefinitions") or []:
        if container.get("name") not in set(target_names(definition, containers, image)):
            continue
        variables = shell_startup_names(container.get("environment"))
        if variables:
            raise TemplateError(
                f"container {container.get('name')}: environment sets {variables[0]}: "
                f"{shell_startup_problem(variables[0])}",
                f"Remove {', '.join(variables)} from it: the container's start-up wrapper holds "
                "the key",
            )


def _recording(image_config: ImageConfig, read: list[Mapping[str, Any]]) -> ImageConfig:
    """`image_config` that also keeps each config it reads in `read` (its Env is checked too)."""

    def reading(image: str) -> Mapping[str, Any]:
        config = image_config(image)
        read.append(config)
        return config

    return reading


def _once(read: list[Mapping[str, Any]], image_config: ImageConfig) -> ImageConfig:
    """The config `read` holds already, else `image_config`'s: one registry read per container."""
    return lambda image: read[0] if read else image_config(image)


# The tmpfs every wired container gets for its credentials directory: a few MiB, in memory only.
TMPFS_MIB = 4
# The directory modes gcpfargate's credentials tmpfs is made with (see tmpfs_options).
_OWN_MODES = ("mode=0700", "mode=1777")


def needs_credentials_tmpfs(container: Mapping[str, Any], directory: str) -> bool:
    """Whether nothing the definition mounts already holds `directory` writable: no writable task
    volume (mountPoints) and no tmpfs of the template's own covers it."""
    if any(fargate_rules.covers(mount, directory) for mount in container.get("mountPoints") or []):
        return False
    return not any(
        fargate_rules.covers(mount, directory)
        for mount in (container.get("linuxParameters") or {}).get("tmpfs") or []
    )


def tmpfs_options(user: str | None) -> list[str]:
    """Mount options that let `user` (the container's `user`, else its image's USER; None when
    unknown) write the key into the tmpfs, and nobody else read it. Every option is one ECS lists
    for `Tmpfs.mountOptions` (ECS API reference, Tmpfs: "mode", "uid", "gid", …):

    - root (no USER, "0", "root"): `mode=0700`, root's own;
    - a numeric uid: `mode=0700,uid=…,gid=…`, that user's own (tmpfs takes numeric ids only);
    - a user name, or an image whose USER cannot be read: `mode=1777`, like /tmp: the wrapper runs
      as that user and writes the key 0600 (umask 077), so other users see only the file's name.
    """
    if user is None:
        return ["mode=1777"]
    uid, _, gid = user.partition(":")
    if uid in ("", "0", "root"):
        return ["mode=0700"]
    if uid.isdigit():
        return ["mode=0700", f"uid={uid}", f"gid={gid if gid.isdigit() else uid}"]
    return ["mode=1777"]


def credentials_tmpfs(
    container: Mapping[str, Any], directory: str, image_user: str | None = ""
) -> dict[str, Any] | None:
    """The `linuxParameters.tmpfs` mount the key gets in `container` (every wired one, read-only
    root or not), so it lives in memory and never reaches a disk (ECS supports tmpfs on Fargate
    since 2026-01, aws/containers-roadmap#736); None when a writable mount or tmpfs of the
    template's already holds `directory`. The container's `user` wins over `image_user`, the
    image's USER, as it does in ECS and Docker."""
    if not needs_credentials_tmpfs(container, directory):
        return None
    user = str(container.get("user") or "") or image_user
    return {"containerPath": directory, "size": TMPFS_MIB, "mountOptions": tmpfs_options(user)}


def tmpfs_targets(
    definition: Mapping[str, Any],
    containers: Sequence[str] | None,
    image: str | None,
    credentials_path: str,
) -> list[str]:
    """The containers wiring would give a credentials tmpfs (for checks before wiring runs)."""
    directory = posixpath.dirname(credentials_path) or "/"
    names = set(target_names(definition, containers, image))
    return [
        str(container.get("name"))
        for container in definition.get("containerDefinitions") or []
        if container.get("name") in names and needs_credentials_tmpfs(container, directory)
    ]


def _is_credentials_tmpfs(mount: Mapping[str, Any], directory: str) -> bool:
    return (
        mount.get("containerPath") == directory
        and mount.get("size") == TMPFS_MIB
        and list(mount.get("mountOptions") or [])[:1] in ([mode] for mode in _OWN_MODES)
    )


def app_containers(definition: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The containers that run the user's job: the wired ones, else the essential ones. A sidecar
    may come first in the definition (a FireLens log_router often does) and is never the job."""
    containers = [c for c in definition.get("containerDefinitions") or [] if isinstance(c, dict)]
    return [c for c in containers if is_wrapped(c)] or [
        c for c in containers if c.get("essential", True)
    ]


def wire(
    definition: Mapping[str, Any],
    *,
    secret_arn: str,
    credentials_env: str,
    credentials_path: str,
    containers: Sequence[str] | None,
    image_config: ImageConfig,
    image: str | None = None,
    image_user: ImageUser = no_user,
) -> dict[str, Any]:
    """A copy of `definition` with the credentials wired into each target container (`image`: the
    image gcpfargate built, see target_names); the others are not touched. `image_user` gives an
    image's USER for the credentials tmpfs when the container sets no `user`."""
    check_environment(definition, credentials_env)
    wired = copy.deepcopy(dict(definition))
    script = wrapper_script(credentials_env, credentials_path)
    names = set(target_names(wired, containers, image))
    for container in wired.get("containerDefinitions") or []:
        if container.get("name") not in names:
            continue
        name = container.get("name")
        read: list[Mapping[str, Any]] = []
        reading = _recording(image_config, read)
        original_parts(container, reading)  # reads the image's config only when Docker would
        for where, variables in (
            ("environment", shell_startup_names(container.get("environment"))),
            (
                f"image {container.get('image')}'s Env",
                shell_startup_names(read and read[0].get("Env")),
            ),
        ):
            if variables:
                raise TemplateError(
                    f"container {name}: {where} sets {variables[0]}: "
                    f"{shell_startup_problem(variables[0])}",
                    f"Remove {', '.join(variables)} from it: the container's start-up wrapper "
                    "holds the key",
                )
        wrap_program(container, script, _once(read, image_config))
        secrets = [s for s in container.get("secrets") or [] if s.get("name") != credentials_env]
        for item in container.get("secrets") or []:
            if item.get("name") == credentials_env and item.get("valueFrom") != secret_arn:
                raise TemplateError(
                    f"container {name}: secrets already sets {credentials_env} from another secret",
                    "Remove it from the template, or set task.wire_credentials = false",
                )
        environment = [
            e for e in container.get("environment") or [] if e.get("name") != CREDENTIALS_VARIABLE
        ]
        for item in container.get("environment") or []:
            if item.get("name") == CREDENTIALS_VARIABLE and item.get("value") != credentials_path:
                raise TemplateError(
                    f"container {name}: environment sets {CREDENTIALS_VARIABLE} to "
                    f"{item.get('value')!r}, not task.credentials_path {credentials_path!r}",
                    "Remove it from the template, or change task.credentials_path",
                )
        container["secrets"] = [*secrets, {"name": credentials_env, "valueFrom": secret_arn}]
        container["environment"] = [
            *environment,
            {"name": CREDENTIALS_VARIABLE, "value": credentials_path},
        ]
        add_credentials_tmpfs(container, credentials_path, _user_of(read, image_user))
    return wired


def _user_of(read: list[Mapping[str, Any]], image_user: ImageUser) -> ImageUser:
    """`image_user`, answered from the config `read` holds when the wiring read it already."""
    return lambda image: str(read[0].get("User") or "") if read else image_user(image)


def add_credentials_tmpfs(
    container: dict[str, Any], credentials_path: str, image_user: ImageUser = no_user
) -> None:
    """Give `container`, in place, the tmpfs its credentials file needs (credentials_tmpfs); the
    image's USER is asked for only when the container needs one and sets no `user`."""
    directory = posixpath.dirname(credentials_path) or "/"
    if not needs_credentials_tmpfs(container, directory):
        return
    user = "" if container.get("user") else image_user(str(container.get("image", "")))
    mount = credentials_tmpfs(container, directory, user)
    if mount is not None:
        linux = dict(container.get("linuxParameters") or {})
        linux["tmpfs"] = [*(linux.get("tmpfs") or []), mount]
        container["linuxParameters"] = linux


def unwire(
    definition: Mapping[str, Any], image_config: Callable[[str], Mapping[str, Any] | None]
) -> tuple[dict[str, Any], list[str]]:
    """The inverse of `wire` for `init --from-family`: the definition as a template would write it.

    Returns the definition and the secret ARNs the wiring used. `image_config` may return None when
    the image cannot be read; the original argv then stays as an explicit entryPoint.
    """
    plain = copy.deepcopy(dict(definition))
    secret_arns: list[str] = []
    for container in plain.get("containerDefinitions") or []:
        unwrapped = unwrap(container)
        if unwrapped is None:
            continue
        secret_arns.extend(
            s.get("valueFrom", "")
            for s in container.get("secrets") or []
            if s.get("name") == unwrapped.credentials_env
        )
        container["secrets"] = [
            s for s in container.get("secrets") or [] if s.get("name") != unwrapped.credentials_env
        ]
        container["environment"] = [
            e
            for e in container.get("environment") or []
            if not (
                e.get("name") == CREDENTIALS_VARIABLE
                and e.get("value") == unwrapped.credentials_path
            )
        ]
        for key in ("secrets", "environment"):
            if not container[key]:
                container.pop(key)
        _drop_credentials_tmpfs(container, posixpath.dirname(unwrapped.credentials_path) or "/")
        entry, command = list(container.pop("entryPoint"))[4:], container.pop("command", None)
        container.update(
            _as_template_argv(entry, command, image_config(str(container.get("image", ""))))
        )
    return plain, secret_arns


def _drop_credentials_tmpfs(container: dict[str, Any], directory: str) -> None:
    linux = container.get("linuxParameters")
    if not isinstance(linux, dict) or not linux.get("tmpfs"):
        return
    linux["tmpfs"] = [m for m in linux["tmpfs"] if not _is_credentials_tmpfs(m, directory)]
    if not linux["tmpfs"]:
        linux.pop("tmpfs")
    if not linux:
        container.pop("linuxParameters")


def _as_template_argv(
    entry: list[str], command: list[str] | None, config: Mapping[str, Any] | None
) -> dict[str, list[str]]:
    """The shortest entryPoint/command that gives this entry point and command on this image, by
    Docker's rules (an image that cannot be read keeps both explicit)."""
    if config is not None and entry == list(config.get("Entrypoint") or []):
        return {"command": command} if command and command != list(config.get("Cmd") or []) else {}
    shown: dict[str, list[str]] = {"entryPoint": entry} if entry else {}
    return {**shown, "command": command} if command else shown
