"""Where the wrapper may write the key and which variable may carry it.

Each rule is a validator of the settings schema: `(value) -> reason | None`. They are also applied
by the wrapper itself (core/wiring.py), so a value that slipped past the settings still cannot
become a task definition.

- `task.credentials_path`: an absolute, normalised file path under a writable data directory, never
  in `/` itself nor under the system's directories (`/proc/self/fd/1` would write the key to
  stdout, that is CloudWatch Logs; `/etc/passwd` would replace a system file).
- `task.credentials_env`: a variable name that neither the wrapper nor the app relies on (`PATH`,
  `HOME`, `GOOGLE_APPLICATION_CREDENTIALS`, the shell's own, the ones ECS and the AWS SDKs read).
"""

from __future__ import annotations

import posixpath
import re
from typing import Any

# Variables that make a shell run code or trace its commands before (or while) the wrapper runs:
# with /bin/sh being bash (Amazon Linux, UBI, RHEL images), SHELLOPTS=xtrace traces the wrapper's
# `printf` with the key expanded into stderr (CloudWatch Logs); BASH_ENV and ENV name a script a
# shell sources first, BASHOPTS sets shopt options. Never in a wired container's environment.
SHELL_STARTUP_VARIABLES = ("SHELLOPTS", "BASHOPTS", "BASH_ENV", "ENV")


def shell_startup_problem(name: str) -> str | None:
    """Why a variable of this name must not reach a container whose start-up wrapper holds the
    key."""
    if name in SHELL_STARTUP_VARIABLES:
        return (
            f"{name} changes how the start-up shell runs (tracing or sourcing code before the "
            "wrapper), which could print the key to the logs"
        )
    return None


# Variables that hold the deployer's own credentials (or name a file that does).
CREDENTIAL_VARIABLES = frozenset(
    {
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_SECURITY_TOKEN",
        "AWS_CONTAINER_AUTHORIZATION_TOKEN",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
        "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
        "GOOGLE_APPLICATION_CREDENTIALS",
        "GOOGLE_CREDENTIALS",
        "GOOGLE_CLOUD_KEYFILE_JSON",
        "GCLOUD_KEYFILE_JSON",
        "GOOGLE_OAUTH_ACCESS_TOKEN",
        "CLOUDSDK_AUTH_ACCESS_TOKEN_FILE",
        "CLOUDSDK_AUTH_CREDENTIAL_FILE_OVERRIDE",
        "GOOGLE_GHA_CREDS_PATH",
        "ACTIONS_ID_TOKEN_REQUEST_TOKEN",
        "ACTIONS_RUNTIME_TOKEN",
        "GITHUB_TOKEN",
    }
)


# Variables with this prefix are meant for templates: env() reads them without listing them.
TEMPLATE_VARIABLE_PREFIX = "GCPFARGATE_VAR_"
_VARIABLE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def template_env_var_problem(name: Any) -> str | None:
    """task.env_vars: a variable name a template may read, never one holding the deployer's
    credentials."""
    if not isinstance(name, str) or not _VARIABLE_NAME.fullmatch(name):
        return "is not an environment variable name"
    if name.upper() in CREDENTIAL_VARIABLES:
        return "holds the deployer's credentials, which a template may never read"
    return None


# Top-level directories that hold the system, the kernel's views or devices: never a key file's
# home.
SYSTEM_DIRECTORIES = frozenset(
    {
        "proc",
        "dev",
        "sys",
        "bin",
        "sbin",
        "usr",
        "lib",
        "lib32",
        "lib64",
        "libx32",
        "etc",
        "boot",
        "lost+found",
    }
)
# Variables the wrapper (POSIX sh), the dynamic loader, the app's Google/AWS libraries or ECS rely
# on.
RESERVED_VARIABLES = frozenset(
    {
        "PATH",
        "HOME",
        "USER",
        "LOGNAME",
        "SHELL",
        "PWD",
        "OLDPWD",
        "IFS",
        "ENV",
        "BASH_ENV",
        "CDPATH",
        "PS1",
        "PS2",
        "PS4",
        "OPTIND",
        "OPTARG",
        "TMPDIR",
        "TERM",
        "LANG",
        "LANGUAGE",
        "HOSTNAME",
        "TZ",
        "UMASK",
        "GOOGLE_APPLICATION_CREDENTIALS",
        "GOOGLE_CLOUD_PROJECT",
        "GCLOUD_PROJECT",
        "CLOUDSDK_CONFIG",
        "PYTHONPATH",
        "PYTHONHOME",
        "PYTHONSTARTUP",
        "NODE_OPTIONS",
        "JAVA_TOOL_OPTIONS",
    }
)
RESERVED_PREFIXES = ("AWS_", "ECS_", "LD_", "LC_")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def credentials_path_problem(value: Any) -> str | None:
    path = str(value)
    if not path.startswith("/") or "\x00" in path:
        return "must be an absolute path"
    if path.endswith("/"):
        return "must be a file path, not a directory"
    if path.startswith("//") or posixpath.normpath(path) != path:
        return f"must be normalised (no '.', '..' or '//'; {posixpath.normpath(path)!r}?)"
    parts = path.split("/")[1:]
    if len(parts) < 2:
        return "must be in a data directory (such as /tmp/gcp/credentials.json), not in / itself"
    if parts[0] in SYSTEM_DIRECTORIES:
        return (
            f"is under /{parts[0]}, a system directory; "
            "use a data directory such as /tmp/gcp or /var/lib/app"
        )
    return None


def credentials_env_problem(value: Any) -> str | None:
    name = str(value)
    if not _NAME.fullmatch(name):
        return "is not a valid environment variable name"
    upper = name.upper()
    if upper in RESERVED_VARIABLES or upper.startswith(RESERVED_PREFIXES):
        return (
            "is a variable the wrapper, the app or ECS relies on (the wrapper unsets it after "
            "writing the key); choose another name, such as GCP_CREDENTIALS_JSON"
        )
    return None
