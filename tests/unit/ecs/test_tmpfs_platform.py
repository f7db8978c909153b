"""tmpfs on Fargate needs platform version 1.4.0: a pinned older one is refused before any write."""

from __future__ import annotations

import pytest

from gcpfargate.ecs import fargate_rules
from gcpfargate.errors import TemplateError


def test_platform_versions_parse_and_latest_is_not_judged() -> None:
    assert fargate_rules.platform_tuple("1.3.0") == (1, 3, 0)
    assert fargate_rules.platform_tuple("1.4.0") == (1, 4, 0)
    assert fargate_rules.platform_tuple("LATEST") is None
    assert fargate_rules.platform_tuple("") is None


@pytest.mark.parametrize("version", ["LATEST", "1.4.0", "1.4.1", "2.0.0", "latest", "bogus"])
def test_tmpfs_on_a_version_with_support_or_unpinned_passes(version: str) -> None:
    fargate_rules.refuse_tmpfs_platform(["app"], version, "t.j2")


@pytest.mark.parametrize("version", ["1.3.0", "1.2.0", "1.1.0", "1.0.0"])
def test_tmpfs_on_an_older_pinned_version_is_refused_naming_the_fix(version: str) -> None:
    with pytest.raises(TemplateError) as caught:
        fargate_rules.refuse_tmpfs_platform(["app", "worker"], version, "t.j2")
    message = caught.value.message
    assert "container app, worker mounts a tmpfs" in message
    assert f"platform version {version}" in message and "1.4.0 or later" in message
    assert "run.platform_version" in (caught.value.hint or "")
    # No tmpfs anywhere: nothing to refuse on any version.
    fargate_rules.refuse_tmpfs_platform([], version, "t.j2")


def test_tmpfs_containers_finds_the_templates_own_mounts() -> None:
    definition = {
        "containerDefinitions": [
            {"name": "a", "linuxParameters": {"tmpfs": [{"containerPath": "/x", "size": 1}]}},
            {"name": "b", "linuxParameters": {"initProcessEnabled": True}},
            {"name": "c"},
        ]
    }
    assert fargate_rules.tmpfs_containers(definition) == ["a"]
