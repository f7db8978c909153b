"""Recognise the hand-built recipe `init --from-family` meets most: the key secret in a variable and
a shell start-up step that writes it to a file, e.g.

    command: ["sh", "-c", "echo \"$KEY\" > /tmp/key.json && exec python main.py"]
    environment: GOOGLE_APPLICATION_CREDENTIALS=/tmp/key.json, secrets: KEY <- arn:…:secret:…

The echo wrapper is stripped (register-task adds its own, safer one), the program stays as the
explicit entryPoint, and the path, variable and secret go to the settings.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from typing import Any

CREDENTIALS_VARIABLE = "GOOGLE_APPLICATION_CREDENTIALS"
_SHELLS = ("sh", "/bin/sh", "bash", "/bin/bash", "/usr/bin/env sh")
# echo "$KEY" > /path && exec prog …   (also printf '%s' "$KEY", ${KEY}, >|, ';' instead of '&&')
_WRITE = re.compile(
    r"""\s*(?:echo(?:\s+-[nE]+)?|printf\s+(?:'%s'|"%s"|%s))\s+"?\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?"?"""
    r"""\s*>\|?\s*(['"]?)(/[^\s'";&]+)\2\s*(?:&&|;)\s*(?:exec\s+)?(.+?)\s*""",
    re.S,
)


@dataclass(frozen=True)
class Recipe:
    credentials_env: str
    credentials_path: str
    secret_arn: str
    argv: list[str]


def recognise(container: dict[str, Any]) -> Recipe | None:
    """The recipe in `container`, or None when it does not follow it."""
    argv = [*(container.get("entryPoint") or []), *(container.get("command") or [])]
    if len(argv) != 3 or argv[0] not in _SHELLS or argv[1] != "-c":
        return None
    match = _WRITE.fullmatch(argv[2])
    if match is None:
        return None
    variable, path, rest = match.group(1), match.group(3), match.group(4)
    secrets = {
        item.get("name"): str(item.get("valueFrom", "")) for item in container.get("secrets") or []
    }
    environment = {
        item.get("name"): item.get("value") for item in container.get("environment") or []
    }
    if variable not in secrets or environment.get(CREDENTIALS_VARIABLE) not in (None, path):
        return None
    try:
        program = shlex.split(rest)
    except ValueError:
        return None
    return Recipe(variable, path, secrets[variable], program) if program else None


def strip(container: dict[str, Any], recipe: Recipe) -> None:
    """Turn the recipe's container into a plain one: the program only; wiring adds the key again."""
    container["entryPoint"] = recipe.argv
    container.pop("command", None)
    container["secrets"] = [
        s for s in container.get("secrets") or [] if s.get("name") != recipe.credentials_env
    ]
    container["environment"] = [
        e for e in container.get("environment") or [] if e.get("name") != CREDENTIALS_VARIABLE
    ]
    for key in ("secrets", "environment"):
        if not container[key]:
            container.pop(key)


def account_of(client_email: str) -> tuple[str, str]:
    """(project, account email) from a key's client_email
    (`name@project.iam.gserviceaccount.com`)."""
    match = re.fullmatch(r"[^@]+@([a-z][a-z0-9-]+)\.iam\.gserviceaccount\.com", client_email)
    return (match.group(1) if match else "", client_email)
