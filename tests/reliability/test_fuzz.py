"""Property-based tests of template rendering and credential wiring (hypothesis).

1. Any strings in [task.vars] and in the environment, quoted with `tojson` as the default template
   does, render to valid JSON that holds exactly those strings, and pass validation.
2. The start-up wrapper, run by the real shells a container has (`dash` and `busybox sh`), passes
   the original argv through unchanged, byte for byte, whatever it holds (quotes, `$`, newlines,
   spaces, non-ASCII), writes the key file exactly with mode 0600 wherever credentials_path says,
   and removes the variable before the program starts.
"""

from __future__ import annotations

import functools
import json
import os
import stat
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from gcpfargate.credentials import wiring
from gcpfargate.errors import TemplateError
from gcpfargate.taskdef import template
from tests.conftest import record_figure

FIGURES = "fuzz"
SECRET_ARN = "arn:aws:secretsmanager:ap-northeast-1:123456789012:secret:gcpfargate/fuzz-AbCdEf"
SHELLS = {"dash": ["dash"], "busybox sh": ["busybox", "sh"]}
# What a string can hold once it is a process argument, an environment value or a file name:
# anything but NUL (and no lone surrogates, which have no UTF-8 form).
ARG_CHARS = st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00")
ARG = st.text(ARG_CHARS, max_size=24)
NAME_PART = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00/"),
    min_size=1,
    max_size=24,
).filter(lambda part: part not in (".", ".."))
# A prefix keeps fuzzed names clear of the shell's own variables (PATH, IFS, OPTIND...).
CREDENTIALS_ENV = st.from_regex(r"[A-Za-z0-9_]{0,12}", fullmatch=True).map(
    lambda rest: f"GCPF_{rest}"
)

TEMPLATE = (
    """{
  "family": {{ family | tojson }},
  "requiresCompatibilities": ["FARGATE"],
  "networkMode": "awsvpc",
  "cpu": "256",
  "memory": "512",
  "executionRoleArn": {{ execution_role_arn | tojson }},
  "containerDefinitions": [
    {
      "name": "app",
      "image": {{ image | tojson }},
      "essential": true,
      "environment": [
{% for name, value in vars.items() %}        {"name": {{ name | tojson }}, "value": """
    """{{ value | tojson }}},
{% endfor %}        {"name": "FROM_ENV", "value": {{ env("FUZZ_VALUE", "") | tojson }}}
      ]
    }
  ]
}
"""
)
PRINTER = '#!/bin/sh\n[ "$#" -eq 0 ] || printf \'%s\\0\' "$@"\nenv >&2\n'


@pytest.fixture(scope="module")
def workdir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="gcpf-fuzz-") as directory:
        path = Path(directory)
        (path / "task-definition.json.j2").write_text(TEMPLATE)
        printer = path / "printer"
        printer.write_text(PRINTER)
        printer.chmod(0o755)
        yield path


def variables(vars_: dict[str, str]) -> dict[str, Any]:
    return {
        "family": "fuzz",
        "image": "127.0.0.1:5000/fuzz@sha256:" + "0" * 64,
        "image_digest": "",
        "secret_arn": SECRET_ARN,
        "credentials_path": "/tmp/gcp/credentials.json",
        "credentials_env": "GCP_CREDENTIALS_JSON",
        "execution_role_arn": "arn:aws:iam::123456789012:role/fuzz-execution",
        "region": "ap-northeast-1",
        "account_id": "123456789012",
        "vars": vars_,
    }


RESERVED = {"FROM_ENV", "GCP_CREDENTIALS_JSON", wiring.CREDENTIALS_VARIABLE}


