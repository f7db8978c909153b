"""Keyless wiring keeps Docker's ENTRYPOINT/CMD split exactly as key mode does, and refuses a
read-only root the wrapper cannot write the credential configuration into (pure: no cloud)."""

from __future__ import annotations

from typing import Any

import pytest

from gcpfargate.credentials import wiring
from gcpfargate.credentials.keyless.wiring import wire_keyless
from gcpfargate.ecs import fargate_rules
from gcpfargate.errors import TemplateError
from gcpfargate.image import shim_image

ENV = "GCP_CREDENTIALS_JSON"
PATH = "/tmp/gcp/credentials.json"
ROLE = "arn:aws:iam::123456789012:role/gcpfargate-batch-task"
SHIM = "registry/shim@sha256:" + "1" * 64


def definition(**container: Any) -> dict[str, Any]:
    return {
        "family": "batch",
        "containerDefinitions": [{"name": "app", "image": "repo@sha256:" + "0" * 64, **container}],
    }


def keyless(defn: dict[str, Any], image: dict[str, Any]) -> dict[str, Any]:
    return wire_keyless(
        defn,
        credential_config={"type": "external_account"},
        credentials_env=ENV,
        credentials_path=PATH,
        containers=None,
        image_config=lambda _: image,
        task_role_arn=ROLE,
        shim_image_ref=SHIM,
        project="demo-project",
    )


def app(wired: dict[str, Any]) -> dict[str, Any]:
    return next(c for c in wired["containerDefinitions"] if c["name"] == "app")


@pytest.mark.parametrize(
    ("container", "image"),
    [
        ({}, {"Entrypoint": ["/ep", "a"], "Cmd": ["c", "d"]}),
        ({}, {"Cmd": ["python", "app.py"]}),
        ({"command": ["x"]}, {"Entrypoint": ["/ep"], "Cmd": ["c"]}),
        ({"entryPoint": ["/mine"], "command": ["--flag"]}, {"Entrypoint": ["/ep"], "Cmd": ["c"]}),
        ({"entryPoint": ["/mine"]}, {"Entrypoint": ["/ep"], "Cmd": ["c"]}),
    ],
)
def test_keyless_splits_entry_point_and_command_exactly_as_key_mode(
    container: dict[str, Any], image: dict[str, Any]
) -> None:
    key = wiring.wire(
        definition(**container),
        secret_arn="arn:aws:secretsmanager:ap-northeast-1:123456789012:secret:s",
        credentials_env=ENV,
        credentials_path=PATH,
        containers=None,
        image_config=lambda _: image,
    )["containerDefinitions"][0]
    wired = app(keyless(definition(**container), image))
    assert wired["entryPoint"][4:] == key["entryPoint"][4:]
    assert wired.get("command") == key.get("command")


def test_the_image_cmd_is_the_command_so_an_override_replaces_it() -> None:
    wired = app(keyless(definition(), {"Entrypoint": ["/ep"], "Cmd": ["serve", "--port", "80"]}))
    assert wired["entryPoint"][4:] == ["/ep"]
    assert wired["command"] == ["serve", "--port", "80"]
    # What ECS runs with containerOverrides.command: entryPoint + the override, the CMD gone.
    override = ["migrate"]
    assert wiring.unwrap({**wired, "command": override}).argv == ["/ep", "migrate"]  # type: ignore[union-attr]


def test_a_cmd_only_image_keeps_its_cmd_as_the_command() -> None:
    wired = app(keyless(definition(), {"Cmd": ["python", "app.py"]}))
    assert wired["entryPoint"][4:] == [] and wired["command"] == ["python", "app.py"]


def test_a_read_only_root_gets_a_tmpfs_for_the_config_and_is_refused_without_one() -> None:
    wired = keyless(definition(readonlyRootFilesystem=True), {"Cmd": ["run"]})
    targets = wiring.target_names(wired, None)
    assert shim_image.CONTAINER_NAME not in targets
    # Fargate has tmpfs since 2026-01: the configuration is written to memory, never to a disk.
    assert app(wired)["linuxParameters"]["tmpfs"] == [
        {"containerPath": "/tmp/gcp", "size": 4, "mountOptions": ["mode=0700"]}
    ]
    fargate_rules.check_read_only_root(
        wired, PATH, targets, "template", what="the credential configuration"
    )
    del app(wired)["linuxParameters"]
    with pytest.raises(TemplateError) as caught:
        fargate_rules.check_read_only_root(
            wired, PATH, targets, "template", what="the credential configuration"
        )
    assert caught.value.message == (
        "template: container app has readonlyRootFilesystem, so the credential configuration "
        f"cannot be written to {PATH} (no writable mount or tmpfs there)"
    )
    mounted = keyless(
        definition(
            readonlyRootFilesystem=True,
            mountPoints=[{"sourceVolume": "credentials", "containerPath": "/tmp/gcp"}],
        ),
        {"Cmd": ["run"]},
    )
    assert "linuxParameters" not in app(mounted)  # a task volume covers it already
    fargate_rules.check_read_only_root(mounted, PATH, targets, "template")
