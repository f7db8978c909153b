"""push-image and deploy through Podman's Docker-compatible socket (`podman system service`) next
to the stack's dockerd: the build, the key guard's layer scan and the push all go through Podman,
to the stack's registry."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.conftest import Project
from tests.integration.helpers import (
    configure_image,
    deploy,
    latest,
    prepare,
    registry_digest,
    registry_tags,
)
from tests.stack.images import write_busybox_context
from tests.stack.local import LocalStack
from tests.stack.podman import podman_service


@pytest.fixture(scope="module")
def podman_host(stack: LocalStack) -> Iterator[str]:
    with podman_service(stack.root / "podman", stack.registry) as host:
        yield host


def test_push_through_podman_then_a_second_push_is_a_no_op(
    project: Project, podman_host: str
) -> None:
    repository = configure_image(project, tag="v1")
    write_busybox_context(project.dir, ['CMD ["echo", "from podman"]'])
    project.extra_env["DOCKER_HOST"] = podman_host
    first = project.run("push-image", "--output", "json")
    assert first.returncode == 0, first.output
    assert first.json["changed"] is True
    assert first.json["digest"] == registry_digest(project, repository, "v1")
    assert "failed" not in first.stderr

    second = project.run("push-image", "--output", "json")
    assert second.returncode == 0, second.output
    assert second.json == {**first.json, "changed": False}
    assert "already holds this image: nothing to push" in second.stderr
    assert registry_tags(project, repository) == ["v1"]


def test_deploy_through_podman_then_a_second_deploy_changes_nothing(
    project: Project, podman_host: str
) -> None:
    prepare(project)
    project.extra_env["DOCKER_HOST"] = podman_host
    first = deploy(project)
    assert all(first[step]["changed"] for step in first)
    image = latest(project)["containerDefinitions"][0]["image"]
    assert image == f"{project.stack.registry}/{project.family}@{first['push-image']['digest']}"
    assert first["push-image"]["digest"] == registry_digest(project, project.family, "v1")

    second = deploy(project)
    assert not any(second[step]["changed"] for step in second)
