"""`[jobs.<name>]` tables: converted expressions, checked values, errors naming job and key,
environment overlays, and what a job's run and overrides become."""

from __future__ import annotations

from pathlib import Path

import pytest

from gcpfargate.config import load_settings
from gcpfargate.ecs import jobs
from gcpfargate.ecs.overrides import TaskOverrides
from gcpfargate.errors import ConfigError
from gcpfargate.settings import RunSettings, Settings

BASE = """
[task]
family = "batch"

[run]
cluster = "main"
subnets = ["subnet-0123456789abcdef0"]
"""

THREE = """
[jobs.export-daily]
cron = "0 3 * * *"
timezone = "Asia/Tokyo"
command = "export --since yesterday"
env = { MODE = "daily" }
cpu = "1 vCPU"
memory = "2 GB"

[jobs.cleanup]
rate = "1 hour"
command = ["cleanup", "--all"]
cluster = "batch"

[jobs.weekly]
cron = "@weekly"
enabled = false
"""


def load(tmp_path: Path, text: str, environment: str | None = None) -> Settings:
    path = tmp_path / "gcpfargate.toml"
    path.write_text(BASE + text)
    return load_settings(path, environ={}, environment=environment)


def error(tmp_path: Path, text: str) -> str:
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, text)
    return str(caught.value.message)


def test_three_jobs_load_converted_and_typed(tmp_path: Path) -> None:
    settings = load(tmp_path, THREE)
    found = settings.jobs
    assert list(found) == ["export-daily", "cleanup", "weekly"]
    export, cleanup, weekly = found.values()
    assert export.cron == "cron(0 3 * * ? *)" and export.written == "cron(0 3 * * *)"
    assert export.timezone == "Asia/Tokyo" and export.enabled is True
    assert export.argv == ["export", "--since", "yesterday"]
    assert (export.cpu, export.memory) == ("1024", "2048")
    assert export.group == "job:export-daily"
    assert cleanup.rate == "rate(1 hour)" and cleanup.expression == "rate(1 hour)"
    assert cleanup.argv == ["cleanup", "--all"] and cleanup.timezone == "UTC"
    assert weekly.expression == "cron(0 0 ? * SUN *)" and weekly.written == "@weekly"
    assert weekly.enabled is False and weekly.argv is None


def test_a_job_overrides_run_keys_and_a_flag_beats_the_job(tmp_path: Path) -> None:
    settings = load(tmp_path, THREE)
    cleanup = settings.jobs["cleanup"]
    assert jobs.settings_for(settings, cleanup).run.cluster == "batch"
    assert jobs.settings_for(settings, cleanup).run.subnets == ["subnet-0123456789abcdef0"]
    flagged = load_settings(
        tmp_path / "gcpfargate.toml", environ={}, overrides={"run.cluster": "other"}
    )
    assert jobs.settings_for(flagged, flagged.jobs["cleanup"]).run.cluster == "other"
    assert cleanup.run_settings(RunSettings()).cluster == "batch"


def test_flags_go_over_the_jobs_overrides(tmp_path: Path) -> None:
    export = load(tmp_path, THREE).jobs["export-daily"]
    merged = jobs.overrides_for(export, TaskOverrides(environment={"EXTRA": "1"}, cpu="2048"))
    assert merged.command == ["export", "--since", "yesterday"]
    assert merged.environment == {"MODE": "daily", "EXTRA": "1"}
    assert (merged.cpu, merged.memory) == ("2048", "2048")
    replaced = jobs.overrides_for(export, TaskOverrides(command=["other"]))
    assert replaced.command == ["other"]


