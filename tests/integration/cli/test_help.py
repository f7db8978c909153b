"""`--help` for the people who install it: examples at the end of each command's help, every one of
which the parser accepts; the internal credential-shim hidden; keyless named up front."""

from __future__ import annotations

import shlex
import subprocess
import sys

import pytest

from gcpfargate.cli.examples import EXAMPLES


def _help(*args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "gcpfargate", *args, "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        env={"COLUMNS": "100", "PATH": "/usr/bin:/bin"},
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_top_level_help_names_keyless_and_hides_the_shim() -> None:
    text = _help()
    assert "keyless" in text and "credential-shim" not in text
    assert "Start with `gcpfargate init`" in text
    # Still there for the sidecar and for debugging, just not listed.
    shim = subprocess.run(
        [sys.executable, "-m", "gcpfargate", "credential-shim", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert shim.returncode == 0 and "--port" in shim.stdout


@pytest.mark.parametrize("command", sorted(EXAMPLES))
def test_each_help_ends_with_examples(command: str) -> None:
    text = _help(command).rstrip("\n").splitlines()
    start = text.index("  Examples:")
    examples = text[start + 1 :]
    assert 2 <= len(examples) <= 3, text
    assert all(line.startswith(f"    gcpfargate {command}") for line in examples), examples


def test_deregister_service_help_says_what_it_does() -> None:
    text = " ".join(_help("deregister").split())
    assert "--service NAME ECS service whose revision is never deregistered" in text
    assert "to roll" not in text


@pytest.mark.parametrize(
    "line", [line for lines in EXAMPLES.values() for line in lines], ids=lambda line: line[:50]
)
def test_every_example_parses(line: str) -> None:
    import typer.main

    from gcpfargate.cli import app, hoist_global_options

    words = shlex.split(line, comments=True)
    if ">" in words:  # a shell redirection, not the command's
        words = words[: words.index(">")]
    assert words[0] == "gcpfargate"
    group = typer.main.get_command(app)
    args = hoist_global_options(words[1:])
    with group.make_context("gcpfargate", args, resilient_parsing=False) as ctx:
        # click keeps the command name and its words apart (`_protected_args` since click 8.2).
        protected = getattr(ctx, "_protected_args", None) or getattr(ctx, "protected_args", [])
        rest = [*protected, *ctx.args]
        command = group.get_command(ctx, rest[0])  # type: ignore[attr-defined]
        assert command is not None, line
        command.make_context(rest[0], rest[1:], parent=ctx)  # raises on an unknown option
