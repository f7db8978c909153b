"""The CLI zygote (tests/stack/cli_zygote.py) gives a run what a fresh `python -m MODULE` has.

Each case runs a probe module both ways, in the zygote and with subprocess.run in a fresh
interpreter, with the same arguments, working directory and environment, and compares what the
probe saw and how it ended.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.stack.cli_zygote import HOME_AT_IMPORT, Zygote, ZygoteError

PROBE = textwrap.dedent(
    """
    import atexit, json, os, random, signal, sys, threading, time

    def state(imports):
        import logging, multiprocessing.process, tempfile
        import rich

        fds = sorted(int(fd) for fd in os.listdir("/proc/self/fd"))
        seen = {
            "cwd": os.getcwd(),
            "environ": dict(os.environ),
            "argv": sys.argv,
            "orig_argv": sys.orig_argv,
            "path0": sys.path[0],
            "stdin": sys.stdin.read(),
            "streams": [
                [s.name, s.encoding, s.errors, s.line_buffering, s.write_through,
                 type(s.buffer).__name__, s.isatty()]
                for s in (sys.stdin, sys.stdout, sys.stderr)
            ],
            "dunder_streams": [sys.__stdout__ is sys.stdout, sys.__stderr__ is sys.stderr],
            "signals": {n: repr(signal.getsignal(n)) for n in range(1, signal.NSIG)
                        if n not in (32, 33)},
            "fds": fds[:-1],  # the last: os.listdir's own
            "threads": [threading.active_count(), len(os.listdir("/proc/self/task"))],
            "tempdir": tempfile.gettempdir(),
            "cwd_at_import": [rich._IMPORT_CWD, multiprocessing.process.ORIGINAL_DIR],
            "logging_started": time.time() - logging._startTime < 30,
            "tz": [time.tzname, time.timezone],
            "name": __name__,
            "file": __file__,
        }
        if imports:  # what the SDKs derived from HOME when they were imported
            import sysconfig, zoneinfo
            import botocore.credentials, botocore.loaders, botocore.tokens, botocore.utils
            import google.auth.iam

            seen["home_at_import"] = [
                botocore.utils.JSONFileCache()._working_dir,
                botocore.utils.JSONFileCache.CACHE_DIR,
                botocore.loaders.Loader().search_paths,
                botocore.credentials.SSOProvider._SSO_TOKEN_CACHE_DIR,
                botocore.tokens.SSOTokenProvider._SSO_TOKEN_CACHE_DIR,
                sysconfig.get_config_var("userbase"),
                google.auth.iam._IAM_DOMAIN,
            ]
        return seen

    what = sys.argv[1]
    if what in ("state", "state-imports"):
        print(json.dumps(state(what == "state-imports")))
    elif what == "docker":  # the docker SDK as the product imports it (clients/engine/sdk.py)
        from gcpfargate.clients.engine.sdk import docker_sdk
        docker = docker_sdk()
        print(json.dumps(["paramiko" in sys.modules, hasattr(docker.transport, "SSHHTTPAdapter")]))
    elif what == "random":
        print(random.random())
    elif what == "exit":
        sys.exit(int(sys.argv[2]) if sys.argv[2].lstrip("-").isdigit() else
                 None if sys.argv[2] == "none" else sys.argv[2])
    elif what == "raise":
        print("before", flush=True)
        raise ValueError("boom")
    elif what == "interrupt":
        raise KeyboardInterrupt
    elif what == "signal":
        os.kill(os.getpid(), signal.SIGTERM)
    elif what == "sleep":
        print("started", flush=True)
        time.sleep(60)
    elif what == "echo":
        data = sys.stdin.read()
        sys.stdout.write(data.upper())
        sys.stderr.write("err\\r\\nline\\n")
    elif what == "finalize":
        def late():
            time.sleep(0.3)
            print("thread joined", flush=True)
        threading.Thread(target=late).start()
        atexit.register(lambda: print("atexit ran"))
        sys.stdout.write("unflushed, no newline")
    """
)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("zygote-run")
    (directory / "probe.py").write_text(PROBE)
    (directory / ".home").mkdir()
    return directory


@pytest.fixture(scope="module")
def zygote() -> Iterator[Zygote]:
    started = Zygote({**os.environ, "ONLY_IN_THE_ZYGOTE": "1"}).start()
    try:
        yield started
    finally:
        started.close()
    assert not started.alive()


def run_env(workdir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "ONLY_IN_THE_ZYGOTE"}
    return {**env, "HOME": str(workdir / ".home"), "RUN_ONLY": "yes", **extra}


def both(
    zygote: Zygote, workdir: Path, *args: str, env: dict[str, str] | None = None, **kw: Any
) -> tuple[subprocess.CompletedProcess[str], subprocess.CompletedProcess[str]]:
    env = env or run_env(workdir)
    forked = zygote.run(args, cwd=workdir, env=env, module="probe", **kw)
    fresh = subprocess.run(
        [sys.executable, "-m", "probe", *args],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        **kw,
    )
    assert forked.args == fresh.args
    return forked, fresh


def test_a_run_sees_what_a_fresh_interpreter_sees(zygote: Zygote, workdir: Path) -> None:
    before = zygote.forked
    forked, fresh = both(zygote, workdir, "state-imports", input="some input\n")
    assert zygote.forked == before + 1 and not zygote.fresh
    assert (forked.returncode, forked.stderr) == (fresh.returncode, fresh.stderr) == (0, "")
    seen, expected = json.loads(forked.stdout), json.loads(fresh.stdout)
    assert seen == expected
    # The environment is replaced, not merged; HOME-derived import state follows the run's HOME.
    assert "ONLY_IN_THE_ZYGOTE" not in seen["environ"] and seen["environ"]["RUN_ONLY"] == "yes"
    assert seen["cwd"] == seen["path0"] == str(workdir)
    assert seen["argv"] == [str(workdir / "probe.py"), "state-imports"]
    assert seen["stdin"] == "some input\n" and seen["fds"] == [0, 1, 2]
    assert seen["threads"] == [1, 1]
    assert str(workdir / ".home") in seen["home_at_import"][0]


def test_each_run_has_its_own_process_and_random_seed(zygote: Zygote, workdir: Path) -> None:
    draws = {zygote.run(["random"], cwd=workdir, env=run_env(workdir), module="probe").stdout}
    draws.add(zygote.run(["random"], cwd=workdir, env=run_env(workdir), module="probe").stdout)
    assert len(draws) == 2


@pytest.mark.parametrize("code", ["0", "3", "255", "256", "-1", "none", "a message"])
def test_exit_codes_are_the_interpreters(zygote: Zygote, workdir: Path, code: str) -> None:
    forked, fresh = both(zygote, workdir, "exit", code)
    assert (forked.returncode, forked.stdout, forked.stderr) == (
        fresh.returncode,
        fresh.stdout,
        fresh.stderr,
    )


def outer_frames_removed(stderr: str) -> str:
    """A traceback without the frames above the module's own: runpy's, and in a zygote child the
    zygote's (the one difference in what a run prints)."""
    lines = stderr.splitlines(keepends=True)
    kept = []
    for index, line in enumerate(lines):
        outer = ("<frozen runpy>", "cli_zygote.py")
        if line.startswith("  File ") and any(name in line for name in outer):
            continue
        if index and lines[index - 1].startswith("  File ") and "cli_zygote.py" in lines[index - 1]:
            continue  # the zygote's source line
        kept.append(line)
    return "".join(kept)


