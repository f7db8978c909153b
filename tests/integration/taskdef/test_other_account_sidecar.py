"""A container named in task.containers whose image is in another account's ECR: its
ENTRYPOINT/CMD/USER are read with the caller's credentials (GetAuthorizationToken for that
registry, then the Registry HTTP API v2), before any cloud write; a read the other account's
repository policy refuses stops the deploy with one line saying what to add.

The strict layer's `settings.foreign_registries` holds the other account's repositories and the
actions their policies grant; tests/stack/strict/registry_gate.py answers that registry's Registry
API reads from the same grants, in front of the stack's registry (GCPFARGATE_ECR_ENDPOINTS sends
the account's reads there).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from tests.conftest import ACCOUNT_ID, REGION, Project, assert_one_clean_line
from tests.integration.helpers import latest, prepare, publish_config_image
from tests.stack.strict.registry_gate import ForeignRegistryGate

OTHER = "888888888888"
HOST = f"{OTHER}.dkr.ecr.{REGION}.amazonaws.com"
PULL = ["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"]


@pytest.fixture
def other(project: Project) -> Iterator[tuple[ForeignRegistryGate, dict[str, list[str]]]]:
    """The other account's registry: its repositories (name -> granted actions) and the gate that
    serves its Registry API."""
    registries = project.stack.strict.settings.foreign_registries
    repositories = registries.setdefault(OTHER, {})
    gate = ForeignRegistryGate(
        project.stack.registry, OTHER, registries, ACCOUNT_ID, REGION
    ).start()
    yield gate, repositories
    gate.stop()
    repositories.pop(f"{project.family}-agent", None)  # names are unique per test


def with_sidecar(project: Project) -> str:
    """The default project plus an essential `agent` container from the other account's ECR,
    named in task.containers; returns its image."""
    repository = f"{project.family}-agent"
    publish_config_image(
        project,
        repository,
        "v3",
        {"Entrypoint": ["/opt/agent"], "Cmd": ["--config", "/etc/agent.yaml"], "User": "2000"},
    )
    image = f"{HOST}/{repository}:v3"
    prepare(project)
    template = project.dir / "task-definition.json.j2"
    sidecar = f'{{"name": "agent", "image": "{image}", "essential": true}}'
    template.write_text(
        template.read_text().replace(
            '  "containerDefinitions": [\n', f'  "containerDefinitions": [\n    {sidecar},\n', 1
        )
    )
    config = project.dir / "gcpfargate.toml"
    config.write_text(
        config.read_text().replace("[task]\n", '[task]\ncontainers = ["app", "agent"]\n', 1)
    )
    return image


def env(gate: ForeignRegistryGate, calls: Path | None = None) -> dict[str, str]:
    found = {"GCPFARGATE_ECR_ENDPOINTS": f"{OTHER}={gate.address}"}
    return {**found, "GCPFARGATE_CALL_LOG": str(calls)} if calls else found


def test_a_named_sidecar_in_another_accounts_ecr_is_wired_from_its_image_config(
    project: Project, other: tuple[ForeignRegistryGate, dict[str, list[str]]]
) -> None:
    gate, repositories = other
    image = with_sidecar(project)
    repositories[f"{project.family}-agent"] = PULL
    result = project.run("deploy", "--output", "json", env=env(gate))
    assert result.returncode == 0, result.output
    agent = next(c for c in latest(project)["containerDefinitions"] if c["name"] == "agent")
    assert agent["image"] == image  # left as written: ECS pulls it by ECR's name
    assert agent["entryPoint"][:2] == ["/bin/sh", "-c"]
    assert agent["entryPoint"][4:] == ["/opt/agent"]
    assert agent["command"] == ["--config", "/etc/agent.yaml"]
    assert agent["linuxParameters"]["tmpfs"][0]["mountOptions"] == [
        "mode=0700",
        "uid=2000",
        "gid=2000",
    ]
    # Read through the other account's registry, with ECR's token: manifest, then config blob.
    served = [(method, status) for method, path, status in gate.requests]
    assert ("GET", "200") in served and all(status == "200" for _, status in served), served
    assert any("/blobs/" in path for _, path, _ in gate.requests)
    again = project.run("deploy", "--output", "json", env=env(gate))
    assert again.returncode == 0 and not again.json["register-task"]["changed"], again.output


def test_a_sidecar_the_other_account_does_not_let_the_caller_pull_is_refused_before_any_write(
    project: Project, other: tuple[ForeignRegistryGate, dict[str, list[str]]]
) -> None:
    gate, repositories = other
    image = with_sidecar(project)
    repositories[f"{project.family}-agent"] = []  # the repository is there; no pull grant
    calls = project.dir / "calls.log"
    result = project.run("deploy", env=env(gate, calls))
    line = assert_one_clean_line(
        result,
        2,
        "container agent",
        image,
        f"account {OTHER}",
        "ecr:BatchGetImage",
        "entryPoint",
    )
    assert "403" in line, line
    assert [(m, s) for m, _, s in gate.requests] == [("GET", "403")], gate.requests
    # Nothing was written: no key, secret, role, repository or revision.
    lines = calls.read_text().splitlines() if calls.exists() else []
    assert [each for each in lines if each.endswith(" write")] == []
    assert project.stack.emulator.key_ids(project.email) == []
    assert not project.exists("secret", project.secret_name)
    assert not project.exists("role", f"gcpfargate-{project.family}-execution")
    assert not project.exists("repository", project.family)
    with pytest.raises(ClientError):
        project.aws("ecs").describe_task_definition(taskDefinition=project.family)
    # The grant added, the same project deploys.
    repositories[f"{project.family}-agent"] = PULL
    allowed = project.run("deploy", "--output", "json", env=env(gate))
    assert allowed.returncode == 0, allowed.output
