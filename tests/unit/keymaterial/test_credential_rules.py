"""task.credentials_path and task.credentials_env (issue 13 item 9): checked when settings load and
again by the wrapper itself."""

from __future__ import annotations

import pytest

from gcpfargate.config import load_settings
from gcpfargate.credentials.wiring import wrapper_script
from gcpfargate.errors import ConfigError, TemplateError
from gcpfargate.keymaterial.rules import credentials_env_problem, credentials_path_problem

GOOD_PATHS = [
    "/tmp/gcp/credentials.json",
    "/var/lib/app/key.json",
    "/run/secrets/gcp.json",
    "/home/app/k.json",
    "/app/creds/key.json",
    "/tmp/key.json",
]
BAD_PATHS = {
    "/proc/self/fd/1": "system directory",
    "/dev/stdout": "system directory",
    "/etc/passwd": "system directory",
    "/sys/kernel/x": "system directory",
    "/bin/sh": "system directory",
    "/usr/local/key.json": "system directory",
    "/lib64/k.json": "system directory",
    "/credentials.json": "not in / itself",
    "/": "not a directory",
    "/tmp/../etc/passwd": "normalised",
    "/tmp/./k.json": "normalised",
    "//tmp/k.json": "normalised",
    "/tmp//k.json": "normalised",
    "relative/k.json": "absolute",
    "/tmp/gcp/": "not a directory",
}
GOOD_NAMES = ["GCP_CREDENTIALS_JSON", "MY_KEY", "_K"]
BAD_NAMES = [
    "PATH",
    "HOME",
    "GOOGLE_APPLICATION_CREDENTIALS",
    "IFS",
    "AWS_REGION",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "ECS_CONTAINER_METADATA_URI_V4",
    "LD_PRELOAD",
    "path",
    "1BAD",
    "A-B",
]


@pytest.mark.parametrize("path", GOOD_PATHS)
def test_data_directories_are_accepted(path: str) -> None:
    assert credentials_path_problem(path) is None
    assert "printf" in wrapper_script("GCP_CREDENTIALS_JSON", path)


@pytest.mark.parametrize("path", sorted(BAD_PATHS))
def test_system_places_and_unnormalised_paths_are_refused(path: str) -> None:
    reason = credentials_path_problem(path)
    assert reason is not None and BAD_PATHS[path] in reason
    with pytest.raises(TemplateError, match=r"task\.credentials_path"):
        wrapper_script("GCP_CREDENTIALS_JSON", path)
    with pytest.raises(ConfigError, match=r"task\.credentials_path"):
        load_settings(environ={"GCPFARGATE_TASK_CREDENTIALS_PATH": path})


@pytest.mark.parametrize("name", GOOD_NAMES)
def test_ordinary_variable_names_are_accepted(name: str) -> None:
    assert credentials_env_problem(name) is None


@pytest.mark.parametrize("name", BAD_NAMES)
def test_variables_the_wrapper_or_app_rely_on_are_refused(name: str) -> None:
    assert credentials_env_problem(name) is not None
    with pytest.raises(TemplateError, match=r"task\.credentials_env"):
        wrapper_script(name, "/tmp/gcp/credentials.json")
    with pytest.raises(ConfigError, match=r"task\.credentials_env"):
        load_settings(environ={"GCPFARGATE_TASK_CREDENTIALS_ENV": name})