def test_an_uncaught_exception_prints_its_traceback_and_exits_1(
    zygote: Zygote, workdir: Path
) -> None:
    forked, fresh = both(zygote, workdir, "raise")
    assert forked.returncode == fresh.returncode == 1
    assert forked.stdout == fresh.stdout == "before\n"
    assert outer_frames_removed(forked.stderr) == outer_frames_removed(fresh.stderr)
    for stderr in (forked.stderr, fresh.stderr):
        assert stderr.startswith("Traceback (most recent call last):\n")
        assert stderr.endswith('    raise ValueError("boom")\nValueError: boom\n')


def test_an_unhandled_interrupt_ends_the_process_by_sigint(zygote: Zygote, workdir: Path) -> None:
    forked, fresh = both(zygote, workdir, "interrupt")
    assert forked.returncode == fresh.returncode == -signal.SIGINT
    assert outer_frames_removed(forked.stderr) == outer_frames_removed(fresh.stderr)
    assert forked.stderr.endswith("KeyboardInterrupt\n") and fresh.stderr.endswith(
        "KeyboardInterrupt\n"
    )


def test_a_signal_ends_the_process_as_it_does_a_fresh_one(zygote: Zygote, workdir: Path) -> None:
    forked, fresh = both(zygote, workdir, "signal")
    assert forked.returncode == fresh.returncode == -signal.SIGTERM


def test_threads_atexit_and_buffers_are_finished_at_exit(zygote: Zygote, workdir: Path) -> None:
    forked, fresh = both(zygote, workdir, "finalize")
    assert forked.stdout == fresh.stdout == "unflushed, no newlinethread joined\natexit ran\n"
    assert forked.returncode == fresh.returncode == 0


def test_input_and_newlines_as_subprocess_run_text_mode(zygote: Zygote, workdir: Path) -> None:
    forked, fresh = both(zygote, workdir, "echo", input="a\r\nb\n" * 50_000)
    assert (forked.stdout, forked.stderr) == (fresh.stdout, fresh.stderr)
    assert forked.stderr == "err\nline\n" and len(forked.stdout) == 4 * 50_000


def test_a_timeout_kills_the_run_and_reports_what_it_wrote(zygote: Zygote, workdir: Path) -> None:
    with pytest.raises(subprocess.TimeoutExpired) as timed_out:
        zygote.run(["sleep"], cwd=workdir, env=run_env(workdir), module="probe", timeout=2)
    assert timed_out.value.timeout == 2 and timed_out.value.output == b"started\n"
    after = zygote.run(["random"], cwd=workdir, env=run_env(workdir), module="probe")
    assert after.returncode == 0  # the zygote serves on


