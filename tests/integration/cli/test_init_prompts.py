"""`init` on a real terminal (issue 17 item 11, issue 19): the CLI runs under a pseudo-terminal,
asks for what it cannot guess (family, project, account, authentication mode, region), re-asks after
an answer it cannot use, offers a starter Dockerfile, and writes what was answered."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.integration.helpers import Terminal, terminal_env

AUTH_PROMPT = "keyless (no key; the choice where the organisation forbids keys) [key]:"


def test_init_asks_on_a_terminal_and_writes_the_answers(tmp_path: Path) -> None:
    from gcpfargate.config import load_settings

    directory = tmp_path / "nightly-job"
    directory.mkdir()
    term = Terminal(
        [sys.executable, "-m", "gcpfargate", "init"], directory, terminal_env(tmp_path / ".home")
    )
    term.answer("Task family [nightly-job]:", "")  # the guess, accepted with Enter
    term.answer("GCP project id:", "my-project-1")
    term.answer("Service account (id or email):", "runner")
    term.answer(AUTH_PROMPT, "maybe")  # not a mode: asked again
    term.expect("'maybe' is not one of 'key', 'keyless'")
    term.answer(AUTH_PROMPT, "keyless")
    term.answer("AWS region:", "eu-west-1")
    term.answer("No Dockerfile here. Write a starter one? [Y/n]:", "y")
    code, rest = term.finish()
    assert code == 0, rest
    assert "Next: Run `gcpfargate deploy`." in rest, rest

    settings = load_settings(directory / "gcpfargate.toml", environ={})
    assert (
        settings.family,
        settings.gcp.project,
        settings.gcp.service_account,
        settings.gcp.auth,
        settings.aws.region,
    ) == ("nightly-job", "my-project-1", "runner", "keyless", "eu-west-1")
    assert (directory / "Dockerfile").read_text().startswith("# A starter image")
    assert (directory / "task-definition.json.j2").exists()


def test_init_on_a_terminal_keeps_key_mode_by_default_and_asks_nothing_given(
    tmp_path: Path,
) -> None:
    from gcpfargate.config import load_settings

    directory = tmp_path / "given"
    directory.mkdir()
    (directory / "Dockerfile").write_text("FROM busybox\n")
    env = {**terminal_env(tmp_path / ".home"), "AWS_REGION": "ap-northeast-1"}
    term = Terminal(
        [
            sys.executable,
            "-m",
            "gcpfargate",
            "init",
            "--family",
            "jobs",
            "--gcp-project",
            "my-project-2",
            "--service-account",
            "runner",
        ],
        directory,
        env,
    )
    term.answer(AUTH_PROMPT, "")  # Enter: key mode, as before keyless existed
    code, rest = term.finish()
    assert code == 0, rest
    assert (
        "Task family" not in rest and "GCP project id" not in rest and "AWS region" not in rest
    ), rest
    settings = load_settings(directory / "gcpfargate.toml", environ={})
    assert (settings.family, settings.gcp.auth) == ("jobs", "key")

    flagged = tmp_path / "flagged"
    flagged.mkdir()
    (flagged / "Dockerfile").write_text("FROM busybox\n")
    quiet = Terminal(
        [
            sys.executable,
            "-m",
            "gcpfargate",
            "init",
            "--family",
            "jobs",
            "--gcp-project",
            "my-project-2",
            "--service-account",
            "runner",
            "--auth",
            "keyless",
        ],
        flagged,
        env,
    )
    code, rest = quiet.finish()  # nothing left to ask
    assert code == 0, rest
    assert load_settings(flagged / "gcpfargate.toml", environ={}).gcp.auth == "keyless"


def test_init_prompts_re_ask_until_the_settings_rule_is_met(tmp_path: Path) -> None:
    from gcpfargate.config import load_settings

    directory = tmp_path / "checked"
    directory.mkdir()
    env = {**terminal_env(tmp_path / ".home"), "AWS_REGION": "eu-west-1"}
    term = Terminal(
        [sys.executable, "-m", "gcpfargate", "init", "--family", "jobs", "--auth", "key"],
        directory,
        env,
    )
    term.answer("GCP project id:", "")  # empty: every later command would need it, so asked again
    term.expect("'' is needed. A GCP project id has 6-30 lowercase letters")
    term.answer("GCP project id:", "P1!")
    term.expect("'P1!' is not a valid GCP project id. A GCP project id has 6-30")
    term.answer("GCP project id:", "my-project-1")
    term.answer("Service account (id or email):", "bad sa!")
    term.expect("'bad sa!' is not a valid service account id or email. A service account is")
    term.answer("Service account (id or email):", "runner")
    term.answer("No Dockerfile here. Write a starter one? [Y/n]:", "")
    code, rest = term.finish()
    assert code == 0, rest
    settings = load_settings(directory / "gcpfargate.toml", environ={})
    assert (settings.gcp.project, settings.gcp.service_account) == ("my-project-1", "runner")
    # The starter Dockerfile comes with the main.py it runs, and that program runs.
    assert 'CMD ["python", "main.py"]' in (directory / "Dockerfile").read_text()
    ran = subprocess.run(
        [sys.executable, "main.py"], cwd=directory, capture_output=True, text=True, timeout=30
    )
    assert ran.returncode == 0 and ran.stdout.startswith("hello from gcpfargate"), ran


def _init(directory: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gcpfargate", "init", "--family", "jobs", *args],
        cwd=directory,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_init_flags_are_checked_with_the_settings_rules(tmp_path: Path) -> None:
    directory = tmp_path / "flags"
    directory.mkdir()
    env = terminal_env(tmp_path / ".home")
    for args, said in (
        (("--gcp-project", "P1!"), "--gcp-project 'P1!' is not a valid GCP project id"),
        (
            ("--service-account", "bad sa!"),
            "--service-account 'bad sa!' is not a valid service account id or email",
        ),
    ):
        done = _init(directory, env, *args)
        assert done.returncode == 2, done.stderr
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and said in lines[0] and "6-30 lowercase" in lines[0], lines
        assert "Traceback" not in done.stderr
    assert not (directory / "gcpfargate.toml").exists()


def test_init_force_repairs_a_file_that_does_not_load(tmp_path: Path) -> None:
    from gcpfargate.config import load_settings

    directory = tmp_path / "broken"
    directory.mkdir()
    (directory / "gcpfargate.toml").write_text('[gcp]\nproject = "P1!"\n')
    env = terminal_env(tmp_path / ".home")
    refused = _init(directory, env, "--gcp-project", "my-project-1")
    assert refused.returncode == 2 and "gcp.project = 'P1!'" in refused.stderr, refused.stderr
    repaired = _init(
        directory, env, "--force", "--gcp-project", "my-project-1", "--service-account", "runner"
    )
    assert repaired.returncode == 0, repaired.stderr
    assert "warning: gcp.project = 'P1!'" in repaired.stderr and "--force replaces" in (
        repaired.stderr
    )
    settings = load_settings(directory / "gcpfargate.toml", environ={})
    assert (settings.gcp.project, settings.family) == ("my-project-1", "jobs")


def test_init_off_a_terminal_writes_the_region_it_detects(tmp_path: Path) -> None:
    from gcpfargate.config import load_settings

    directory = tmp_path / "region"
    directory.mkdir()
    env = {**terminal_env(tmp_path / ".home"), "AWS_REGION": "eu-central-1"}
    done = _init(directory, env, "--gcp-project", "my-project-1", "--service-account", "runner")
    assert done.returncode == 0, done.stderr
    assert load_settings(directory / "gcpfargate.toml", environ={}).aws.region == "eu-central-1"
    # The profile's region counts too, as the prompt's guess does.
    profiled = tmp_path / "profiled"
    profiled.mkdir()
    config = tmp_path / "aws-config"
    config.write_text("[default]\nregion = ap-south-1\n")
    done = _init(profiled, {**terminal_env(tmp_path / ".home"), "AWS_CONFIG_FILE": str(config)})
    assert done.returncode == 0, done.stderr
    assert load_settings(profiled / "gcpfargate.toml", environ={}).aws.region == "ap-south-1"
