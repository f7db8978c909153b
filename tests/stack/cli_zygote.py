"""A fork server for the suite's CLI runs: `python -m gcpfargate ARGS` without the start-up cost.

Every integration test drives the real entry point in a process of its own. Each such process
spends over a second of CPU importing boto3, docker, the Google clients, rich, typer and jinja2
before it does anything, and the suite runs the CLI about a thousand times. The zygote is one
process per pytest worker that has imported all of that once; for each run it forks a child that
becomes what `python -m gcpfargate ARGS` would be:

- its own process (pid, and the zygote's process group, which is the worker's), with the run's
  working directory, `os.environ` REPLACED by the run's environment (nothing of the zygote's
  is left), sys.argv and sys.path[0] as `-m` sets them, fresh random seeds;
- stdin, stdout and stderr the file descriptors the test passed over the socket (SCM_RIGHTS),
  new sys.std* objects on them as the interpreter makes them at start-up, every other inherited
  descriptor closed (subprocess's close_fds), the signal handlers of a fresh interpreter;
- the package run by runpy as `__main__`, and then the interpreter's own exit: the child returns
  out of the zygote's loop to this module's top level, so an uncaught exception prints its
  traceback and exits 1, SystemExit's code is the exit code, non-daemon threads are joined,
  atexit handlers run, an unhandled Ctrl-C ends the process by SIGINT, exactly as in a fresh
  `python`.

What modules froze at import is recorded while preloading: the working directory (rich,
multiprocessing) and HOME (botocore's cache and model directories, sysconfig's user base) are set
again in each child from its own; google-auth's choice of mTLS endpoints is checked in the child.
What a fork cannot give, the client does not pretend to: a run whose environment differs from the
zygote's in anything the interpreter reads at start-up (PYTHON*, locale, TZ) or that a preloaded
module read at import time runs in a fresh interpreter instead, and so does a test that asks for
one (`Project.run(..., fresh_interpreter=True)`): those whose point is start-up, imports or
signals. Two differences remain visible: a traceback's first frames (the zygote's, above the
module's) and string hashing, seeded once per zygote (per worker), not per run.

Protocol, one connection per run: the client sends a length-prefixed JSON request (module, argv,
cwd, env) with three descriptors (stdin, stdout, stderr); the zygote answers `P <pid>`, the child
`R` once it is set up (`F <reason>` if that failed, `U <reason>` if the run needs a fresh
interpreter after all: nothing ran), and the zygote `X <returncode>` when the child has exited.
The child is reaped only when the client has closed the connection, so the client can kill it
(a timeout) without a reused pid ever being hit.
"""

from __future__ import annotations

import contextlib
import gc
import io
import json
import locale
import os
import selectors
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
# The modules of a CLI run's start-up (gcpfargate's own are all imported as well, see _preload).
PRELOAD = (
    "boto3",
    "botocore.session",
    "botocore.client",
    "botocore.exceptions",
    # Not "docker": the product imports the SDK through clients/engine/sdk.py, with paramiko only
    # for an ssh:// DOCKER_HOST; _preload does the same (see `docker_ssh`).
    "google.auth",
    "google.auth.transport.requests",
    "google.oauth2.service_account",
    "google.cloud.iam_admin_v1",
    "grpc",
    "jinja2",
    "requests",
    "rich.console",
    "typer",
)
# What the interpreter reads from the environment while it starts, before any module: a run whose
# environment differs from the zygote's in one of these needs a fresh interpreter.
STARTUP_PREFIXES = ("PYTHON", "LC_")
STARTUP_KEYS = ("LANG", "LANGUAGE", "TZ")  # TZ: time.tzname/timezone are set when time is imported
# Modules that keep the working directory of their import: each child sets them to its own, as its
# import would have (any other module found reading it at import stops the zygote).
CWD_AT_IMPORT = {"multiprocessing.process": "ORIGINAL_DIR", "rich": "_IMPORT_CWD"}
_LENGTH = struct.Struct("!I")


