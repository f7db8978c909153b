"""What a task-definition template may reach and how much it may cost.

- Files: the template and what it includes are read only from the template's own directory; a
  symlink that leads out of it is refused (the real path must stay inside). Only regular files of
  at most `MAX_TEMPLATE_BYTES` (a FIFO or /dev/zero is not a template).
- The deployer's environment: `env()`/`must_env()` read only an allow-list: the variables named in
  `task.env_vars` and those starting with `GCPFARGATE_VAR_` (a deny-list of token names cannot be
  complete: CI_JOB_TOKEN, VAULT_TOKEN, AZURE_CLIENT_SECRET, …). Even listed, credential variables
  (AWS secret and session token, Google credentials) and any variable whose value holds key
  material are refused, so a template cannot copy them into the task definition (where
  `render`/`diff` would print them).
- Cost: numbers are capped (`MAX_INT_BITS`: `10**5000` cannot be printed anyway), as are repeated
  strings and lists, the rendered text (`MAX_RENDERED_BYTES`, well above ECS's 64 KiB limit for a
  task definition), loop iterations (`MAX_ITERATIONS`) and wall time (`MAX_RENDER_SECONDS`, where a
  timer can be set: the main thread on POSIX).

Every refusal is a `TemplateError` (exit 2) that names the template, never a value.
"""

from __future__ import annotations

import contextlib
import os
import signal
import stat
import threading
from collections.abc import Collection, Iterator, Mapping
from pathlib import Path
from typing import Any

from gcpfargate.errors import TemplateError
from gcpfargate.keymaterial.keyscan import has_key
from gcpfargate.keymaterial.rules import CREDENTIAL_VARIABLES, TEMPLATE_VARIABLE_PREFIX

MAX_TEMPLATE_BYTES = 1 << 20
MAX_RENDERED_BYTES = 1 << 20
MAX_RENDER_SECONDS = 10.0
MAX_INT_BITS = 4096
MAX_ITERATIONS = 1_000_000


class TemplateRefused(Exception):
    """Raised inside the template; the renderer turns it into a TemplateError with the line."""


def refuse_unlisted(name: str, env_vars: Collection[str]) -> None:
    """env()/must_env(): only variables the config allows (task.env_vars or the prefix)."""
    if name.upper() in CREDENTIAL_VARIABLES:
        return  # refuse_credentials says why, allowed or not
    if name in env_vars or (
        name.startswith(TEMPLATE_VARIABLE_PREFIX) and len(name) > len(TEMPLATE_VARIABLE_PREFIX)
    ):
        return
    raise TemplateRefused(
        f"env({name!r}) is refused: templates read only the environment variables named in "
        f"task.env_vars or starting with {TEMPLATE_VARIABLE_PREFIX}; to allow it, add {name!r} "
        f"to task.env_vars in gcpfargate.toml (task.env_vars = [{name!r}]) or rename it "
        f"{TEMPLATE_VARIABLE_PREFIX}{name}"
    )


def refuse_credentials(name: str, value: str | None) -> None:
    """env()/must_env(): never hand a credential of the deployer's to the template."""
    if name.upper() in CREDENTIAL_VARIABLES:
        raise TemplateRefused(
            f"env({name!r}) is refused: {name} holds the deployer's credentials, which must "
            "never reach a task definition"
        )
    if value and has_key(value):
        raise TemplateRefused(
            f"env({name!r}) is refused: the variable holds what looks like a private key, "
            "which must never reach a task definition"
        )


