"""The settings chain: flag > environment > file > default, typo protection, missing keys together."""

from __future__ import annotations

from pathlib import Path

import pytest

from gcpfargate.config import load_settings
from gcpfargate.errors import ConfigError

FILE = """
[gcp]
project = "file-project"
service_account = "file-runner"

[aws]
region = "eu-west-1"

[task]
family = "batch"
containers = ["app"]
[task.vars]
team = "data"
"""


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "gcpfargate.toml"
    path.write_text(FILE)
    return path


def test_precedence_flag_over_env_over_file_over_default(config: Path) -> None:
    env = {"GCPFARGATE_AWS_REGION": "us-east-1", "GCPFARGATE_GCP_PROJECT": "env-project"}
    settings = load_settings(config, environ=env, flags={"aws.region": "ap-northeast-1", "gcp.project": None})
    assert settings.get("aws.region") == "ap-northeast-1" and settings.sources["aws.region"] == "flag"
    assert settings.get("gcp.project") == "env-project" and settings.sources["gcp.project"] == "env"
    assert settings.get("gcp.service_account") == "file-runner" and settings.sources["gcp.service_account"] == "file"
    assert settings.get("image.platform") == "linux/amd64" and settings.sources["image.platform"] == "default"
    assert settings.get("task.vars") == {"team": "data"}


def test_derived_names(config: Path) -> None:
    settings = load_settings(config, environ={})
    assert settings.service_account_email == "file-runner@file-project.iam.gserviceaccount.com"
    assert settings.secret_name == "gcpfargate/file-runner"
    assert settings.repository == "batch"
    assert settings.execution_role_name == "gcpfargate-batch-execution"
    assert settings.path("image.context") == config.parent.resolve()


def test_env_types_are_parsed(config: Path) -> None:
    env = {"GCPFARGATE_GCP_CREATE_SERVICE_ACCOUNT": "yes", "GCPFARGATE_RUN_SUBNETS": "subnet-0123abcd, subnet-4567cdef",
           "GCPFARGATE_RUN_WAIT_TIMEOUT": "60"}
    settings = load_settings(config, environ=env)
    assert settings.get("gcp.create_service_account") is True
    assert settings.get("run.subnets") == ["subnet-0123abcd", "subnet-4567cdef"]
    assert settings.get("run.wait_timeout") == 60


def test_the_config_path_comes_from_the_environment_too(config: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path.parent)
    settings = load_settings(None, environ={"GCPFARGATE_CONFIG": str(config)})
    assert settings.config_path == config


@pytest.mark.parametrize(("body", "env", "fragment"), [
    ('[gcp]\nprojct = "x"\n', {}, "unknown key gcp.projct in"),
    ('[gpc]\n', {}, "unknown section [gpc]"),
    ("", {"GCPFARGATE_GCP_PROJCT": "x"}, "GCPFARGATE_GCP_PROJCT"),
    ('[task]\ncontainers = "app"\n', {}, "task.containers"),
    ("", {"GCPFARGATE_AWS_REGION": "Tokyo"}, "aws.region"),
])
def test_typos_and_bad_values_are_named(tmp_path: Path, body: str, env: dict[str, str], fragment: str) -> None:
    path = tmp_path / "gcpfargate.toml"
    path.write_text(body)
    with pytest.raises(ConfigError) as raised:
        load_settings(path, environ=env)
    assert fragment in raised.value.message


def test_missing_required_keys_are_reported_together(tmp_path: Path) -> None:
    path = tmp_path / "gcpfargate.toml"
    path.write_text("")
    settings = load_settings(path, environ={})
    with pytest.raises(ConfigError) as raised:
        settings.require("gcp.project", "gcp.service_account", "task.family")
    for name in ("GCPFARGATE_GCP_PROJECT", "GCPFARGATE_GCP_SERVICE_ACCOUNT", "GCPFARGATE_TASK_FAMILY"):
        assert name in raised.value.message


def test_non_setting_variables_are_ignored(config: Path) -> None:
    env = {"GCPFARGATE_ECR_REGISTRY": "127.0.0.1:5000", "GCPFARGATE_CALL_LOG": "/tmp/x", "GCPFARGATE_OTHER": "1"}
    assert load_settings(config, environ=env).get("gcp.project") == "file-project"