# -- the zygote ------------------------------------------------------------------------------------
@dataclass
class _Child:
    pid: int
    pidfd: int
    conn: socket.socket
    returncode: int | None = None
    client_gone: bool = False


@dataclass
class _Request:
    module: str
    argv: list[str]
    cwd: str
    env: dict[str, str]
    fds: list[int]
    conn: socket.socket


@dataclass
class _Recorder:
    """Which environment variables, and by which modules the working directory, were read while
    preloading: what module top levels froze into the zygote."""

    env: dict[str, str | None] = field(default_factory=dict)
    readers: dict[str, list[str]] = field(default_factory=dict)  # variable -> modules
    whole_env: list[str] = field(default_factory=list)
    cwd: list[str] = field(default_factory=list)

    @contextlib.contextmanager
    def recording(self) -> Iterator[None]:
        environ_class = type(os.environ)
        getitem, iterate, getcwd = environ_class.__getitem__, environ_class.__iter__, os.getcwd

        def importing() -> str:
            """The module whose top level is running (a class body or a call made from it)."""
            frame: Any = sys._getframe(1)
            while frame is not None and frame.f_code.co_name != "<module>":
                frame = frame.f_back
            return "?" if frame is None else str(frame.f_globals.get("__name__"))

        def recorded_getitem(environ: Any, key: Any) -> Any:
            if environ is os.environ or environ is os.environb:
                name = os.fsdecode(key)
                self.env[name] = _current(name)
                readers = self.readers.setdefault(name, [])
                if (module := importing()) not in readers:
                    readers.append(module)
            return getitem(environ, key)

        def recorded_iter(environ: Any) -> Any:
            self.whole_env.append(importing())
            return iterate(environ)

        def recorded_getcwd() -> str:
            self.cwd.append(importing())
            return getcwd()

        def _current(name: str) -> str | None:
            try:
                return str(getitem(os.environ, name))
            except KeyError:
                return None

        environ_class.__getitem__ = recorded_getitem  # type: ignore[method-assign]
        environ_class.__iter__ = recorded_iter  # type: ignore[method-assign]
        os.getcwd = recorded_getcwd
        try:
            yield
        finally:
            environ_class.__getitem__ = getitem  # type: ignore[method-assign]
            environ_class.__iter__ = iterate  # type: ignore[method-assign]
            os.getcwd = getcwd


def _gcpfargate_modules() -> list[str]:
    import pkgutil

    import gcpfargate

    names = ["gcpfargate"]
    for module in pkgutil.walk_packages(gcpfargate.__path__, "gcpfargate."):
        if not module.name.endswith(".__main__"):  # programs, run rather than imported
            names.append(module.name)
    return names


def _preload() -> _Recorder:
    """Import what a CLI run imports, recording what the module top levels read. Anything the
    imports write to stdout/stderr (a warning a fresh process would print) stops the zygote: its
    children would not print it."""
    import importlib

    recorder = _Recorder()
    with tempfile.TemporaryFile() as spill:
        sys.stdout.flush()
        sys.stderr.flush()
        saved = os.dup(1), os.dup(2)
        os.dup2(spill.fileno(), 1)
        os.dup2(spill.fileno(), 2)
        try:
            # Not warnings.catch_warnings: it would undo the filters the modules install.
            with recorder.recording():
                for name in (*PRELOAD, *_gcpfargate_modules()):
                    importlib.import_module(name)
            # As the product imports it: with paramiko only when this DOCKER_HOST is ssh://. Not
            # recorded as a read: `unsuitable` compares only the scheme (`docker_ssh`).
            from gcpfargate.clients.engine.sdk import docker_sdk

            docker_sdk()
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])
        spill.seek(0)
        printed = spill.read().decode("utf-8", "replace")
    if printed:
        raise SystemExit(f"cli_zygote: preloading printed {printed!r}")
    if unknown := set(recorder.cwd) - set(CWD_AT_IMPORT):
        raise SystemExit(f"cli_zygote: modules read the working directory at import: {unknown}")
    # The children start from the zygote's heap: keep the collector's passes from touching (and so
    # copying) every preloaded object in every child.
    gc.collect()
    gc.freeze()
    return recorder