def read_limited(path: Path) -> str:
    """The text of a template file: a regular file of at most MAX_TEMPLATE_BYTES, read without
    blocking on a FIFO. Raises OSError/UnicodeDecodeError/TemplateError."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise TemplateError(
                f"template {path} is not a regular file ({_kind(info.st_mode)})",
                "Point task.template at a template file",
            )
    except BaseException:
        os.close(fd)
        raise
    with os.fdopen(fd, "rb") as handle:
        data = handle.read(MAX_TEMPLATE_BYTES + 1)
    if len(data) > MAX_TEMPLATE_BYTES:
        raise TemplateError(
            f"template {path} is larger than {MAX_TEMPLATE_BYTES >> 10} KiB",
            "A task definition is at most 64 KiB: check task.template names the right file",
        )
    return data.decode("utf-8")


def _kind(mode: int) -> str:
    for test, word in (
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISCHR, "a device"),
        (stat.S_ISBLK, "a device"),
        (stat.S_ISSOCK, "a socket"),
    ):
        if test(mode):
            return word
    return "not a regular file"


def confined_loader(directory: Path) -> Any:
    """A Jinja loader for files inside `directory` only (by real path: no symlink out of it)."""
    import jinja2

    root = directory.resolve()

    class ConfinedLoader(jinja2.BaseLoader):
        def get_source(self, environment: Any, template: str) -> tuple[str, str, Any]:
            pieces = jinja2.loaders.split_template_path(template)  # refuses `..`
            path = root.joinpath(*pieces)
            real = path.resolve()
            if real != root and root not in real.parents:
                raise TemplateRefused(
                    f"{template!r} leads outside the template's directory {root} (a symlink?); "
                    "templates may only include files next to them"
                )
            if not real.exists():
                raise jinja2.TemplateNotFound(template)
            try:
                source = read_limited(real)
            except (OSError, UnicodeDecodeError) as exc:
                raise TemplateRefused(f"cannot read {template!r}: {type(exc).__name__}") from None
            except TemplateError as exc:
                raise TemplateRefused(exc.message) from None
            mtime = real.stat().st_mtime
            return source, str(path), lambda: real.exists() and real.stat().st_mtime == mtime

    return ConfinedLoader()


def limited_environment_class() -> type:
    """SandboxedEnvironment with the cost limits above (a class made on first use: jinja2 is
    heavy)."""
    from jinja2.sandbox import SandboxedEnvironment

    class LimitedEnvironment(SandboxedEnvironment):
        # Intercepting also stops Jinja folding `10**5000` at compile time, outside any error
        # handling.
        intercepted_binops = frozenset({"**", "*"})

        def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
            if (
                operator == "**"
                and isinstance(left, int)
                and isinstance(right, int)
                and right > 0
                and abs(left) > 1
                and abs(left).bit_length() * right > MAX_INT_BITS
            ):
                raise TemplateRefused(f"the number is too large (over {MAX_INT_BITS} bits)")
            if operator == "*":
                for seq, count in ((left, right), (right, left)):
                    if (
                        isinstance(seq, str | list | tuple)
                        and isinstance(count, int)
                        and len(seq) * count > MAX_RENDERED_BYTES
                    ):
                        raise TemplateRefused(
                            f"a repeated value would be longer than {MAX_RENDERED_BYTES >> 10} KiB"
                        )
            return super().call_binop(context, operator, left, right)

    return LimitedEnvironment


def counted_range(counter: list[int]) -> Any:
    """`range` for templates: the sandbox's own cap per call, and MAX_ITERATIONS across the
    render."""
    from jinja2.sandbox import safe_range

    def template_range(*args: int) -> Iterator[int]:
        for value in safe_range(*args):
            counter[0] += 1
            if counter[0] > MAX_ITERATIONS:
                raise TemplateRefused(f"the template loops more than {MAX_ITERATIONS} times")
            yield value

    return template_range


def render_limited(template: Any, variables: Mapping[str, Any]) -> str:
    """Render with the output and time caps."""
    parts: list[str] = []
    size = 0
    with _deadline(MAX_RENDER_SECONDS):
        for piece in template.generate(**variables):
            size += len(piece)
            if size > MAX_RENDERED_BYTES:
                raise TemplateRefused(
                    f"the rendered template is larger than {MAX_RENDERED_BYTES >> 10} KiB"
                )
            parts.append(piece)
    return "".join(parts)


@contextlib.contextmanager
def _deadline(seconds: float) -> Iterator[None]:
    """SIGALRM after `seconds`, turned into TemplateRefused; nothing where a timer cannot be set."""
    if (
        threading.current_thread() is not threading.main_thread()
        or not hasattr(signal, "setitimer")
        or signal.getitimer(signal.ITIMER_REAL)[0] > 0
    ):
        yield
        return

    def expired(signum: int, frame: Any) -> None:
        raise TemplateRefused(
            f"rendering took longer than {MAX_RENDER_SECONDS:g} s (a runaway loop?)"
        )

    previous = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
