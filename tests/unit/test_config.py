"""The settings chain: flag > environment > file > default, typo protection, missing keys
together."""

from __future__ import annotations

from dataclasses import FrozenInstanceError, fields
from pathlib import Path
from typing import get_args, get_origin, get_type_hints

import pytest

from gcpfargate.config import SCHEMA, Overrides, Settings, load_settings
from gcpfargate.errors import ConfigError
from gcpfargate.settings import SECTIONS, GcpSettings, ImageSettings, Key, ScheduleSettings

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
    settings = load_settings(
        config, environ=env, overrides={"aws.region": "ap-northeast-1", "gcp.project": None}
    )
    assert settings.aws.region == "ap-northeast-1" and settings.sources["aws.region"] == "flag"
    assert settings.gcp.project == "env-project" and settings.sources["gcp.project"] == "env"
    assert (
        settings.gcp.service_account == "file-runner"
        and settings.sources["gcp.service_account"] == "file"
    )
    assert (
        settings.image.platform == "linux/amd64" and settings.sources["image.platform"] == "default"
    )
    assert settings.task.vars == {"team": "data"}


def test_derived_names(config: Path) -> None:
    settings = load_settings(config, environ={})
    assert settings.service_account_email == "file-runner@file-project.iam.gserviceaccount.com"
    assert settings.secret_name == "gcpfargate/file-runner"
    assert settings.repository == "batch"
    assert settings.execution_role_name == "gcpfargate-batch-execution"
    assert settings.resolve(settings.image.context) == config.parent.resolve()