def _signal_handlers() -> dict[int, Any]:
    """This interpreter's handlers as it started: what every child gets back."""
    handlers = {}
    for number in range(1, signal.NSIG):
        with contextlib.suppress(ValueError, OSError):
            handlers[number] = signal.getsignal(number)
    return handlers


def _open_descriptors() -> set[int]:
    """This process's open descriptors (not the one os.listdir itself had open)."""
    found = set()
    for name in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            os.fstat(int(name))
            found.add(int(name))
    return found


@dataclass
class _State:
    """The zygote's own: what every child drops or restores."""

    handlers: dict[int, Any]  # signal handlers of a fresh interpreter
    inherited: set[int]  # descriptors the zygote was started with
    listener: socket.socket
    selector: selectors.BaseSelector
    children: dict[int, _Child] = field(default_factory=dict)  # by pid


def serve(path: str) -> _Request | None:
    """Preload, then fork a child per request. Returns a request in a child, and None in the
    zygote when the worker that started it is gone (the zygote never outlives it)."""
    parent = os.getppid()
    handlers, inherited = _signal_handlers(), _open_descriptors()
    recorder = _preload()
    if extra := _open_descriptors() - inherited:
        raise SystemExit(f"cli_zygote: descriptors left open by the preloaded modules: {extra}")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(64)
    selector = selectors.DefaultSelector()
    selector.register(listener, selectors.EVENT_READ)
    state = _State(handlers, inherited - {0, 1, 2}, listener, selector)
    ready = {
        "pid": os.getpid(),
        "env_reads": recorder.env,
        "env_readers": recorder.readers,
        "whole_env_read": recorder.whole_env,
        "startup_env": {k: v for k, v in os.environ.items() if _startup_key(k)},
        "docker_ssh": "paramiko" in sys.modules,
    }
    os.write(1, (json.dumps(ready) + "\n").encode())
    with open(os.devnull, "wb") as devnull:
        os.dup2(devnull.fileno(), 1)
    while os.getppid() == parent:
        for key, _ in selector.select(5):
            if key.fileobj is listener:
                request = _accept(listener)
                if request is None:
                    continue
                child = _fork(request, state)
                if child is None:  # in the child
                    return request
                state.children[child.pid] = child
                selector.register(child.pidfd, selectors.EVENT_READ, child)
                selector.register(child.conn, selectors.EVENT_READ, child)
            elif key.fd == key.data.pidfd:
                _exited(key.data, state)
            else:
                _client_readable(key.data, state)
    return None


def _docker_ssh(env: Mapping[str, str]) -> bool:
    return env.get("DOCKER_HOST", "").startswith("ssh://")


def _startup_key(name: str) -> bool:
    return name.startswith(STARTUP_PREFIXES) or name in STARTUP_KEYS


def _accept(listener: socket.socket) -> _Request | None:
    conn, _ = listener.accept()
    try:
        header, fds, _, _ = socket.recv_fds(conn, _LENGTH.size, 3)
        if len(header) < _LENGTH.size:
            header += _recv_exact(conn, _LENGTH.size - len(header))
        (length,) = _LENGTH.unpack(header)
        body = json.loads(_recv_exact(conn, length))
    except (OSError, ValueError) as error:
        print(f"cli_zygote: a bad request: {error}", file=sys.stderr)
        conn.close()
        return None
    if len(fds) != 3:
        for fd in fds:
            os.close(fd)
        conn.close()
        return None
    return _Request(body["module"], body["argv"], body["cwd"], body["env"], list(fds), conn)


