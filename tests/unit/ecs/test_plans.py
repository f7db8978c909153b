"""Plans as data in the ECS commands: on the same starting state, a preview records exactly the
changes an apply makes (same action, resource and name, in the same order), writes nothing, and an
apply that follows leaves nothing to change. Against moto's ECS, EventBridge Scheduler, Events,
Logs, SNS and IAM over HTTP (the `moto` fixture)."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import boto3
import pytest

from gcpfargate.config import load_settings
from gcpfargate.core.context import Context
from gcpfargate.core.plan import Change, Plan
from gcpfargate.core.report import NullReporter
from gcpfargate.ecs import alerts, history, jobs, schedule
from gcpfargate.ecs import run as ecs_run

REGION = "ap-northeast-1"
ACCOUNT = "123456789012"
_serial = itertools.count()


@pytest.fixture(autouse=True)
def _aws_env(monkeypatch: pytest.MonkeyPatch, moto: str) -> None:
    for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL_ECS", "GCPFARGATE_ECR_REGISTRY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")


def aws(service: str, moto: str) -> Any:
    return boto3.client(service, region_name=REGION, endpoint_url=moto)


def prepare(moto: str) -> dict[str, str]:
    """A VPC, a cluster and a registered Fargate revision of a fresh family."""
    family = f"plans-{next(_serial)}-{id(moto) % 1000}"
    ec2 = aws("ec2", moto)
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.1.0/24")["Subnet"]["SubnetId"]
    group = ec2.create_security_group(GroupName=f"sg-{family}", Description="t", VpcId=vpc)[
        "GroupId"
    ]
    cluster = f"cluster-{family}"
    aws("ecs", moto).create_cluster(clusterName=cluster)
    registered = aws("ecs", moto).register_task_definition(
        family=family,
        networkMode="awsvpc",
        requiresCompatibilities=["FARGATE"],
        cpu="256",
        memory="512",
        executionRoleArn=f"arn:aws:iam::{ACCOUNT}:role/gcpfargate-{family}-execution",
        containerDefinitions=[{"name": "app", "image": "busybox", "essential": True}],
    )
    return {
        "family": family,
        "subnet": subnet,
        "group": group,
        "cluster": cluster,
        "arn": registered["taskDefinition"]["taskDefinitionArn"],
    }


def context(tmp_path: Path, names: dict[str, str], extra: str, apply: bool) -> Context:
    config = tmp_path / "gcpfargate.toml"
    config.write_text(
        f'[aws]\nregion = "{REGION}"\n\n[task]\nfamily = "{names["family"]}"\n'
        "log_retention_days = 14\n\n"
        f'[run]\ncluster = "{names["cluster"]}"\nsubnets = ["{names["subnet"]}"]\n'
        f'security_groups = ["{names["group"]}"]\n\n{extra}'
    )
    settings = load_settings(config, environ={})
    return Context(settings=settings, reporter=NullReporter(), plan=Plan(apply=apply))


def kinds(changes: list[Change]) -> list[tuple[str, str, str]]:
    return [(change.action, change.resource, change.name) for change in changes]


def own(changes: list[Change]) -> list[tuple[str, str, str]]:
    """The changes these modules decide (the scheduler role's are iam.roles', compared apart by
    `same_role_start`)."""
    return [each for each in kinds(changes) if each[1] != "IAM role"]


def same_role_start(planned: list[Change], made: list[Change]) -> None:
    roles_planned = [each for each in kinds(planned) if each[1] == "IAM role"]
    roles_made = [each for each in kinds(made) if each[1] == "IAM role"]
    assert roles_planned == roles_made


def preview_then_apply(
    tmp_path: Path, names: dict[str, str], extra: str, command: Callable[[Context], Any]
) -> tuple[Any, Any, list[Change], list[Change]]:
    """The command previewed, then applied, then previewed again: (preview's result, apply's
    result, the preview's changes, the apply's changes), asserting the second preview is empty."""
    preview = context(tmp_path, names, extra, apply=False)
    previewed = command(preview)
    applying = context(tmp_path, names, extra, apply=True)
    applied = command(applying)
    again = context(tmp_path, names, extra, apply=False)
    command(again)
    assert again.plan.changes == [], "an apply leaves nothing to change"
    return previewed, applied, preview.plan.changes, applying.plan.changes


SCHEDULE = '[schedule]\nexpression = "cron(0 3 * * ? *)"\ntimezone = "Asia/Tokyo"\n'
SCHEDULE_IN_GROUP = SCHEDULE + 'group = "{family}-group"\n'


@pytest.mark.parametrize("extra", [SCHEDULE, SCHEDULE_IN_GROUP])
def test_schedule_preview_records_exactly_what_apply_does(
    tmp_path: Path, moto: str, extra: str
) -> None:
    names = prepare(moto)
    extra = extra.format(family=names["family"])
    previewed, applied, planned, made = preview_then_apply(
        tmp_path, names, extra, lambda ctx: schedule.apply(ctx, sleep=lambda _: None)
    )
    assert own(planned) == own(made)
    same_role_start(planned, made)
    role = f"gcpfargate-{names['family']}-scheduler"
    resources = [resource for _, resource, _ in kinds(made)]
    assert resources[0] == "IAM role" and ("create", "IAM role", role) in kinds(made)
    assert resources[-1] == "schedule"
    if "group =" in extra:  # the group is a change of its own, before the schedule in it
        assert resources[-2:] == ["schedule group", "schedule"]
    # The preview's JSON lists the changes as objects whose text is the plan line.
    shown = previewed.to_json()["plan"]
    assert [change["text"] for change in shown] == [change.text for change in planned]
    assert shown[-1]["action"] == "create" and shown[-1]["after"]["expression"] == (
        "cron(0 3 * * ? *)"
    )
    assert previewed.to_json()["request"]["Name"] == f"gcpfargate-{names['family']}"
    assert applied.changed and "plan" not in applied.to_json()

    # An update: before -> after of the field that differs, the same in both modes.
    changed = extra.replace("cron(0 3 * * ? *)", "rate(2 hours)")
    previewed, _, planned, made = preview_then_apply(
        tmp_path, names, changed, lambda ctx: schedule.apply(ctx, sleep=lambda _: None)
    )
    assert kinds(planned) == kinds(made) == [("update", "schedule", kinds(made)[0][2])]
    assert (planned[0].before, planned[0].after) == (
        {"expression": "cron(0 3 * * ? *)"},
        {"expression": "rate(2 hours)"},
    )


def test_schedule_delete_preview_records_what_apply_deletes(tmp_path: Path, moto: str) -> None:
    names = prepare(moto)
    schedule.apply(context(tmp_path, names, SCHEDULE, apply=True), sleep=lambda _: None)
    previewed, applied, planned, made = preview_then_apply(
        tmp_path, names, SCHEDULE, lambda ctx: schedule.delete(ctx)
    )
    name = f"gcpfargate-{names['family']}"
    assert kinds(planned) == kinds(made) == [("delete", "schedule", f"default/{name}")]
    assert previewed.to_json()["plan"][0]["text"] == f"delete schedule {name} in group default"
    assert previewed.request == {"Name": name, "GroupName": "default"}
    assert applied.request is None and applied.state == "DELETED"


JOBS = """
[jobs.daily]
cron = "0 3 * * *"
command = "export"