def test_an_environment_overlays_a_job_key_by_key(tmp_path: Path) -> None:
    text = (
        THREE
        + """
[environments.staging.jobs.export-daily]
enabled = false
timezone = "UTC"

[environments.staging.jobs.only-here]
rate = "5 minutes"
"""
    )
    plain = load(tmp_path, text).jobs
    assert "only-here" not in plain and plain["export-daily"].enabled is True
    staged = load(tmp_path, text, environment="staging").jobs
    assert staged["export-daily"].enabled is False and staged["export-daily"].timezone == "UTC"
    assert staged["export-daily"].command == "export --since yesterday"  # kept from the file
    assert staged["only-here"].rate == "rate(5 minutes)"


@pytest.mark.parametrize(
    ("table", "words"),
    [
        ('[jobs.a]\ncron = "0 3 * *"', ["jobs.a.cron", "is not a schedule expression"]),
        ('[jobs.a]\nrate = "1 fortnight"', ["jobs.a.rate", "fortnight"]),
        ('[jobs.a]\ncron = "@daily"\nrate = "1 day"', ["jobs.a", "exactly one of cron or rate"]),
        ("[jobs.a]\nenabled = true", ["jobs.a", "exactly one of cron or rate"]),
        ('[jobs.a]\ncron = "@daily"\ntimezone = "Mars/Olympus"', ["jobs.a.timezone", "IANA"]),
        ('[jobs.a]\ncron = "@daily"\ncpu = "3 vCPU"', ["jobs.a.cpu", "not a Fargate cpu"]),
        ('[jobs.a]\ncron = "@daily"\ncpu = 256\nmemory = 4096', ["jobs.a", "cpu 256 with memory"]),
        ('[jobs.a]\ncron = "@daily"\nmemory = "lots"', ["jobs.a.memory", "not a memory size"]),
        ('[jobs.a]\ncron = "@daily"\ncomand = "x"', ["jobs.a.comand", "did you mean command"]),
        ('[jobs.a]\ncron = "@daily"\nenabled = "no"', ["jobs.a.enabled", "true or false"]),
        ('[jobs.a]\ncron = "@daily"\ncommand = "a \'b"', ["jobs.a.command", "cannot be split"]),
        ('[jobs.a]\ncron = "@daily"\ncommand = []', ["jobs.a.command", "is empty"]),
        ('[jobs.a]\ncron = "@daily"\nenv = { "1X" = "y" }', ["jobs.a.env", "not a variable"]),
        ('[jobs.a]\ncron = "@daily"\nenv = { BASH_ENV = "y" }', ["jobs.a.env.BASH_ENV"]),
        ('[jobs.a]\ncron = "@daily"\nsubnets = ["x"]', ["jobs.a.subnets", "subnet id"]),
        ('[jobs."a b"]\ncron = "@daily"', ["job name 'a b'", "1-40"]),
        ("[jobs]\na = 1", ["jobs.a", "must be a table"]),
        ('[environments.x.jobs.a]\ncron = "@reboot"', ["jobs.a.cron", "[environments.x]"]),
    ],
)
def test_bad_job_values_name_the_job_and_key(tmp_path: Path, table: str, words: list[str]) -> None:
    message = error(tmp_path, table)
    for word in words:
        assert word in message, message


def test_key_text_in_a_job_is_refused_without_quoting_it(tmp_path: Path) -> None:
    # The markers are assembled at run time so no committed file holds key-looking text.
    key = (
        "-----BEGIN " + "PRIVATE KEY-----\\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\\n"
        "-----END " + "PRIVATE KEY-----\\n"
    )
    message = error(tmp_path, f'[jobs.a]\ncron = "@daily"\nenv = {{ K = "{key}" }}')
    assert "jobs.a" in message and "private key" in message and "MIIE" not in message


def test_group_names_are_stable_and_at_most_64() -> None:
    assert jobs.group_name("batch") == "gcpfargate-batch"
    long_a, long_b = "a" * 60 + "x", "a" * 60 + "y"
    assert len(jobs.group_name(long_a)) == 64
    assert jobs.group_name(long_a) != jobs.group_name(long_b)
    assert jobs.group_name(long_a)[:55] == ("gcpfargate-" + long_a)[:55]