def test_path_settings_are_absolute_after_load(
    config: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Readers never resolve a path again: the file's values are relative to the config file's
    # directory wherever the command runs, and the Dockerfile is relative to the context.
    config.write_text(
        config.read_text() + '\n[image]\ncontext = "app"\ndockerfile = "d/Dockerfile"\n'
    )
    monkeypatch.chdir(tmp_path.parent)
    settings = load_settings(config, environ={})
    base = config.parent.resolve()
    assert settings.image.context == str(base / "app")
    assert settings.image.dockerfile == str(base / "app" / "d" / "Dockerfile")
    assert settings.task.template == str(base / "task-definition.json.j2")
    flagged = load_settings(config, environ={}, overrides={"task.template": "../t.json.j2"})
    assert flagged.task.template == str(base.parent / "t.json.j2")


def test_env_types_are_parsed(config: Path) -> None:
    env = {
        "GCPFARGATE_GCP_CREATE_SERVICE_ACCOUNT": "yes",
        "GCPFARGATE_RUN_SUBNETS": "subnet-0123abcd, subnet-4567cdef",
        "GCPFARGATE_RUN_WAIT_TIMEOUT": "60",
    }
    settings = load_settings(config, environ=env)
    assert settings.gcp.create_service_account is True
    assert settings.run.subnets == ["subnet-0123abcd", "subnet-4567cdef"]
    assert settings.run.wait_timeout == 60


def test_the_config_path_comes_from_the_environment_too(
    config: Path, tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.chdir(tmp_path.parent)
    settings = load_settings(None, environ={"GCPFARGATE_CONFIG": str(config)})
    assert settings.config_path == config


@pytest.mark.parametrize(
    ("body", "env", "fragment"),
    [
        ('[gcp]\nprojct = "x"\n', {}, "unknown key gcp.projct in"),
        ("[gpc]\n", {}, "unknown section [gpc]"),
        ("", {"GCPFARGATE_GCP_PROJCT": "x"}, "GCPFARGATE_GCP_PROJCT"),
        ('[task]\ncontainers = "app"\n', {}, "task.containers"),
        ("", {"GCPFARGATE_AWS_REGION": "Tokyo"}, "aws.region"),
    ],
)
def test_typos_and_bad_values_are_named(
    tmp_path: Path, body: str, env: dict[str, str], fragment: str
) -> None:
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
    for name in (
        "GCPFARGATE_GCP_PROJECT",
        "GCPFARGATE_GCP_SERVICE_ACCOUNT",
        "GCPFARGATE_TASK_FAMILY",
    ):
        assert name in raised.value.message


def test_non_setting_variables_are_ignored(config: Path) -> None:
    env = {
        "GCPFARGATE_ECR_REGISTRY": "127.0.0.1:5000",
        "GCPFARGATE_CALL_LOG": "/tmp/x",
        "GCPFARGATE_OTHER": "1",
    }
    assert load_settings(config, environ=env).gcp.project == "file-project"


# Typed settings: one frozen dataclass per section, the same chain, the same messages.


def _annotation_kinds() -> dict[str, type]:
    return {
        "str": str,
        "bool": bool,
        "int": int,
        "list[str]": list,
        "dict[str, str]": dict,
        "dict[str, object]": dict,
    }


@pytest.mark.parametrize(
    "environ",
    [
        {},
        {
            "GCPFARGATE_IMAGE_PIN_DIGEST": "off",
            "GCPFARGATE_RUN_POLL_INTERVAL": "2",
            "GCPFARGATE_RUN_SECURITY_GROUPS": "sg-0123abcd",
        },
    ],
)
def test_every_value_has_its_declared_type(config: Path, environ: dict[str, str]) -> None:
    settings = load_settings(config, environ=environ)
    for section, cls in SECTIONS.items():
        typed = getattr(settings, section)
        assert isinstance(typed, cls)
        for spec in fields(cls):
            value = getattr(typed, spec.name)
            assert type(value) is _annotation_kinds()[str(spec.type)], (
                f"{section}.{spec.name} = {value!r}"
            )


def test_the_schema_is_the_dataclasses(config: Path) -> None:
    settings = load_settings(config, environ={})
    assert set(settings.sources) == {
        f"{s}.{f.name}" for s, cls in SECTIONS.items() for f in fields(cls)
    }
    assert SCHEMA["run"]["wait_timeout"] == Key(int, 3600, None, None)
    assert SCHEMA["image"]["build_args"].kind is dict and SCHEMA["image"]["build_args"].item is str
    assert SCHEMA["task"]["vars"].item is None  # free template values: numbers and tables are fine


def test_settings_are_frozen_and_defaults_are_not_shared(config: Path) -> None:
    first, second = load_settings(config, environ={}), load_settings(config, environ={})
    with pytest.raises(FrozenInstanceError):
        first.image.pin_digest = False  # type: ignore[misc]
    with pytest.raises(FrozenInstanceError):
        first.gcp = GcpSettings()  # type: ignore[misc]
    assert first.run.subnets == [] and first.run.subnets is not second.run.subnets
    assert first.image.build_args is not ImageSettings().build_args


def test_values_read_as_attributes(config: Path) -> None:
    settings = load_settings(config, environ={"GCPFARGATE_RUN_SUBNETS": "subnet-0123abcd"})
    assert settings.gcp == GcpSettings(project="file-project", service_account="file-runner")
    assert settings.task.containers == ["app"] and settings.task.vars == {"team": "data"}
    assert settings.image.pin_digest is True and settings.image.push_latest is False
    assert settings.run.subnets == ["subnet-0123abcd"] and settings.run.wait_timeout == 3600
    assert settings.schedule == ScheduleSettings()
    assert settings.resolve(settings.task.template) == config.parent / "task-definition.json.j2"


def test_overrides_win_and_none_means_not_given(config: Path) -> None:
    env = {"GCPFARGATE_RUN_CLUSTER": "env-cluster", "GCPFARGATE_IMAGE_TAG": "env-tag"}
    settings = load_settings(
        config,
        environ=env,
        overrides={
            "run.cluster": "flag-cluster",
            "run.subnets": ["subnet-0123abcd"],
            "run.wait_timeout": 5,
            "image.tag": None,
        },
    )
    assert (settings.run.cluster, settings.sources["run.cluster"]) == ("flag-cluster", "flag")
    assert (settings.run.subnets, settings.run.wait_timeout) == (["subnet-0123abcd"], 5)
    assert (settings.image.tag, settings.sources["image.tag"]) == ("env-tag", "env")


def test_a_flag_beats_an_invalid_environment_value(config: Path) -> None:
    # The chain picks one value per key and validates only that one, as before.
    settings = load_settings(
        config, environ={"GCPFARGATE_AWS_REGION": "Tokyo"}, overrides={"aws.region": "us-east-1"}
    )
    assert settings.aws.region == "us-east-1"


def test_an_override_of_an_unknown_setting_is_a_bug() -> None:
    with pytest.raises(ValueError, match=r"no setting 'run\.clustr'"):
        load_settings(None, environ={}, overrides={"run.clustr": "x"})  # type: ignore[typeddict-unknown-key]


def test_every_flag_sets_a_setting_of_its_type() -> None:
    kinds = {str: str, int: int, list: list, bool: bool}
    hints = get_type_hints(Overrides)
    assert len(hints) == 18  # 14, and the four [service] flags
    for dotted, hint in hints.items():
        section, key = dotted.split(".")
        declared = {kinds.get(get_origin(arg) or arg) for arg in get_args(hint)} - {None}
        assert declared == {SCHEMA[section][key].kind}, dotted


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            {"run.wait_timeout": "60"},
            "run.wait_timeout given as a flag must be a whole number, not str '60'",
        ),
        (
            {"run.subnets": "subnet-0123abcd"},
            "run.subnets given as a flag must be a list of strings, not str 'subnet-0123abcd'",
        ),
        (
            {"aws.region": "Tokyo"},
            "aws.region = 'Tokyo' (flag) is not a valid AWS region name (like ap-northeast-1)",
        ),
        (
            {"run.subnets": ["subnet-x"]},
            "run.subnets = ['subnet-x'] (flag) item 'subnet-x' is not a valid subnet id",
        ),
    ],
)
def test_bad_flag_values_are_named(
    tmp_path: Path, monkeypatch, overrides: Overrides, message: str
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as raised:
        load_settings(None, environ={}, overrides=overrides)
    assert raised.value.message == message


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("1", True),
        ("true", True),
        ("Yes", True),
        (" on ", True),
        ("0", False),
        ("false", False),
        ("NO", False),
        ("off", False),
    ],
)
def test_env_booleans(tmp_path: Path, monkeypatch, raw: str, expected: bool) -> None:
    monkeypatch.chdir(tmp_path)
    settings = load_settings(None, environ={"GCPFARGATE_IMAGE_PUSH_LATEST": raw})
    assert settings.image.push_latest is expected and settings.sources["image.push_latest"] == "env"


