"""The Google roles the README documents are the ones gcpfargate needs (key mode).

The IAM emulator grants the caller exactly the listed roles on the test's project
(`grant_caller_roles`, permissions from Google's roles reference in tests/stack/iam/roles.py) and
refuses any method whose permission they lack with Google's PERMISSION_DENIED text. The roles are
read from the README's Prerequisites, so a README that names too few fails here.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

from tests.conftest import (
    ROOT,
    Project,
    assert_one_clean_line,
)
from tests.integration.helpers import deploy, prepare
from tests.stack.iam.roles import ROLE_PERMISSIONS


def documented_roles() -> tuple[list[str], list[str]]:
    """(roles always needed, roles needed only with gcp.create_service_account), from the
    README's "Google Cloud" prerequisite."""
    text = (ROOT / "README.md").read_text()
    bullet = text.split("- **Google Cloud.**", 1)[1].split("\n- **", 1)[0]
    always = bullet.partition("create_service_account")[0]
    # The sentence names a role, then "only when `gcp.create_service_account = true`".
    always_roles = re.findall(r"`(roles/[\w.]+)`", always)
    creating = [role for role in always_roles if "only when" in always.split(role, 1)[1][:80]]
    needed = [role for role in always_roles if role not in creating]
    assert needed and all(role in ROLE_PERMISSIONS for role in always_roles), bullet
    return needed, creating


@pytest.fixture
def roles(project: Project) -> Iterator[None]:
    yield
    project.stack.emulator.grant_caller_roles(None, project=project.gcp_project)


def _grant(project: Project, roles: list[str]) -> None:
    project.stack.emulator.grant_caller_roles(roles, project=project.gcp_project)


def _create_mode(project: Project) -> None:
    config = project.dir / "gcpfargate.toml"
    fresh = f"fresh-{project.account_id}"[:30]
    config.write_text(
        config.read_text().replace(
            f'service_account = "{project.account_id}"',
            f'service_account = "{fresh}"\ncreate_service_account = true',
        )
    )


def test_the_documented_roles_suffice_for_deploy_rotate_key_and_doctor(
    project: Project, roles: None
) -> None:
    needed, _ = documented_roles()
    _grant(project, needed)
    prepare(project)
    deploy(project)
    for command in (("rotate-key",), ("doctor",), ("prune-keys", "--dry-run")):
        result = project.run(*command)
        assert result.returncode == 0, f"{command}: {result.output}"
        assert "PERMISSION_DENIED" not in result.output and "denied" not in result.output


def test_the_documented_roles_suffice_to_create_the_service_account(
    project: Project, roles: None
) -> None:
    needed, creating = documented_roles()
    assert creating  # the README names the role that creating the account needs
    _grant(project, needed + creating)
    prepare(project)
    _create_mode(project)
    result = project.run("bootstrap")
    assert result.returncode == 0, result.output


@pytest.mark.parametrize("dropped", ["key-admin", "account-admin"])
def test_one_role_less_is_refused_with_googles_text(
    project: Project, roles: None, dropped: str
) -> None:
    needed, creating = documented_roles()
    every = needed + creating
    lost = every[0] if dropped == "key-admin" else creating[0]
    kept = [role for role in every if role != lost]
    _grant(project, kept)
    prepare(project)
    _create_mode(project)
    result = project.run("bootstrap")
    line = assert_one_clean_line(result, 1, "denied on resource (or it may not exist)")
    permission = re.search(r"Permission '([\w.]+)' denied", line)
    assert permission, line
    # The permission named is one the dropped role grants and the kept roles do not.
    assert permission.group(1) in ROLE_PERMISSIONS[lost]
    assert not any(permission.group(1) in ROLE_PERMISSIONS[role] for role in kept)