[jobs.hourly]
rate = "1 hour"
"""


def test_jobs_preview_records_exactly_what_apply_does(tmp_path: Path, moto: str) -> None:
    names = prepare(moto)
    previewed, applied, planned, made = preview_then_apply(
        tmp_path, names, JOBS, lambda ctx: jobs.apply(ctx, sleep=lambda _: None)
    )
    group = jobs.group_name(names["family"])
    assert own(planned) == own(made)
    same_role_start(planned, made)
    assert kinds(made)[-3:] == [
        ("create", "schedule group", group),
        ("create", "schedule", f"{group}/daily"),
        ("create", "schedule", f"{group}/hourly"),
    ]
    assert previewed.preview and [c["text"] for c in previewed.to_json()["plan"]] == [
        c.text for c in planned
    ]
    assert not applied.preview and "plan" not in applied.to_json()
    assert all(job.schedule_arn for job in applied.jobs)

    # A job removed: --prune deletes its schedule; the preview's confirm agrees, as the CLI's does.
    one_job = JOBS.split("[jobs.hourly]")[0]
    previewed, applied, planned, made = preview_then_apply(
        tmp_path,
        names,
        one_job,
        lambda ctx: jobs.apply(ctx, prune=True, confirm=lambda _: True, sleep=lambda _: None),
    )
    assert kinds(planned) == kinds(made) == [("delete", "schedule", f"{group}/hourly")]
    assert (previewed.pruned, applied.pruned) == ([], ["hourly"])
    assert previewed.changed and applied.changed


def test_run_history_and_alerts_preview_records_exactly_what_apply_does(
    tmp_path: Path, moto: str
) -> None:
    names = prepare(moto)
    extra = '[notify]\ncreate_topic = true\nemail = "ops@example.com"\n'

    def both(ctx: Context) -> tuple[Any, Any]:
        return history.ensure(ctx, names["arn"]), alerts.ensure(ctx, names["arn"])

    (kept, alerted), (kept_done, alerted_done), planned, made = preview_then_apply(
        tmp_path, names, extra, both
    )
    assert kinds(planned) == kinds(made)
    made_kinds = {(action, resource) for action, resource, _ in kinds(made)}
    assert {
        ("create", "CloudWatch log group"),
        ("create", "EventBridge rule"),
        ("create", "EventBridge target"),
        ("create", "SNS topic"),
        ("create", "SNS subscription"),
    } <= made_kinds
    assert kept.plan and not kept.changed and kept_done.changed and not kept_done.plan
    assert alerted.plan and not alerted.changed and alerted_done.changed
    assert kept.to_json()["plan"][0]["text"] == (
        f"create CloudWatch log group {history.log_group(names['family'])} (retention 14 days)"
    )


def test_run_preview_records_the_task_it_would_start(tmp_path: Path, moto: str) -> None:
    names = prepare(moto)
    ctx = context(tmp_path, names, "", apply=False)
    result = ecs_run.run(ctx)
    assert result.task_arn is None and result.request is not None
    short = names["arn"].rsplit("/", 1)[-1]
    assert kinds(ctx.plan.changes) == [("create", "ECS task", short)]
    listed = aws("ecs", moto).list_tasks(cluster=names["cluster"])["taskArns"]
    assert listed == []
