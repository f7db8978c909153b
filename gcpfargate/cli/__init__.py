"""Command-line entry point: parse, delegate to one core function per command, render the result.

This package imports no cloud SDK at module level, so `--help`, `--version` and completion stay
instant; each command imports what it needs when it runs.
"""

from __future__ import annotations

import gc
import os
import signal
import sys
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from types import ModuleType
from typing import TYPE_CHECKING

# Importing the command modules registers their commands on `app`.
from gcpfargate.cli import (  # noqa: F401
    bootstrap,
    deploy,
    jobs,
    ops,
    push,
    run,
    run_local,
    schedule,
    service,
    taskdef,
)
from gcpfargate.cli.app import STATE, app
from gcpfargate.cli.examples import epilog

if TYPE_CHECKING:
    from typer.models import CommandInfo


def _command_name(command: CommandInfo) -> str:
    return command.name or command.callback.__name__.replace("_", "-")  # type: ignore[union-attr]


# Each command's --help ends with its examples (kept in cli/examples.py, where a test parses them).
for _command in app.registered_commands:
    _command.epilog = _command.epilog or epilog(_command_name(_command))

# Options that belong to the top-level callback but may be written after the command name
# (`gcpfargate bootstrap --output json`): they are moved in front before parsing.
_GLOBAL_WITH_VALUE = {"--config", "--region", "--profile", "--environment", "--output", "-o"}
_GLOBAL_FLAGS = {"--verbose", "-v", "--debug", "--strict"}


