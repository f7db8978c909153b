"""Plans as data for the task-definition commands: on the same starting state, a preview records
the very changes (action, resource, name) an apply records and makes, and writes nothing."""

from __future__ import annotations

from pathlib import Path

import pytest
from botocore.stub import Stubber

from gcpfargate.config import load_settings
from gcpfargate.core.context import Context
from gcpfargate.core.plan import Change, Plan
from gcpfargate.errors import OperationError
from gcpfargate.taskdef import revisions, scaffold

REGION = "eu-west-1"
FAMILY = "batch"


def _arn(revision: int) -> str:
    return f"arn:aws:ecs:{REGION}:123456789012:task-definition/{FAMILY}:{revision}"


@pytest.fixture(autouse=True)
def _aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("AWS_ENDPOINT_URL", "AWS_PROFILE", "AWS_ENDPOINT_URL_ECS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")


def _context(directory: Path, apply: bool) -> Context:
    config = directory / "settings.toml"
    config.write_text(f'[aws]\nregion = "{REGION}"\n\n[task]\nfamily = "{FAMILY}"\n')
    return Context(settings=load_settings(config, environ={}), plan=Plan(apply=apply))


def _kinds(changes: list[Change]) -> list[tuple[str, str, str]]:
    return [(change.action, change.resource, change.name) for change in changes]


def test_init_previews_the_files_it_writes(tmp_path: Path) -> None:
    def run(apply: bool) -> tuple[scaffold.ScaffoldResult, list[Change]]:
        ctx = _context(tmp_path, apply)
        answers = scaffold.Answers(family=FAMILY, region=REGION)
        return scaffold.init(ctx, tmp_path, answers), ctx.plan.changes

    planned, previewed = run(apply=False)
    assert not (tmp_path / "gcpfargate.toml").exists()  # a preview writes nothing
    assert [change["text"] for change in planned.to_json()["plan"]] == [
        f"write {tmp_path / 'gcpfargate.toml'}",
        f"write {tmp_path / scaffold.TEMPLATE_FILE}",
    ]
    done, applied = run(apply=True)
    assert (
        _kinds(previewed)
        == _kinds(applied)
        == [
            ("create", "file", str(tmp_path / "gcpfargate.toml")),
            ("create", "file", str(tmp_path / scaffold.TEMPLATE_FILE)),
        ]
    )
    assert "plan" not in done.to_json() and (tmp_path / scaffold.TEMPLATE_FILE).is_file()


def _stub_reads(ecs: Stubber, scheduler: Stubber) -> None:
    ecs.add_response(
        "list_task_definitions",
        {"taskDefinitionArns": [_arn(3), _arn(2), _arn(1)]},
        {"familyPrefix": FAMILY, "status": "ACTIVE", "sort": "DESC"},
    )
    scheduler.add_client_error(
        "get_schedule",
        "ResourceNotFoundException",
        "Schedule gcpfargate-batch does not exist.",
        404,
        expected_params={"Name": f"gcpfargate-{FAMILY}", "GroupName": "default"},
    )


def test_deregister_previews_the_revisions_it_deregisters(tmp_path: Path) -> None:
    asked: list[int] = []

    def confirm(result: revisions.DeregisterResult) -> bool:
        asked.append(len(result.deregister))
        return True

    preview = _context(tmp_path, apply=False)
    with (
        Stubber(preview.aws.client("ecs")) as ecs,
        Stubber(preview.aws.client("scheduler")) as scheduler,
    ):
        _stub_reads(ecs, scheduler)  # and no DeregisterTaskDefinition: a preview writes nothing
        planned = revisions.deregister(preview, keep_last=1, confirm=confirm)
        ecs.assert_no_pending_responses()
    assert asked == [] and planned.to_json()["dry_run"] is True and not planned.done

    applying = _context(tmp_path, apply=True)
    with (
        Stubber(applying.aws.client("ecs")) as ecs,
        Stubber(applying.aws.client("scheduler")) as scheduler,
    ):
        _stub_reads(ecs, scheduler)
        for revision in (2, 1):
            ecs.add_response(
                "deregister_task_definition",
                {"taskDefinition": {"taskDefinitionArn": _arn(revision)}},
                {"taskDefinition": _arn(revision)},
            )
        done = revisions.deregister(applying, keep_last=1, confirm=confirm)
        ecs.assert_no_pending_responses()
    assert asked == [2] and done.done and done.to_json()["dry_run"] is False
    assert (
        _kinds(preview.plan.changes)
        == _kinds(applying.plan.changes)
        == [
            ("delete", "task definition", f"{FAMILY}:2"),
            ("delete", "task definition", f"{FAMILY}:1"),
        ]
    )


def test_deregister_not_confirmed_writes_nothing(tmp_path: Path) -> None:
    ctx = _context(tmp_path, apply=True)
    with Stubber(ctx.aws.client("ecs")) as ecs, Stubber(ctx.aws.client("scheduler")) as scheduler:
        _stub_reads(ecs, scheduler)  # no DeregisterTaskDefinition stubbed: a call would fail
        with pytest.raises(OperationError, match="not confirmed"):
            revisions.deregister(ctx, keep_last=1, confirm=lambda result: False)
