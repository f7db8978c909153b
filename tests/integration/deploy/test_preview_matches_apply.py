"""A dry run shows exactly what apply does: on a fresh project, `deploy`'s preview and its apply
record the same changes (action, resource, name), in the same order, and the preview's JSON is
that list."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Project
from tests.integration.helpers import keyless_demo, latest, prepare


def _deploy(project: Project, apply: bool) -> tuple[Any, list[Any]]:
    """`deploy` in-process with the executor the CLI's --dry-run would choose: its result and every
    change its plan recorded."""
    from gcpfargate.config import load_settings
    from gcpfargate.core.context import Context
    from gcpfargate.core.plan import Plan
    from gcpfargate.deploy.sequence import deploy

    ctx = Context(
        settings=load_settings(str(Path(project.dir) / "gcpfargate.toml")), plan=Plan(apply=apply)
    )
    return deploy(ctx), ctx.plan.changes


def _kinds(changes: list[Any]) -> list[tuple[str, str, str]]:
    return [(change.action, change.resource, change.name) for change in changes]


def _preview_then_apply(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> tuple[Any, list[Any], Any, list[Any]]:
    """A preview, then an apply, of `deploy` on the same fresh project; their changes are equal."""
    for name in [k for k in os.environ if k.startswith(("AWS_", "GCPFARGATE_"))]:
        monkeypatch.delenv(name)
    for name, value in project.env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(project.dir)

    planned, previewed = _deploy(project, apply=False)
    assert not project.exists("repository", project.family)  # the preview made nothing
    done, applied = _deploy(project, apply=True)
    assert _kinds(previewed) == _kinds(applied), (_kinds(previewed), _kinds(applied))
    # The user's JSON (`deploy --dry-run -o json`) is the preview's list, step by step; an apply's
    # push and registration list no plan (they say what they did).
    shown = [change for step in planned.to_json().values() for change in step.get("plan", [])]
    assert shown == [c.to_json() for c in previewed]
    assert done.steps["push-image"].plan == done.steps["register-task"].plan == []
    # And the apply made what it recorded.
    assert project.exists("repository", project.family)
    assert latest(project)["taskDefinitionArn"] == done.steps["register-task"].task_definition_arn
    return planned, previewed, done, applied


def test_a_fresh_deploys_preview_lists_the_changes_its_apply_makes(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    prepare(project)
    _, _, _, applied = _preview_then_apply(project, monkeypatch)
    family = project.family
    for change in [
        ("create", "ECR repository", family),
        ("create", "ECR image", f"{family}:v1"),
        ("create", "CloudWatch log group", f"/ecs/{family}"),
        ("create", "task definition", family),
    ]:
        assert change in _kinds(applied), _kinds(applied)


def test_a_fresh_keyless_deploys_preview_lists_the_changes_its_apply_makes(
    project: Project, modern_base: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    keyless_demo(project, modern_base)  # the credential shim's repository and push too
    # One tag for both runs: the derived one is the time of each run (no git work tree here).
    project.extra_env["GCPFARGATE_IMAGE_TAG"] = "v1"
    _, _, done, applied = _preview_then_apply(project, monkeypatch)
    assert done.steps["push-image"].shim_image
    assert ("create", "task definition", project.family) in _kinds(applied), _kinds(applied)