def test_start_up_settings_the_zygote_cannot_change_take_a_fresh_interpreter(
    zygote: Zygote, workdir: Path
) -> None:
    env = run_env(workdir, PYTHONHASHSEED="7", TZ="Asia/Tokyo")
    forked, fresh = both(zygote, workdir, "state", env=env)
    assert json.loads(forked.stdout) == json.loads(fresh.stdout)
    assert json.loads(fresh.stdout)["tz"][1] == -9 * 3600
    assert any(reason.startswith("PYTHONHASHSEED") for reason in zygote.fresh)


def test_an_import_time_decision_on_another_home_takes_a_fresh_interpreter(
    zygote: Zygote, tmp_path: Path, workdir: Path
) -> None:
    """google-auth picks mTLS IAM endpoints at import when ~/.config/gcloud has a workload
    certificate configuration: the child finds its HOME would decide otherwise and steps back."""
    home = tmp_path / "home"
    config = home / ".config" / "gcloud" / "certificate_config.json"
    config.parent.mkdir(parents=True)
    config.write_text(json.dumps({"cert_configs": {"workload": {}}}))
    before = dict(zygote.fresh)
    forked, fresh = both(zygote, workdir, "state-imports", env=run_env(workdir, HOME=str(home)))
    assert json.loads(forked.stdout) == json.loads(fresh.stdout)
    assert "mtls" in json.loads(fresh.stdout)["home_at_import"][-1]
    assert sum(zygote.fresh.values()) == sum(before.values()) + 1


def test_every_module_that_reads_home_at_import_is_derived_again(zygote: Zygote) -> None:
    readers = zygote.ready["env_readers"]
    assert set(readers["HOME"]) <= set(HOME_AT_IMPORT)
    assert not zygote.ready["whole_env_read"]


def test_the_cli_itself(zygote: Zygote, workdir: Path) -> None:
    env = run_env(workdir)
    forked = zygote.run(["--version"], cwd=workdir, env=env)
    fresh = subprocess.run(
        [sys.executable, "-m", "gcpfargate", "--version"],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
    )
    assert (forked.returncode, forked.stdout, forked.stderr) == (
        fresh.returncode,
        fresh.stdout,
        fresh.stderr,
    )
    assert forked.stdout.startswith("gcpfargate ")


def test_buffered_standard_streams_without_pythonunbuffered(workdir: Path) -> None:
    """The streams a fresh interpreter makes differ with PYTHONUNBUFFERED (set where the suite
    usually runs): the other case, with a zygote started without it."""
    base = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    buffered = Zygote(base).start()
    try:
        env = {**base, "HOME": str(workdir / ".home")}
        for args in (["state"], ["finalize"], ["raise"], ["interrupt"]):
            forked = buffered.run(args, cwd=workdir, env=env, module="probe")
            fresh = subprocess.run(
                [sys.executable, "-m", "probe", *args],
                cwd=workdir,
                env=env,
                capture_output=True,
                text=True,
            )
            assert (forked.returncode, forked.stdout, outer_frames_removed(forked.stderr)) == (
                fresh.returncode,
                fresh.stdout,
                outer_frames_removed(fresh.stderr),
            )
    finally:
        buffered.close()
    assert not buffered.fresh and buffered.forked == 4


def test_a_zygote_that_dies_during_a_run_fails_the_run(workdir: Path) -> None:
    """The run's outcome is unknown then: an error, never a result that could pass a test."""
    doomed = Zygote(dict(os.environ)).start()
    assert doomed.process is not None
    killer = threading.Timer(3, doomed.process.kill)
    killer.start()
    try:
        with pytest.raises(ZygoteError, match="outcome is unknown") as failed:
            doomed.run(["sleep"], cwd=workdir, env=run_env(workdir), module="probe", timeout=60)
    finally:
        killer.join()
        doomed.close()
    orphan = int(re.search(r"\(child (\d+)\)", str(failed.value)).group(1))  # type: ignore[union-attr]
    os.kill(orphan, signal.SIGKILL)  # the run the zygote left behind


@pytest.mark.parametrize(
    ("host", "ssh"), [(None, False), ("unix:///tmp/other.sock", False), ("ssh://u@h", True)]
)
def test_the_docker_sdk_comes_as_the_product_imports_it(
    zygote: Zygote, workdir: Path, host: str | None, ssh: bool
) -> None:
    """Without paramiko unless DOCKER_HOST is ssh://: the zygote preloads the SDK the product's way,
    and a run whose DOCKER_HOST scheme differs from the zygote's takes a fresh interpreter."""
    env = {k: v for k, v in run_env(workdir).items() if k != "DOCKER_HOST"}
    if host is not None:
        env["DOCKER_HOST"] = host
    before = dict(zygote.fresh)
    forked, fresh = both(zygote, workdir, "docker", env=env)
    assert (forked.returncode, forked.stderr) == (fresh.returncode, fresh.stderr) == (0, "")
    assert json.loads(forked.stdout) == json.loads(fresh.stdout) == [ssh, ssh]
    took_fresh = {k: v for k, v in zygote.fresh.items() if before.get(k) != v}
    assert bool(took_fresh) == (ssh != zygote.ready["docker_ssh"]), took_fresh
