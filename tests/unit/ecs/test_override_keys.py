"""Override values get the task definition's key check: `run`/`schedule`/`run-local` refuse key
text in `--env`, `--command` and `--arg` (exit 2), naming the flag and never the value."""

from __future__ import annotations

import pytest

from gcpfargate.ecs import overrides
from gcpfargate.errors import ExitCode, UsageError
from tests.unit.helpers import key_json, pem


def key() -> str:
    return key_json().decode()


def body() -> str:
    return "".join(pem().splitlines()[1:3])


CASES = {
    "env value": {"env": [f"LEAK={key()}"]},
    "env value, a bare PEM": {"env": [f"LEAK={pem()}"]},
    "env without =": {"env": [key()]},
    "env name": {"env": [f"{pem()}=x"]},
    "command": {"command": f"app --key '{key()}'"},
    "command that shlex cannot split": {"command": f"app '{key()}"},
    "arg": {"args": ["app", key()]},
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_key_text_in_an_override_is_refused_without_echoing_it(case: str) -> None:
    with pytest.raises(UsageError) as caught:
        overrides.parse(**CASES[case])  # type: ignore[arg-type]
    error = caught.value
    assert error.exit_code == ExitCode.USAGE
    assert "looks like private key text" in error.message
    text = error.one_line()
    assert "PRIVATE KEY" not in text and body()[:40] not in text


def test_overrides_built_elsewhere_are_checked_before_they_become_a_request() -> None:
    definition = {"containerDefinitions": [{"name": "app", "essential": True}]}
    for given in (
        overrides.TaskOverrides(command=["app", key()]),
        overrides.TaskOverrides(environment={"LEAK": key()}),
    ):
        with pytest.raises(UsageError, match="looks like private key text"):
            overrides.ecs_overrides(given, definition)


def test_ordinary_overrides_pass() -> None:
    given = overrides.parse(
        command="manage.py migrate", env=["MODE=nightly", "EMPTY="], cpu="1024", memory="2048"
    )
    assert given.command == ["manage.py", "migrate"]
    assert given.environment == {"MODE": "nightly", "EMPTY": ""}


@pytest.mark.parametrize("name", ["SHELLOPTS", "BASHOPTS", "BASH_ENV", "ENV"])
def test_an_override_may_not_set_what_changes_the_start_up_shell(name: str) -> None:
    with pytest.raises(UsageError) as caught:
        overrides.parse(env=[f"{name}=xtrace"])
    assert caught.value.exit_code == ExitCode.USAGE
    assert f"--env {name} is refused" in caught.value.one_line()
