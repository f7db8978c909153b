"""The plan/apply boundary: the same code records the same changes; only applying makes them."""

from __future__ import annotations

import json

from gcpfargate.core import plan as planning
from gcpfargate.core.plan import Plan
from gcpfargate.core.results import plan_json


def _steps(plan: Plan, made: list[str]) -> str | None:
    """A core function as every command writes one: it decides each change and hands over its
    write; it never asks whether this is a dry run."""

    def create_role() -> str:
        made.append("create_role")
        return "arn:aws:iam::123456789012:role/runner"

    created = plan.change(
        planning.create("IAM role", "runner", "create IAM role runner (the task's role)"),
        create_role,
    )
    plan.change(
        planning.update(
            "schedule",
            "nightly",
            "update schedule nightly: expression",
            before="cron(0 1 * * ? *)",
            after="cron(0 2 * * ? *)",
        ),
        lambda: made.append("update_schedule"),
    )
    plan.change(planning.delete("schedule", "weekly"), lambda: made.append("delete_schedule"))
    return created


def test_a_preview_records_exactly_the_changes_an_apply_makes_and_makes_none() -> None:
    preview, apply = Plan(apply=False), Plan(apply=True)
    previewed: list[str] = []
    applied: list[str] = []
    assert _steps(preview, previewed) is None  # known only after apply
    assert _steps(apply, applied) == "arn:aws:iam::123456789012:role/runner"
    assert previewed == []
    assert applied == ["create_role", "update_schedule", "delete_schedule"]
    assert preview.changes == apply.changes


def test_changes_render_as_the_plan_lines_and_as_json_objects() -> None:
    plan = Plan(apply=False)
    _steps(plan, [])
    assert planning.lines(plan.changes) == [
        "create IAM role runner (the task's role)",
        "update schedule nightly: expression",
        "delete schedule weekly",
    ]
    shown = plan_json(plan.changes)
    assert shown[1] == {
        "action": "update",
        "resource": "schedule",
        "name": "nightly",
        "text": "update schedule nightly: expression",
        "before": "cron(0 1 * * ? *)",
        "after": "cron(0 2 * * ? *)",
    }
    assert [each["action"] for each in shown] == ["create", "update", "delete"]
    assert json.loads(json.dumps(shown)) == shown  # plain JSON


def test_a_step_lists_its_own_changes_in_a_preview_and_none_in_an_apply() -> None:
    for apply in (False, True):
        plan = Plan(apply=apply)
        plan.change(planning.create("secret", "first"), lambda: None)
        mark = plan.mark()
        plan.change(planning.create("secret", "second"), lambda: None)
        assert plan.since(mark) == [planning.create("secret", "second")]
        assert plan.shown(mark) == ([] if apply else [planning.create("secret", "second")])