@functools.cache
def _pem() -> str:
    """A real RSA key, made in memory for this run (never written anywhere)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def _key_json() -> str:
    return json.dumps(
        {
            "type": "service_account",
            "project_id": "fuzz",
            "private_key_id": "0" * 40,
            "private_key": _pem(),
            "client_email": "fuzz@fuzz.iam.gserviceaccount.com",
            "token_uri": "https://oauth2.googleapis.com/token",
        }
    )


# The forms a key reaches a template value in by accident. Random text essentially never is key
# text, so these are planted among the generated strings; the oracle below is the test's own
# knowledge of what it planted, not the product's detector.
KEY_FORMS: dict[str, Callable[[], str]] = {
    "key json": _key_json,
    "key json, compact": lambda: json.dumps(json.loads(_key_json()), separators=(",", ":")),
    "pem": _pem,
    "pem in text": lambda: f"before {_pem()} after",
}
PLANTED = st.sampled_from(sorted(KEY_FORMS)).map(lambda form: ("planted", form))
PLAIN = st.text(ARG_CHARS).map(lambda text: ("plain", text))
# About one value in ten is planted, so most examples still exercise the accepted path.
VALUE = st.tuples(st.integers(0, 9), PLAIN, PLANTED).map(lambda t: t[2] if t[0] == 0 else t[1])


def _value(choice: tuple[str, str]) -> str:
    kind, text = choice
    return KEY_FORMS[text]() if kind == "planted" else text


@settings(
    max_examples=100,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    vars_=st.dictionaries(
        st.text(min_size=1, max_size=16).filter(lambda n: n not in RESERVED), VALUE, max_size=5
    ),
    from_env=VALUE,
)
@example(vars_={"A": ("planted", "key json")}, from_env=("plain", ""))
@example(vars_={}, from_env=("planted", "pem"))
@example(vars_={"A": ("plain", "x"), "B": ("planted", "pem in text")}, from_env=("plain", "y"))
def test_any_strings_render_to_valid_json(
    workdir: Path, vars_: dict[str, tuple[str, str]], from_env: tuple[str, str]
) -> None:
    planted = from_env[0] == "planted" or any(kind == "planted" for kind, _ in vars_.values())
    values = {name: _value(choice) for name, choice in vars_.items()}
    env_value = _value(from_env)
    path = workdir / "task-definition.json.j2"
    if planted:
        # Key text is refused by design (the key travels only through `secrets`): env() refuses it
        # at render, `environment` at wiring; the refusal never quotes it.
        with pytest.raises(TemplateError) as refused:
            rendered = template.render(
                path, variables(values), environ={"FUZZ_VALUE": env_value}, env_vars=("FUZZ_VALUE",)
            )
            wire_default(rendered)
        assert "PRIVATE KEY" not in str(refused.value) and _pem()[40:80] not in str(refused.value)
        record_figure(FIGURES, "template examples refused as key text")
        return
    definition = template.render(
        path, variables(values), environ={"FUZZ_VALUE": env_value}, env_vars=("FUZZ_VALUE",)
    )
    environment = definition["containerDefinitions"][0]["environment"]
    assert environment == [
        *({"name": k, "value": v} for k, v in values.items()),
        {"name": "FROM_ENV", "value": env_value},
    ]
    wired = wire_default(definition)
    assert json.loads(json.dumps(wired)) == wired
    template.validate(wired, path)  # what register-task would send passes the ECS model
    record_figure(FIGURES, "template examples")


def wire_default(definition: dict[str, Any]) -> dict[str, Any]:
    return wiring.wire(
        definition,
        secret_arn=SECRET_ARN,
        credentials_env="GCP_CREDENTIALS_JSON",
        credentials_path="/tmp/gcp/credentials.json",
        containers=None,
        image_config=lambda image: {"Entrypoint": ["/app"], "Cmd": []},
    )


def run_wrapper(
    shell: list[str], entry_point: list[str], credentials_env: str, value: str, cwd: Path
) -> subprocess.CompletedProcess[bytes]:
    assert entry_point[:2] == wiring.SHELL
    return subprocess.run(
        [*shell, *entry_point[1:]],
        env={"PATH": "/usr/bin:/bin", credentials_env: value},
        cwd=cwd,
        capture_output=True,
        timeout=30,
    )


@settings(
    max_examples=100,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    args=st.lists(ARG, max_size=6),
    split=st.integers(min_value=0, max_value=6),
    from_image=st.booleans(),
    directory=st.lists(NAME_PART, min_size=1, max_size=2),
    file_name=NAME_PART,
    credentials_env=CREDENTIALS_ENV,
    value=st.text(ARG_CHARS, min_size=1, max_size=300),
)
def test_wrapper_passes_argv_through_unchanged(
    workdir: Path,
    args: list[str],
    split: int,
    from_image: bool,
    directory: list[str],
    file_name: str,
    credentials_env: str,
    value: str,
) -> None:
    printer = str(workdir / "printer")
    argv = [printer, *args]
    # The original program comes from the template (entryPoint + command) or from the image config.
    cut = min(split, len(argv))
    if from_image:
        container: dict[str, Any] = {"name": "app", "image": "img", "essential": True}
        config = {"Entrypoint": argv[:cut] or [printer], "Cmd": argv[cut:] if cut else argv[1:]}
    else:
        container = {
            "name": "app",
            "image": "img",
            "essential": True,
            "entryPoint": argv[: max(cut, 1)],
        }
        if argv[max(cut, 1) :]:
            container["command"] = argv[max(cut, 1) :]
        config = {}
    with tempfile.TemporaryDirectory(prefix="gcpf-wrap-") as scratch:
        root = Path(scratch)
        credentials_path = str(root.joinpath(*directory, file_name))
        wired = wiring.wire(
            {"family": "fuzz", "containerDefinitions": [container]},
            secret_arn=SECRET_ARN,
            credentials_env=credentials_env,
            credentials_path=credentials_path,
            containers=None,
            image_config=lambda image: config,
        )
        # Docker's model (issue 17 item 1): the wrapper and the ENTRYPOINT in entryPoint, the CMD
        # stays in command; the process ECS starts is the two together.
        wired_container = wired["containerDefinitions"][0]
        entry_point = wired_container["entryPoint"] + wired_container.get("command", [])
        assert wiring.unwrap(wired["containerDefinitions"][0]).argv == argv
        for name, shell in SHELLS.items():
            Path(credentials_path).unlink(missing_ok=True)
            done = run_wrapper(shell, entry_point, credentials_env, value, root)
            assert done.returncode == 0, (name, done.stderr)
            printed = done.stdout.split(b"\0")[:-1]
            assert printed == [arg.encode() for arg in args], name
            assert Path(credentials_path).read_bytes() == value.encode(), name
            assert stat.S_IMODE(os.stat(credentials_path).st_mode) == 0o600, name
            environment = done.stderr.decode("utf-8", "replace").splitlines()
            assert not any(line.startswith(f"{credentials_env}=") for line in environment), name
            record_figure(FIGURES, f"wrapper runs ({name})")
    record_figure(FIGURES, "wrapper examples")