def hoist_global_options(argv: Sequence[str]) -> list[str]:
    front: list[str] = []
    rest: list[str] = []
    args = list(argv)
    index = 0
    while index < len(args):
        arg = args[index]
        if arg == "--":
            rest.extend(args[index:])
            break
        name = arg.split("=", 1)[0]
        if name in _GLOBAL_WITH_VALUE:
            if "=" in arg:
                front.append(arg)
            else:
                front.extend(args[index : index + 2])
                index += 1
        elif arg in _GLOBAL_FLAGS:
            front.append(arg)
        else:
            rest.append(arg)
        index += 1
    return front + rest


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; expected failures become one line on stderr and an exit code."""
    from gcpfargate.errors import GcpfargateError

    args = hoist_global_options(sys.argv[1:] if argv is None else argv)
    # A short run that imports large SDKs (botocore's models, the Google clients) makes few
    # reference cycles; the collector's repeated passes over those imports cost ~0.3 s of CPU per
    # command (see bench/README.md), so the process collects young objects 140x less often.
    if argv is None:
        gc.set_threshold(100_000, 20, 20)
    try:
        with signals_as_interrupts() as fired, _only_command(_invoked(args)):
            # Without standalone mode click returns (not raises) the code of a `typer.Exit(code)`.
            returned = app(args=args, prog_name="gcpfargate", standalone_mode=False)
        if fired and returned == 130:  # typer turned the interrupt into Exit(130)
            return _exit(
                _interrupted(
                    Terminated(fired[0]) if fired[0] != signal.SIGINT else KeyboardInterrupt()
                ),
                argv,
            )
        if isinstance(returned, int) and returned:
            return _exit(returned, argv)
    except GcpfargateError as exc:
        if STATE.debug:
            import traceback

            from gcpfargate.keymaterial.keyfile import redact

            sys.stderr.write(redact("".join(traceback.format_exception(exc))))
        if exc.excerpt and not _wants_json(args):
            STATE.console.excerpt(exc.excerpt)
        STATE.console.error(exc.one_line())
        _json_error(args, exc)
        return _exit(int(exc.exit_code), argv)
    except KeyboardInterrupt as exc:
        return _exit(_interrupted(exc), argv)
    except SystemExit as exc:  # typer.Exit inside commands
        return _exit(int(exc.code or 0), argv)
    except Exception as exc:
        if isinstance(exc.__cause__, KeyboardInterrupt):  # click turns an interrupt into Abort
            return _exit(_interrupted(exc.__cause__), argv)
        code = _click_exit(exc, args)
        if code is not None:
            return _exit(code, argv)
        # An unexpected failure: still one line, unless --debug asks for the traceback.
        from gcpfargate.keymaterial.keyfile import redact

        if STATE.debug:
            import traceback

            sys.stderr.write(redact("".join(traceback.format_exception(exc))))
        name = type(exc).__name__
        sys.stderr.write(
            redact(
                f"error: unexpected {name}: {exc}. Rerun with --debug for the traceback "
                "and report it.\n"
            )
        )
        return _exit(1, argv)
    return _exit(_strict_code(args), argv)


def _invoked(args: Sequence[str]) -> str | None:
    """The command `args` run (global options hoisted in front), when it is one of the app's; None
    for anything else (`--help`, a typo click suggests a command for, shell completion)."""
    if any(name.startswith("_") and name.endswith("_COMPLETE") for name in os.environ):
        return None
    index = 0
    while index < len(args):
        arg = args[index]
        if arg.split("=", 1)[0] in _GLOBAL_WITH_VALUE:
            index += 1 if "=" in arg else 2
        elif arg in _GLOBAL_FLAGS:
            index += 1
        elif arg.startswith("-"):
            return None
        else:
            known = {_command_name(command) for command in app.registered_commands}
            return arg if arg in known else None
    return None


@contextmanager
def _only_command(name: str | None) -> Iterator[None]:
    """Let Typer build the click command of `name` alone. Typer builds every command's options from
    its signature (evaluating the annotations) on each run: 30 ms of CPU for the 18 commands, 7 ms
    for the one a run uses; the group's own options and that command's parse exactly as before."""
    registered = app.registered_commands
    if name is not None:
        app.registered_commands = [c for c in registered if _command_name(c) == name]
    try:
        yield
    finally:
        app.registered_commands = registered


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP (`timeout`, CI cancellation, `kill`, a closed terminal), raised where the
    program is, like Ctrl-C's KeyboardInterrupt: every clean-up that handles Ctrl-C handles
    these."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


# SIGHUP exists only on POSIX and SIGBREAK (Ctrl-Break, a closed console window) only on Windows:
# each platform registers the ones it has.
_INTERRUPT_SIGNALS = ("SIGINT", "SIGTERM", "SIGHUP", "SIGBREAK")


@contextmanager
def signals_as_interrupts(signals: ModuleType = signal) -> Iterator[list[int]]:
    """SIGINT, SIGTERM and SIGHUP (SIGBREAK on Windows) raise in the main thread; a second signal
    while the first one's clean-up runs is ignored, so clean-up (deleting an unstored key, removing
    a container) finishes."""
    fired: list[int] = []  # the signal that arrived, if one did
    if threading.current_thread() is not threading.main_thread():
        yield fired
        return

    def handler(signum: int, frame: object) -> None:
        if fired:
            return
        fired.append(signum)
        raise KeyboardInterrupt() if signum == signals.SIGINT else Terminated(signum)

    wanted = [getattr(signals, name) for name in _INTERRUPT_SIGNALS if hasattr(signals, name)]
    previous = {sig: signals.signal(sig, handler) for sig in wanted}
    try:
        yield fired
    finally:
        for sig, old in previous.items():
            signals.signal(sig, old)


def _interrupted(exc: BaseException) -> int:
    """Exit 130 for Ctrl-C, 128 + the signal for SIGTERM (143), SIGHUP (129) and SIGBREAK (149)."""
    if isinstance(exc, Terminated):
        sys.stderr.write(f"error: stopped by {signal.Signals(exc.signum).name}; clean-up done.\n")
        return 128 + exc.signum
    sys.stderr.write("error: interrupted.\n")
    return 130


def _strict_code(args: Sequence[str]) -> int:
    """0, or 1 when --strict (global, or deploy's own) was given and the command warned."""
    warned = STATE._console is not None and STATE._console.warnings
    if "--strict" in args and warned:
        from gcpfargate.errors import GcpfargateError

        error = GcpfargateError(
            f"{warned} warning{'s' if warned > 1 else ''} with --strict",
            "Fix what the warnings say, or drop --strict",
        )
        STATE.console.error(error.one_line())
        _json_error(args, error, result_written=True)
        return 1
    return 0


def _json_error(args: Sequence[str], error: object, result_written: bool = False) -> None:
    """With `-o json`, an error is also one JSON object on stdout: `{"error": {message, hint,
    exit_code}}`.

    `args` are read directly because a usage error can stop parsing before the global options are
    set. A command that already wrote its result (then failed --strict) keeps that one object on
    stdout."""
    if result_written or not _wants_json(args):
        return
    import json

    from gcpfargate.keymaterial.keyfile import redact

    sys.stdout.write(redact(json.dumps(error.to_json(), indent=2)) + "\n")  # type: ignore[attr-defined]
    sys.stdout.flush()


def _wants_json(args: Sequence[str]) -> bool:
    if STATE.output == "json":
        return True
    for index, arg in enumerate(args):
        if arg == "--":
            break
        if arg in ("--output=json", "-ojson") or (
            arg in ("--output", "-o") and args[index + 1 : index + 2] == ["json"]
        ):
            return True
    return False


def _click_exit(exc: Exception, args: Sequence[str] = ()) -> int | None:
    """Exit code for Typer's own exceptions (it vendors click, so match on its classes and duck
    type)."""
    import typer

    if isinstance(exc, typer.Exit):
        return int(exc.exit_code)
    if isinstance(exc, typer.Abort):
        sys.stderr.write("error: aborted.\n")
        return 1
    if type(exc).__name__ == "NoArgsIsHelpError":
        # Bare `gcpfargate`: the help is the answer, not an error (exit 2 as click has it).
        sys.stderr.write(str(exc.format_message()) + "\n")  # type: ignore[attr-defined]
        return 2
    if hasattr(exc, "format_message") and hasattr(exc, "exit_code"):
        # Usage errors (unknown option, missing argument): one line, exit code 2.
        from gcpfargate.errors import UsageError

        message = str(exc.format_message()).rstrip(".")
        ctx = getattr(exc, "ctx", None)
        hint = f"Try '{ctx.command_path} --help'" if ctx is not None else ""
        # "Did you mean 'deploy'?" already ends the sentence: no full stop after the question mark.
        end = "" if message.endswith(("?", "!")) else "."
        sys.stderr.write(f"error: {message}{end}{' ' + hint + '.' if hint else ''}\n")
        _json_error(args, UsageError(message, hint))
        return 2
    return None


def _exit(code: int, argv: Sequence[str] | None) -> int:
    if argv is None:  # console script: leave the process with the code
        # Nothing is collected at exit anyway: skip the final passes over every SDK object (~0.2 s).
        gc.freeze()
        sys.exit(code)
    return code