def _recv_exact(conn: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = conn.recv(size - len(data))
        if not chunk:
            raise OSError("the connection closed mid-request")
        data += chunk
    return data


def _fork(request: _Request, state: _State) -> _Child | None:
    # No thread may exist at a fork (its locks would stay held in the child): the preloaded modules
    # start none, and the zygote itself never does. /proc counts the threads C code started too.
    tasks = os.listdir("/proc/self/task")
    assert len(tasks) == 1 and threading.active_count() == 1, f"cli_zygote: threads {tasks}"
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        _become_child(request, state)
        return None
    for fd in request.fds:
        os.close(fd)
    pidfd = os.pidfd_open(pid)
    with contextlib.suppress(OSError):
        request.conn.sendall(f"P {pid}\n".encode())
    return _Child(pid, pidfd, request.conn)


def _exited(child: _Child, state: _State) -> None:
    """The child ended: tell the client, but leave it a zombie (its pid cannot be reused) until
    the client has closed the connection."""
    state.selector.unregister(child.pidfd)
    info = os.waitid(os.P_PID, child.pid, os.WEXITED | os.WNOWAIT)
    assert info is not None
    if info.si_code == os.CLD_EXITED:
        child.returncode = info.si_status
    else:
        child.returncode = -info.si_status
    if child.client_gone:
        _reap(child, state)
        return
    with contextlib.suppress(OSError):
        child.conn.sendall(f"X {child.returncode}\n".encode())


def _client_readable(child: _Child, state: _State) -> None:
    try:
        data = child.conn.recv(64)
    except OSError:
        data = b""
    if data:
        return  # the client sends nothing after its request
    state.selector.unregister(child.conn)
    child.conn.close()
    child.client_gone = True
    if child.returncode is not None:
        _reap(child, state)


def _reap(child: _Child, state: _State) -> None:
    os.waitpid(child.pid, 0)
    os.close(child.pidfd)
    del state.children[child.pid]


# -- the child -------------------------------------------------------------------------------------
def _become_child(request: _Request, state: _State) -> None:
    """Drop everything of the zygote's and take on the run's process state; on failure, tell the
    client (never a result that could pass for the CLI's) and exit."""
    try:
        state.selector.close()
        state.listener.close()
        for other in state.children.values():
            other.conn.close()
            os.close(other.pidfd)
        for fd in state.inherited:  # subprocess closes every descriptor but 0, 1 and 2
            os.close(fd)
        stdin, stdout, stderr = request.fds
        for target, fd in enumerate((stdin, stdout, stderr)):
            os.dup2(fd, target)
        for fd in set(request.fds):
            os.close(fd)
        left = _open_descriptors() - {0, 1, 2, request.conn.fileno()}
        assert not left, f"descriptors of the zygote left open: {left}"
        os.chdir(request.cwd)
        os.environ.clear()
        os.environ.update(request.env)
        for number, handler in state.handlers.items():
            if number not in (signal.SIGKILL, signal.SIGSTOP) and handler is not None:
                with contextlib.suppress(OSError, ValueError):
                    signal.signal(number, handler)
        _new_std_streams()
        # `python -m gcpfargate ARGS`: argv[0] becomes the module's path (runpy), sys.path[0] the
        # working directory.
        sys.argv = ["-m", *request.argv]
        sys.orig_argv = [sys.executable, "-m", request.module, *request.argv]
        sys.path[0] = os.getcwd()
        _fresh_process_state()
        if reason := _rederive_home():
            request.conn.sendall(f"U {json.dumps(reason)}\n".encode())
            os._exit(0)
        request.conn.sendall(b"R\n")
        request.conn.close()
    except BaseException:
        with contextlib.suppress(BaseException):
            reason = json.dumps(traceback.format_exc()[-3000:])
            request.conn.sendall(f"F {reason}\n".encode())
        os._exit(70)


def _new_std_streams() -> None:
    """sys.stdin/stdout/stderr as the interpreter makes them at start-up (Python/pylifecycle.c
    create_stdio): newline "\\n"; line-buffered on a terminal and always for stderr, unless
    PYTHONUNBUFFERED, which leaves stdout and stderr without a buffer; encoding and errors as the
    zygote's own (the same locale and PYTHONIOENCODING, checked by the client)."""
    made = []
    for fd, old in enumerate((sys.__stdin__, sys.__stdout__, sys.__stderr__)):
        assert isinstance(old, io.TextIOWrapper)
        raw = io.FileIO(fd, "rb" if fd == 0 else "wb", closefd=False)
        raw.name = ("<stdin>", "<stdout>", "<stderr>")[fd]
        buffer: Any = raw
        if fd == 0:
            buffer = io.BufferedReader(raw)
        elif not isinstance(old.buffer, io.FileIO):  # buffered, unless PYTHONUNBUFFERED
            buffer = io.BufferedWriter(raw)
        made.append(
            io.TextIOWrapper(
                buffer,
                encoding=old.encoding,
                errors=old.errors,
                newline="\n",
                line_buffering=not old.write_through and (fd == 2 or os.isatty(fd)),
                write_through=old.write_through,
            )
        )
    sys.stdin, sys.stdout, sys.stderr = made
    # The originals too (faulthandler, code that restores them): final for type checkers only.
    sys.__stdin__, sys.__stdout__, sys.__stderr__ = made  # type: ignore[misc]


def _fresh_process_state() -> None:
    """What a module caches at first use, reset to 'not used yet'; random reseeded."""
    import random

    random.seed()
    tempfile.tempdir = None  # TMPDIR is read at the first gettempdir()
    for name, attribute in CWD_AT_IMPORT.items():
        if name in sys.modules:
            setattr(sys.modules[name], attribute, os.path.abspath(os.getcwd()))
    if "logging" in sys.modules:
        sys.modules["logging"]._startTime = time.time()  # type: ignore[attr-defined]  # relativeCreated counts from start-up


def _rederive(owner: Any, attribute: str, value: str) -> None:
    """Set a class attribute derived at import, and every default argument of the class's
    functions that took its old value."""
    old = getattr(owner, attribute)
    setattr(owner, attribute, value)
    for function in vars(owner).values():
        defaults = getattr(function, "__defaults__", None)
        if defaults and old in defaults:
            function.__defaults__ = tuple(value if d == old else d for d in defaults)


def _userbase(module: Any) -> None:
    config = sys.modules["sysconfig"]._CONFIG_VARS  # filled at the import of zoneinfo._tzpath
    if config and "userbase" in config:
        config["userbase"] = sys.modules["sysconfig"]._getuserbase()


def _google_iam(module: Any) -> str | None:
    from google.auth.transport import _mtls_helper

    if _mtls_helper.check_use_client_cert() != (".mtls." in module._IAM_DOMAIN):
        return "google.auth.iam chose its endpoints (mTLS or not) by the zygote's HOME"
    return None


def _home(*parts: str) -> str:
    return os.path.expanduser(os.path.join("~", *parts))


# What modules derive from HOME at import, by the modules' own expressions: each child derives it
# again from its own HOME (tests/unit/test_cli_zygote.py compares the results with a fresh
# interpreter's), so HOME may differ from the zygote's. Where it cannot be derived again (google-
# auth's IAM endpoints) the child checks the outcome is the same, or the run takes a fresh
# interpreter. A module not listed here that reads HOME at import makes the client compare HOME.
HOME_AT_IMPORT: dict[str, Any] = {
    "botocore.utils": lambda m: _rederive(
        m.JSONFileCache, "CACHE_DIR", _home(".aws", "boto", "cache")
    ),
    "botocore.loaders": lambda m: _rederive(
        m.Loader, "CUSTOMER_DATA_PATH", _home(".aws", "models")
    ),
    "botocore.credentials": lambda m: _rederive(
        m.SSOProvider, "_SSO_TOKEN_CACHE_DIR", _home(".aws", "sso", "cache")
    ),
    "botocore.tokens": lambda m: _rederive(
        m.SSOTokenProvider, "_SSO_TOKEN_CACHE_DIR", _home(".aws", "sso", "cache")
    ),
    "sysconfig": lambda m: None,  # _HAS_USER_BASE: True on Linux whatever HOME is
    "zoneinfo._tzpath": _userbase,
    "google.auth.iam": _google_iam,
}


def _rederive_home() -> str | None:
    """Why this run needs a fresh interpreter after all, or None."""
    for name, rederive in HOME_AT_IMPORT.items():
        if name in sys.modules and (reason := rederive(sys.modules[name])):
            return str(reason)
    return None


def run_module(request: _Request) -> None:
    """Run the module as `python -m MODULE` does. Exceptions and SystemExit propagate to the
    interpreter, which prints and exits as it would for the real command."""
    import runpy

    runpy.run_module(request.module, run_name="__main__", alter_sys=True)


# -- the client ------------------------------------------------------------------------------------
class ZygoteError(RuntimeError):
    """The zygote failed: the run's outcome is unknown (never reported as the CLI's result)."""


class _Unsuitable(Exception):
    """The child found, before running anything, that the run needs a fresh interpreter."""


@dataclass
class Zygote:
    """One zygote process (started with `env` as its environment) and the runs it serves."""

    env: Mapping[str, str]
    process: subprocess.Popen[bytes] | None = None
    directory: Path | None = None
    ready: dict[str, Any] = field(default_factory=dict)
    forked: int = 0
    fresh: dict[str, int] = field(default_factory=dict)  # runs in a fresh interpreter, by reason
    cpu_seconds: float = 0.0  # of the forked runs (and of the children they waited for)

    @property
    def socket_path(self) -> str:
        assert self.directory is not None
        return str(self.directory / "zygote.sock")

    @property
    def log(self) -> Path:
        assert self.directory is not None
        return self.directory / "zygote.log"

    def log_tail(self) -> str:
        with contextlib.suppress(OSError):
            return self.log.read_text(errors="replace")[-2000:]
        return ""

    def start(self, timeout: float = 120) -> Zygote:
        self.directory = Path(tempfile.mkdtemp(prefix="cli-zygote-"))
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "tests.stack.cli_zygote", self.socket_path],
                cwd=ROOT,
                env=dict(self.env),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=log,
            )
        assert self.process.stdout is not None
        line = _read_line(self.process.stdout.fileno(), timeout)
        self.process.stdout.close()
        if not line:
            tail = self.log_tail()
            self.close()
            raise ZygoteError(f"the CLI zygote did not start: {tail}")
        self.ready = json.loads(line)
        return self

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def close(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=30)
        if self.directory is not None:
            for path in (self.socket_path, self.log):
                with contextlib.suppress(OSError):
                    os.unlink(path)
            with contextlib.suppress(OSError):
                self.directory.rmdir()

    def unsuitable(self, env: Mapping[str, str]) -> str | None:
        """Why a run with `env` needs a fresh interpreter, or None."""
        startup = self.ready["startup_env"]
        for name in sorted({*startup, *(k for k in env if _startup_key(k))}):
            if env.get(name) != startup.get(name):
                return f"{name} differs from the zygote's (read at interpreter start-up)"
        for name, value in sorted(self.ready["env_reads"].items()):
            readers = self.ready["env_readers"][name]
            if name == "HOME" and set(readers) <= set(HOME_AT_IMPORT):
                continue  # derived again in the child
            if env.get(name) != value:
                return f"{name} differs from the zygote's (read at import by {readers})"
        if _docker_ssh(env) != self.ready["docker_ssh"]:
            # The docker SDK was imported with or without its ssh adapter (clients/engine/sdk.py).
            return "DOCKER_HOST's scheme (ssh:// or not) differs from the zygote's"
        if self.ready["whole_env_read"]:
            return f"a module copied the environment at import: {self.ready['whole_env_read']}"
        return None

    def run(
        self,
        args: Sequence[str],
        *,
        cwd: str | os.PathLike[str],
        env: Mapping[str, str],
        input: str | None = None,
        timeout: float | None = None,
        module: str = "gcpfargate",
    ) -> subprocess.CompletedProcess[str]:
        """subprocess.run([python, -m, module, *args], cwd=, env=, input=, timeout=,
        capture_output=True, text=True): stdin inherited unless `input` is given, TimeoutExpired
        after killing the child. A run the zygote cannot give exactly runs that way."""
        command = [sys.executable, "-m", module, *args]
        reason = self.unsuitable(env)
        if reason is None:
            try:
                return self._forked(command, cwd, env, input, timeout)
            except _Unsuitable as unsuitable:
                reason = str(unsuitable)
        self.fresh[reason] = self.fresh.get(reason, 0) + 1
        return subprocess.run(
            command, cwd=cwd, env=env, input=input, timeout=timeout, capture_output=True, text=True
        )

    def _forked(
        self,
        command: list[str],
        cwd: str | os.PathLike[str],
        env: Mapping[str, str],
        input: str | None,
        timeout: float | None,
    ) -> subprocess.CompletedProcess[str]:
        deadline = None if timeout is None else time.monotonic() + timeout
        encoding = locale.getencoding()
        with _Pipes(stdin=input is not None) as pipes:
            conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                try:
                    conn.connect(self.socket_path)
                    body = {
                        "module": command[2],
                        "argv": command[3:],
                        "cwd": os.fspath(cwd),
                        "env": dict(env),
                    }
                    data = json.dumps(body).encode()
                    socket.send_fds(conn, [_LENGTH.pack(len(data))], pipes.child_ends())
                    conn.sendall(data)
                except OSError as error:
                    raise ZygoteError(f"the CLI zygote does not answer: {error}") from error
                pipes.close_child_ends()
                self.forked += 1
                sent = b"" if input is None else input.encode(encoding)
                returncode, out, err, pid = _communicate(
                    conn, command, pipes, sent, deadline, timeout
                )
                self.cpu_seconds += _cpu_seconds(pid)
            except ZygoteError as error:
                raise ZygoteError(f"{error}\nzygote log: {self.log_tail()}") from error
            finally:
                conn.close()
        return subprocess.CompletedProcess(
            command, returncode, _text(out, encoding), _text(err, encoding)
        )