def test_empty_env_is_unset_and_lists_split_on_commas(config: Path) -> None:
    env = {
        "GCPFARGATE_GCP_PROJECT": "",
        "GCPFARGATE_RUN_SECURITY_GROUPS": " sg-0123abcd,, sg-4567cdef ,",
    }
    settings = load_settings(config, environ=env)
    assert (settings.gcp.project, settings.sources["gcp.project"]) == ("file-project", "file")
    assert settings.run.security_groups == ["sg-0123abcd", "sg-4567cdef"]


@pytest.mark.parametrize(
    ("body", "env", "message"),
    [
        (
            "",
            {"GCPFARGATE_IMAGE_PIN_DIGEST": "maybe"},
            "environment variable GCPFARGATE_IMAGE_PIN_DIGEST must be true or false, not 'maybe'",
        ),
        (
            "",
            {"GCPFARGATE_RUN_WAIT_TIMEOUT": "1h"},
            "environment variable GCPFARGATE_RUN_WAIT_TIMEOUT must be a whole number, not '1h'",
        ),
        (
            "",
            {"GCPFARGATE_TASK_VARS": "x"},
            "unknown setting in environment variable GCPFARGATE_TASK_VARS (did you mean "
            "GCPFARGATE_TASK_ENV_VARS?)",
        ),
        (
            "",
            {"GCPFARGATE_AWS_REGION": "Tokyo"},
            "aws.region = 'Tokyo' (environment variable GCPFARGATE_AWS_REGION) "
            "is not a valid AWS region name (like ap-northeast-1)",
        ),
        (
            '[task]\ncontainers = "app"\n',
            {},
            "task.containers in {path} must be a list of strings, not str 'app'",
        ),
        (
            "[run]\nwait_timeout = true\n",
            {},
            "run.wait_timeout in {path} must be a whole number, not bool True",
        ),
        (
            "[image]\nbuild_args = { A = 1 }\n",
            {},
            "image.build_args in {path} must be a table, not dict {{'A': 1}}",
        ),
        (
            '[task]\ncredentials_path = "tmp/x"\n',
            {},
            "task.credentials_path = 'tmp/x' ({path}) must be an absolute path",
        ),
        ('[gcp]\nprojct = "x"\n', {}, "unknown key gcp.projct in {path} (did you mean project?)"),
    ],
)
def test_error_messages_are_unchanged(
    tmp_path: Path, body: str, env: dict[str, str], message: str
) -> None:
    path = tmp_path / "gcpfargate.toml"
    path.write_text(body)
    with pytest.raises(ConfigError) as raised:
        load_settings(path, environ=env)
    assert raised.value.message == message.format(path=path)


def test_task_vars_take_any_toml_value(tmp_path: Path) -> None:
    path = tmp_path / "gcpfargate.toml"
    path.write_text('[task.vars]\nreplicas = 3\nlabels = { team = "data" }\n')
    assert load_settings(path, environ={}).task.vars == {"replicas": 3, "labels": {"team": "data"}}


def test_require_sees_empty_lists_and_defaults_build_an_object() -> None:
    settings = Settings()
    assert settings.run.cluster == "default" and settings.image.platform == "linux/amd64"
    with pytest.raises(ConfigError) as raised:
        settings.require("run.subnets", "run.cluster")
    assert raised.value.message == "missing required setting: run.subnets (GCPFARGATE_RUN_SUBNETS)"
