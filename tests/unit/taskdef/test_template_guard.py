"""What a template may reach and what it may cost (issue 13 items 8, 13, 14): each refusal is one
TemplateError (exit 2) naming the template, never a value."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from gcpfargate.errors import ExitCode, TemplateError
from gcpfargate.taskdef import guard as template_guard
from gcpfargate.taskdef import template
from tests.unit.helpers import key_json

HEAD = '{"family": {{ family | tojson }}, "x": '


def write(directory: Path, text: str, name: str = "t.json.j2") -> Path:
    path = directory / name
    path.write_text(text)
    return path


def refused(
    path: Path,
    *fragments: str,
    environ: dict[str, str] | None = None,
    env_vars: tuple[str, ...] = (),
) -> str:
    with pytest.raises(TemplateError) as caught:
        template.render(path, {"family": "f"}, environ or {}, env_vars)
    assert caught.value.exit_code == ExitCode.USAGE
    message = caught.value.one_line()
    for fragment in fragments:
        assert fragment in message, message
    return message


def test_include_through_a_symlink_out_of_the_directory_is_refused(tmp_path: Path) -> None:
    outside = tmp_path / "home" / ".ssh"
    outside.mkdir(parents=True)
    (outside / "id").write_text('"secret"')
    project = tmp_path / "project"
    project.mkdir()
    (project / "inside.txt").write_text('"fine"')
    (project / "link-out").symlink_to(outside / "id")
    (project / "link-in").symlink_to(project / "inside.txt")
    ok = write(project, HEAD + '{% include "link-in" %}}')
    assert template.render(ok, {"family": "f"}, {})["x"] == "fine"
    bad = write(project, HEAD + '{% include "link-out" %}}')
    message = refused(bad, "link-out", "outside the template's directory")
    assert "secret" not in message
    refused(write(project, HEAD + '{% include "../home/.ssh/id" %}}'))


@pytest.mark.parametrize(
    "call",
    [
        "env('AWS_SECRET_ACCESS_KEY')",
        "env('AWS_SESSION_TOKEN', 'x')",
        "must_env('GOOGLE_APPLICATION_CREDENTIALS')",
        "env('aws_secret_access_key')",
    ],
)
def test_env_refuses_the_deployers_credentials(tmp_path: Path, call: str) -> None:
    environ = {
        "AWS_SECRET_ACCESS_KEY": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        "AWS_SESSION_TOKEN": "tok" * 20,
        "GOOGLE_APPLICATION_CREDENTIALS": "/home/me/key.json",
        "aws_secret_access_key": "x" * 40,
    }
    for env_vars in ((), tuple(environ)):  # listed in task.env_vars or not: refused
        message = refused(
            write(tmp_path, HEAD + "{{ " + call + " | tojson }}}"),
            "refused",
            environ=environ,
            env_vars=env_vars,
        )
        assert all(value not in message for value in environ.values())


def test_env_refuses_a_variable_whose_value_is_a_key(tmp_path: Path) -> None:
    environ = {"MY_CONFIG": key_json().decode()}
    for call in ("env('MY_CONFIG')", "must_env('MY_CONFIG')"):
        message = refused(
            write(tmp_path, HEAD + "{{ " + call + " | tojson }}}"),
            "MY_CONFIG",
            "private key",
            environ=environ,
            env_vars=("MY_CONFIG",),
        )
        assert "PRIVATE" not in message
    assert (
        template.render(
            write(tmp_path, HEAD + "{{ env('PLAIN') | tojson }}}"),
            {"family": "f"},
            {"PLAIN": "ok"},
            ("PLAIN",),
        )["x"]
        == "ok"
    )


@pytest.mark.parametrize("name", ["CI_JOB_TOKEN", "VAULT_TOKEN", "AZURE_CLIENT_SECRET", "HOME"])
@pytest.mark.parametrize("function", ["env", "must_env"])
def test_env_reads_only_the_variables_the_config_allows(
    tmp_path: Path, name: str, function: str
) -> None:
    environ = {name: "s3cr3t-t0ken-value", "GCPFARGATE_VAR_DATASET": "daily", "DATASET": "d"}
    path = write(tmp_path, HEAD + "{{ " + function + "('" + name + "') | tojson }}}")
    message = refused(
        path, f"env('{name}') is refused", "task.env_vars", "GCPFARGATE_VAR_", environ=environ
    )
    assert ":1:" in message and "s3cr3t" not in message
    # Listed: read as before.
    assert template.render(path, {"family": "f"}, environ, (name,))["x"] == "s3cr3t-t0ken-value"
    # The prefix needs no listing; a listed name reads only that name.
    prefixed = write(
        tmp_path,
        HEAD + "[{{ env('GCPFARGATE_VAR_DATASET') | tojson }}, {{ env('DATASET') | tojson }}]}",
    )
    assert template.render(prefixed, {"family": "f"}, environ, ("DATASET",))["x"] == ["daily", "d"]
    refused(prefixed, "env('DATASET') is refused", environ=environ)


def test_task_env_vars_is_validated_like_every_setting() -> None:
    from gcpfargate.keymaterial.rules import template_env_var_problem

    assert template_env_var_problem("DATASET") is None
    assert "not an environment variable name" in (template_env_var_problem("1X") or "")
    assert "deployer's credentials" in (template_env_var_problem("AWS_SECRET_ACCESS_KEY") or "")


def test_a_huge_number_is_a_clean_error_in_every_phase(tmp_path: Path) -> None:
    path = write(tmp_path, HEAD + "{{ 10**5000 }}}")
    refused(path, "too large")
    with pytest.raises(TemplateError, match="too large"):
        template.used_variables(path)  # Jinja folded constants here, outside any error handling
        template.render(path, {"family": "f"}, {})
    assert template.render(write(tmp_path, HEAD + "{{ 2**10 }}}"), {"family": "f"}, {})["x"] == 1024


def test_a_device_a_fifo_a_directory_and_a_huge_file_are_not_templates(tmp_path: Path) -> None:
    refused(Path("/dev/zero"), "not a regular file (a device)")
    fifo = tmp_path / "fifo.j2"
    os.mkfifo(fifo)
    started = time.monotonic()
    refused(fifo, "a FIFO")
    assert time.monotonic() - started < 5  # never blocks waiting for a writer
    refused(tmp_path, "a directory")
    big = write(tmp_path, HEAD + '"' + "x" * template_guard.MAX_TEMPLATE_BYTES + '"}')
    refused(big, "larger than 1024 KiB")
    (tmp_path / "zero").symlink_to("/dev/zero")
    refused(write(tmp_path, HEAD + '{% include "zero" %}}'), "outside the template's directory")


def test_runaway_loops_output_and_time_are_capped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    loops = "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}"
    refused(write(tmp_path, HEAD + loops + "1}"), "loops more than")
    big = '{% for i in range(20000) %}{{ "x" * 100 }}{% endfor %}'
    refused(write(tmp_path, HEAD + '"' + big + '"}'), "rendered template is larger than")
    refused(write(tmp_path, HEAD + '"{{ "x" * 100000000 }}"}'), "longer than")
    monkeypatch.setattr(template_guard, "MAX_RENDER_SECONDS", 0.5)
    strings = '{% for a in "x" * 9000 %}{% for b in "x" * 9000 %}{% endfor %}{% endfor %}'
    started = time.monotonic()
    refused(write(tmp_path, HEAD + strings + "1}"), "took longer than 0.5 s")
    assert time.monotonic() - started < 5


def test_deep_nesting_is_a_clean_error(tmp_path: Path) -> None:
    macro = "{% macro m(n) %}{{ m(n + 1) }}{% endmacro %}"
    refused(write(tmp_path, HEAD + macro + "{{ m(0) }}}"), "t.json.j2")