class _Pipes:
    """The run's stdout and stderr pipes, and stdin's (or this process's own stdin, inherited as
    by subprocess); each descriptor closed exactly once (other threads open descriptors too)."""

    def __init__(self, stdin: bool) -> None:
        self.fds: dict[str, int] = {}
        self.fds["out_r"], self.fds["out_w"] = os.pipe()
        self.fds["err_r"], self.fds["err_w"] = os.pipe()
        if stdin:
            self.fds["in_r"], self.fds["in_w"] = os.pipe()

    def __enter__(self) -> _Pipes:
        return self

    def __exit__(self, *exc: object) -> None:
        for name in list(self.fds):
            self.close(name)

    def child_ends(self) -> list[int]:
        return [self.fds.get("in_r", 0), self.fds["out_w"], self.fds["err_w"]]

    def close_child_ends(self) -> None:
        for name in ("in_r", "out_w", "err_w"):
            self.close(name)

    def close(self, name: str) -> None:
        fd = self.fds.pop(name, None)
        if fd is not None:
            os.close(fd)


def _read_line(fd: int, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    data = b""
    with selectors.DefaultSelector() as selector:
        selector.register(fd, selectors.EVENT_READ)
        while not data.endswith(b"\n"):
            left = deadline - time.monotonic()
            if left <= 0:
                return ""
            if not selector.select(left):
                continue
            chunk = os.read(fd, 65536)
            if not chunk:
                return ""
            data += chunk
    return data.decode()


@dataclass
class _Answers:
    """The zygote's and the child's lines on the connection."""

    buffer: bytes = b""
    pid: int | None = None
    started: bool = False
    returncode: int | None = None

    def feed(self, chunk: bytes) -> None:
        self.buffer += chunk
        *lines, self.buffer = self.buffer.split(b"\n")
        for line in lines:
            kind, _, value = line.decode().partition(" ")
            if kind == "P":
                self.pid = int(value)
            elif kind == "R":
                self.started = True
            elif kind == "F":
                raise ZygoteError(f"a CLI zygote child failed to set up: {json.loads(value)}")
            elif kind == "U":
                raise _Unsuitable(json.loads(value))
            elif kind == "X":
                self.returncode = int(value)


def _communicate(
    conn: socket.socket,
    command: list[str],
    pipes: _Pipes,
    sent: bytes,
    deadline: float | None,
    timeout: float | None,
) -> tuple[int, bytes, bytes, int]:
    """Feed stdin, read stdout and stderr to their end and the exit code, as Popen.communicate
    does; on timeout kill the child (SIGKILL, as subprocess.run does), wait for its end, and
    raise TimeoutExpired with what was read so far (bytes, as subprocess's)."""
    out_r, err_r = pipes.fds["out_r"], pipes.fds["err_r"]
    output: dict[int, list[bytes]] = {out_r: [], err_r: []}
    answers = _Answers()
    offset = 0
    with selectors.DefaultSelector() as selector:
        selector.register(out_r, selectors.EVENT_READ)
        selector.register(err_r, selectors.EVENT_READ)
        selector.register(conn, selectors.EVENT_READ)
        if "in_w" in pipes.fds:
            if sent:
                selector.register(pipes.fds["in_w"], selectors.EVENT_WRITE, "in_w")
            else:
                pipes.close("in_w")
        while answers.returncode is None or {out_r, err_r} & set(selector.get_map()):
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                _kill(conn, answers, command)
                raise subprocess.TimeoutExpired(
                    command, timeout or 0, b"".join(output[out_r]), b"".join(output[err_r])
                )
            for key, _ in selector.select(left):
                if key.data == "in_w":
                    try:
                        offset += os.write(key.fd, sent[offset : offset + 65536])
                    except BrokenPipeError:
                        offset = len(sent)
                    if offset >= len(sent):
                        selector.unregister(key.fd)
                        pipes.close("in_w")
                elif key.fileobj is conn:
                    chunk = conn.recv(4096)
                    if chunk:
                        answers.feed(chunk)
                    elif answers.returncode is None:
                        raise ZygoteError(
                            f"the CLI zygote died during {command} (child {answers.pid}): the "
                            "run's outcome is unknown"
                        )
                    else:  # gone after the exit code: the output still comes through the pipes
                        selector.unregister(conn)
                else:
                    chunk = os.read(key.fd, 65536)
                    if chunk:
                        output[key.fd].append(chunk)
                    else:
                        selector.unregister(key.fd)
    assert answers.returncode is not None and answers.pid is not None
    return answers.returncode, b"".join(output[out_r]), b"".join(output[err_r]), answers.pid


def _kill(conn: socket.socket, answers: _Answers, command: list[str]) -> None:
    """SIGKILL the child and wait for its end. Its pid is safe to signal: the zygote reaps it
    only after this connection is closed."""
    while answers.pid is None:
        chunk = conn.recv(4096)
        if not chunk:
            raise ZygoteError(f"the CLI zygote died before starting {command}")
        answers.feed(chunk)
    if answers.returncode is None:
        os.kill(answers.pid, signal.SIGKILL)
    while answers.returncode is None:
        chunk = conn.recv(4096)
        if not chunk:
            raise ZygoteError(f"the CLI zygote died while {command} was being killed")
        answers.feed(chunk)


def _cpu_seconds(pid: int) -> float:
    """User and system time of an ended child, not yet reaped, and of the children it waited
    for (fields 14-17 of /proc/PID/stat)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return sum(int(value) for value in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def _text(data: bytes, encoding: str) -> str:
    # Popen's text mode: the locale's encoding, universal newlines.
    return data.decode(encoding).replace("\r\n", "\n").replace("\r", "\n")


if __name__ == "__main__":
    try:
        _request = serve(sys.argv[1])
    except KeyboardInterrupt:  # Ctrl-C of the test run reaches the worker's process group
        _request = None
    if _request is None:
        sys.exit(0)
    run_module(_request)
