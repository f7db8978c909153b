"""Start-up stays instant: `--help`, `--version` and shell completion load no cloud SDK.

Each case runs the real entry point in a fresh interpreter with `-X importtime`, which lists every
module the process imported, so a heavy import sneaking into a CLI module's top level fails here
by name. Timing is measured by `make bench` (bench/run.py), not asserted here.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

# Packages that cost tens to hundreds of milliseconds each; commands import them when they run.
HEAVY = ("boto3", "botocore", "docker", "google", "grpc", "jinja2", "requests")
# Typer itself uses rich to describe zsh/fish completion items; plain help and --version must not
# need it.
NO_RICH = ("help", "version", "command help", "bash completion")
# Core and adapters pull the SDKs in; the CLI modules must import them inside the command functions.
PRODUCT_INTERNALS = (
    "gcpfargate.core",
    "gcpfargate.clients",
    "gcpfargate.config",
    "gcpfargate.settings",
    "gcpfargate.console",
)

CASES = {
    "help": (["--help"], {}),
    "version": (["--version"], {}),
    "command help": (["deploy", "--help"], {}),
    "bash completion": (
        [],
        {"_GCPFARGATE_COMPLETE": "complete_bash", "COMP_WORDS": "gcpfargate de", "COMP_CWORD": "1"},
    ),
    "zsh completion": (
        [],
        {
            "_GCPFARGATE_COMPLETE": "complete_zsh",
            "_TYPER_COMPLETE_ARGS": "gcpfargate push-image --",
        },
    ),
    # Typer detects the user's shell from the process tree, which a test runner may not have: name
    # it.
    "show completion": (
        ["--show-completion", "bash"],
        {"_TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION": "1"},
    ),
}


def _clean_env(extra: dict[str, str]) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("GCPFARGATE_", "_GCPFARGATE_", "COMP_"))
    }
    env.update(extra)
    return env


def imported_modules(
    args: list[str], extra_env: dict[str, str]
) -> tuple[subprocess.CompletedProcess[str], set[str]]:
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "gcpfargate", *args],
        capture_output=True,
        text=True,
        env=_clean_env(extra_env),
        timeout=60,
    )
    modules = {
        line.rsplit("|", 1)[1].strip()
        for line in proc.stderr.splitlines()
        if line.startswith("import time:") and "|" in line
    }
    modules.discard("imported package")  # the header line
    return proc, modules


@pytest.mark.parametrize("case", list(CASES))
def test_startup_imports_no_sdk(case: str) -> None:
    args, env = CASES[case]
    proc, modules = imported_modules(args, env)
    assert proc.returncode == 0, proc.stdout + proc.stderr[-2000:]
    assert proc.stdout.strip(), "the command printed nothing"
    assert "gcpfargate.cli" in modules, "importtime output was not parsed"
    forbidden = HEAVY + (("rich",) if case in NO_RICH else ())
    heavy = sorted(name for name in modules if name.split(".")[0] in forbidden)
    assert heavy == [], f"{case} imported {heavy}"
    internals = sorted(name for name in modules if name.startswith(PRODUCT_INTERNALS))
    assert internals == [], f"{case} imported {internals}"


def test_completion_lists_commands() -> None:
    proc, _ = imported_modules([], CASES["bash completion"][1])
    assert proc.stdout.split() == ["deploy", "deregister"]  # every command that starts with "de"
