"""The CLI on a platform whose signal module has no SIGHUP (native Windows).

The stand-in module keeps only the names Windows' `signal` module has, so any use of a POSIX-only
signal (SIGHUP, SIGALRM, setitimer...) fails here as it would there. The first test runs the real
entry point in a fresh interpreter with the stand-in installed as `signal` before anything imports
it; the second hands the stand-in to the interrupt handling in this process.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
import types

import pytest

from gcpfargate import __version__
from gcpfargate.cli import Terminated, _interrupted, signals_as_interrupts

# What `dir(signal)` holds on CPython for Windows, less SIGBREAK and CTRL_*_EVENT, which Linux
# cannot deliver.
WINDOWS_NAMES = (
    "Handlers",
    "NSIG",
    "SIGABRT",
    "SIGFPE",
    "SIGILL",
    "SIGINT",
    "SIGSEGV",
    "SIGTERM",
    "SIG_DFL",
    "SIG_IGN",
    "Signals",
    "default_int_handler",
    "getsignal",
    "raise_signal",
    "set_wakeup_fd",
    "signal",
    "strsignal",
    "valid_signals",
)

STAND_IN = textwrap.dedent(
    """
    import signal as real, sys, types
    module = types.ModuleType("signal")
    for name in {names!r}:
        setattr(module, name, getattr(real, name))
    sys.modules["signal"] = module
    """
).format(names=WINDOWS_NAMES)


def windows_signal_module() -> types.ModuleType:
    module = types.ModuleType("signal")
    for name in WINDOWS_NAMES:
        setattr(module, name, getattr(signal, name))
    return module


def test_stand_in_lacks_posix_signals() -> None:
    module = windows_signal_module()
    assert not hasattr(module, "SIGHUP")
    assert not hasattr(module, "setitimer")


def _run(script: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GCPFARGATE_")}
    return subprocess.run(
        [sys.executable, "-c", STAND_IN + textwrap.dedent(script)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )


def test_version_and_help_without_sighup() -> None:
    proc = _run(
        """
        from gcpfargate.cli import main
        print("version exit", main(["--version"]))
        print("help exit", main(["--help"]))
        """
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    assert f"{__version__}\nversion exit 0\n" in proc.stdout
    assert "help exit 0" in proc.stdout


def test_interrupts_without_sighup_in_a_fresh_process() -> None:
    """SIGTERM and Ctrl-C still raise where the program is, and exit 143 and 130."""
    proc = _run(
        """
        import os, signal, time
        from gcpfargate.cli import Terminated, _interrupted, signals_as_interrupts
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                with signals_as_interrupts() as fired:
                    os.kill(os.getpid(), sig)
                    time.sleep(10)
            except KeyboardInterrupt as exc:
                print(type(exc).__name__, fired, _interrupted(exc))
        print("restored", signal.getsignal(signal.SIGTERM) is signal.SIG_DFL)
        """
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [
        f"Terminated [{int(signal.SIGTERM)}] 143",
        f"KeyboardInterrupt [{int(signal.SIGINT)}] 130",
        "restored True",
    ]
    assert proc.stderr == "error: stopped by SIGTERM; clean-up done.\nerror: interrupted.\n"


def test_registers_only_the_signals_the_module_has() -> None:
    module = windows_signal_module()
    before = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    with pytest.raises(Terminated) as caught, signals_as_interrupts(module) as fired:
        assert signal.getsignal(signal.SIGHUP) is before[signal.SIGHUP]  # left alone
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)  # the handler raises first
    assert fired == [signal.SIGTERM]
    assert _interrupted(caught.value) == 143
    assert {sig: signal.getsignal(sig) for sig in before} == before
