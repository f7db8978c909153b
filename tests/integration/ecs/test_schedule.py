"""`gcpfargate schedule` against moto's EventBridge Scheduler, ECS and IAM over HTTP."""

from __future__ import annotations

import itertools
import json
from datetime import datetime

from tests.conftest import REGION, Project, assert_one_clean_line
from tests.integration.helpers import ACCOUNT, prepare_schedule


def _writes(project: Project) -> list[str]:
    log = project.dir / "calls"
    return (
        [line for line in log.read_text().splitlines() if line.endswith(" write")]
        if log.exists()
        else []
    )


def test_schedule_creates_the_schedule_and_its_role(project: Project) -> None:
    ecs = prepare_schedule(project)
    result = project.run("schedule", "--cron", "0 3 * * ? *", "--output", "json")
    assert result.returncode == 0, result.output
    out = result.json
    name = f"gcpfargate-{project.family}"
    assert out["schedule_arn"] == f"arn:aws:scheduler:{REGION}:{ACCOUNT}:schedule/default/{name}"
    assert {k: v for k, v in out.items() if k not in ("schedule_arn", "next_runs")} == {
        "expression": "cron(0 3 * * ? *)",
        "timezone": "Asia/Tokyo",
        "state": "ENABLED",
        "changed": True,
    }
    assert len(out["next_runs"]) == 5
    runs = [datetime.fromisoformat(when) for when in out["next_runs"]]
    assert all(when.strftime("%H:%M:%S%z") == "03:00:00+0900" for when in runs)
    assert all((b - a).days == 1 for a, b in itertools.pairwise(runs))

    stored = project.aws("scheduler").get_schedule(Name=name, GroupName="default")
    role_name = f"gcpfargate-{project.family}-scheduler"
    role_arn = f"arn:aws:iam::{ACCOUNT}:role/{role_name}"
    assert stored["ScheduleExpression"] == "cron(0 3 * * ? *)"
    assert stored["ScheduleExpressionTimezone"] == "Asia/Tokyo"
    assert stored["State"] == "ENABLED"
    assert stored["FlexibleTimeWindow"] == {"Mode": "OFF"}
    assert stored["Target"] == {
        "Arn": ecs["cluster_arn"],
        "RoleArn": role_arn,
        "RetryPolicy": {"MaximumEventAgeInSeconds": 3600, "MaximumRetryAttempts": 3},
        "EcsParameters": {
            "TaskDefinitionArn": ecs["family_arn"],
            "LaunchType": "FARGATE",
            "PlatformVersion": "1.4.0",
            "TaskCount": 1,
            "NetworkConfiguration": {
                "awsvpcConfiguration": {
                    "Subnets": [ecs["subnet"]],
                    "SecurityGroups": [ecs["group"]],
                    "AssignPublicIp": "DISABLED",
                }
            },
        },
    }

    iam = project.aws("iam")
    trust = iam.get_role(RoleName=role_name)["Role"]["AssumeRolePolicyDocument"]
    assert trust["Statement"] == [
        {
            "Effect": "Allow",
            "Principal": {"Service": "scheduler.amazonaws.com"},
            "Action": "sts:AssumeRole",
            "Condition": {"StringEquals": {"aws:SourceAccount": ACCOUNT}},
        }
    ]
    # One policy per region: the role is global, the family and cluster it may run are not.
    policy_name = f"gcpfargate-run-task-{REGION}"
    assert iam.list_role_policies(RoleName=role_name)["PolicyNames"] == [policy_name]
    document = iam.get_role_policy(RoleName=role_name, PolicyName=policy_name)["PolicyDocument"]
    assert document["Statement"] == [
        {
            "Sid": "RunTaskDefinition",
            "Effect": "Allow",
            "Action": "ecs:RunTask",
            "Resource": [ecs["family_arn"], ecs["family_arn"] + ":*"],
            "Condition": {"ArnEquals": {"ecs:cluster": ecs["cluster_arn"]}},
        },
        {
            "Sid": "PassTaskRoles",
            "Effect": "Allow",
            "Action": "iam:PassRole",
            "Resource": [ecs["execution_role"], ecs["task_role"]],
            "Condition": {"StringEquals": {"iam:PassedToService": "ecs-tasks.amazonaws.com"}},
        },
    ]


def test_unix_cron_and_macros_are_converted_and_the_conversion_is_shown(project: Project) -> None:
    prepare_schedule(project)
    name = f"gcpfargate-{project.family}"
    scheduler = project.aws("scheduler")

    result = project.run("schedule", "--cron", "0 3 * * *")
    assert result.returncode == 0, result.output
    assert "cron(0 3 * * *) is cron(0 3 * * ? *) in EventBridge's six-field form" in result.stderr
    assert "expression: cron(0 3 * * ? *) (from cron(0 3 * * *))" in result.stdout
    assert scheduler.get_schedule(Name=name)["ScheduleExpression"] == "cron(0 3 * * ? *)"

    # Unix weekday numbers (1 = Monday) become names, which mean the same to AWS.
    result = project.run("schedule", "--cron", "30 9 * * 1-5", "--output", "json")
    assert result.returncode == 0, result.output
    assert result.json["expression"] == "cron(30 9 ? * MON-FRI *)"
    assert result.json["written"] == "cron(30 9 * * 1-5)"
    runs = [datetime.fromisoformat(when) for when in result.json["next_runs"]]
    assert all(when.weekday() < 5 and when.strftime("%H:%M") == "09:30" for when in runs)

    for macro, aws in (
        ("@daily", "cron(0 0 * * ? *)"),
        ("@hourly", "cron(0 * * * ? *)"),
        ("@weekly", "cron(0 0 ? * SUN *)"),
        ("@monthly", "cron(0 0 1 * ? *)"),
        ("@yearly", "cron(0 0 1 1 ? *)"),
    ):
        result = project.run("schedule", "--cron", macro)
        assert result.returncode == 0, result.output
        assert f"{macro} is {aws} in EventBridge's six-field form" in result.stderr
        assert scheduler.get_schedule(Name=name)["ScheduleExpression"] == aws

    # The same from the config file: schedule.expression may be a macro too; a re-run is a no-op.
    config = project.dir / "gcpfargate.toml"
    project.write_config(config.read_text() + '\nexpression = "@daily"\n')
    result = project.run("schedule", "--output", "json")
    assert result.returncode == 0, result.output
    assert result.json["expression"] == "cron(0 0 * * ? *)" and result.json["changed"] is True
    assert project.run("schedule", "--output", "json").json["changed"] is False


def test_second_schedule_writes_nothing_then_changes_update_it(project: Project) -> None:
    prepare_schedule(project)
    first = project.run("schedule", "--cron", "0 3 * * ? *", "--output", "json")
    assert first.returncode == 0, first.output
    calls = {"GCPFARGATE_CALL_LOG": str(project.dir / "calls")}

    again = project.run("schedule", "--cron", "0 3 * * ? *", "--output", "json", env=calls)
    assert again.returncode == 0, again.output
    assert again.json["changed"] is False
    assert again.json["next_runs"] == first.json["next_runs"]
    assert _writes(project) == []

    name = f"gcpfargate-{project.family}"
    rated = project.run("schedule", "--rate", "2 hours", "--pin-revision", "--output", "json")
    assert rated.returncode == 0, rated.output
    assert rated.json["changed"] is True and rated.json["expression"] == "rate(2 hours)"
    stored = project.aws("scheduler").get_schedule(Name=name)
    assert stored["ScheduleExpression"] == "rate(2 hours)"
    assert stored["Target"]["EcsParameters"]["TaskDefinitionArn"].endswith(
        f"task-definition/{project.family}:1"
    )
    runs = [datetime.fromisoformat(when) for when in rated.json["next_runs"]]
    assert [(b - a).total_seconds() for a, b in itertools.pairwise(runs)] == [7200.0] * 4

    # Without an expression anywhere, --disable keeps the schedule's expression and time zone.
    disabled = project.run("schedule", "--disable", "--pin-revision", "--output", "json")
    assert disabled.returncode == 0, disabled.output
    assert disabled.json["state"] == "DISABLED" and disabled.json["expression"] == "rate(2 hours)"
    assert disabled.json["next_runs"] == []
    assert project.aws("scheduler").get_schedule(Name=name)["State"] == "DISABLED"


def test_show_and_delete(project: Project) -> None:
    prepare_schedule(project)
    missing = project.run("schedule", "--show")
    assert_one_clean_line(
        missing,
        1,
        f"schedule gcpfargate-{project.family} does not exist in group default",
        "--cron",
    )
    created = project.run(
        "schedule", "--expression", "cron(30 9 ? * MON-FRI *)", "--timezone", "UTC"
    )
    assert created.returncode == 0, created.output
    calls = {"GCPFARGATE_CALL_LOG": str(project.dir / "calls")}
    shown = project.run("schedule", "--show", "--next", "3", env=calls)
    assert shown.returncode == 0, shown.output
    assert "cron(30 9 ? * MON-FRI *)" in shown.stdout
    assert "Next 3 runs (UTC):" in shown.stdout
    assert shown.stdout.count("T09:30:00+00:00") == 3
    assert _writes(project) == []

    deleted = project.run("schedule", "--delete", "--output", "json")
    assert deleted.returncode == 0, deleted.output
    assert deleted.json["state"] == "DELETED" and deleted.json["changed"] is True
    assert f"kept IAM role gcpfargate-{project.family}-scheduler" in deleted.stderr
    assert f"gcpfargate-{project.family}" not in _schedule_names(project)
    project.aws("iam").get_role(RoleName=f"gcpfargate-{project.family}-scheduler")  # the role stays
    again = project.run("schedule", "--delete", "--output", "json")
    assert again.returncode == 0 and again.json["changed"] is False


def test_dry_run_creates_nothing(project: Project) -> None:
    # A name of this test's own: the worker's stack is shared, and other tests schedule "nightly".
    name = f"nightly-{project.family}"
    ecs = prepare_schedule(
        project, f'expression = "rate(15 minutes)"\nname = "{name}"\ngroup = "batch-jobs"'
    )
    result = project.run("schedule", "--dry-run", "--output", "json")
    assert result.returncode == 0, result.output
    out = result.json
    assert out["changed"] is True and out["schedule_arn"] is None
    assert out["request"]["Target"]["EcsParameters"]["TaskDefinitionArn"] == ecs["family_arn"]
    assert out["request"]["GroupName"] == "batch-jobs"
    lines = [change["text"] for change in out["plan"]]
    assert any("create IAM role" in line for line in lines)
    assert any(f"create schedule {name} in group batch-jobs" in line for line in lines)
    # The plan is data: the group the schedule goes into, then the schedule, each a typed change.
    assert [(c["action"], c["resource"], c["name"]) for c in out["plan"][-2:]] == [
        ("create", "schedule group", "batch-jobs"),
        ("create", "schedule", f"batch-jobs/{name}"),
    ]
    assert out["plan"][-1]["after"] == {
        "expression": "rate(15 minutes)",
        "timezone": "Asia/Tokyo",
        "state": "ENABLED",
    }
    assert name not in _schedule_names(project)
    assert "NoSuchEntity" in _role_error(project, f"gcpfargate-{project.family}-scheduler")

    # The real run also creates the missing group.
    real = project.run("schedule", "--output", "json")
    assert real.returncode == 0, real.output
    assert real.json["schedule_arn"].endswith(f"schedule/batch-jobs/{name}")


def _schedule_names(project: Project) -> list[str]:
    """Every schedule of the worker's stack (all pages: "not in" must not pass for want of one)."""
    pages = project.aws("scheduler").get_paginator("list_schedules").paginate()
    return [found["Name"] for page in pages for found in page["Schedules"]]


def _role_error(project: Project, name: str) -> str:
    try:
        project.aws("iam").get_role(RoleName=name)
    except Exception as exc:  # the error code is what the test looks at
        return str(exc)
    return ""


def test_given_role_is_used_and_no_role_is_created(project: Project) -> None:
    # The user's role exists well before the schedule (created past the strict layer's IAM delay):
    # what is tested is that gcpfargate uses it and creates none, not propagation timing.
    import boto3

    iam = boto3.client(
        "iam",
        region_name="us-east-1",
        endpoint_url=project.stack.moto_direct_url,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    role = iam.create_role(
        RoleName=f"own-{project.family}",
        AssumeRolePolicyDocument=(
            '{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"scheduler.amazonaws.com"},'
            '"Action":"sts:AssumeRole"}]}'
        ),
    )["Role"]["Arn"]
    prepare_schedule(project, f'role_arn = "{role}"')
    result = project.run("schedule", "--rate", "1 day", "--output", "json")
    assert result.returncode == 0, result.output
    stored = project.aws("scheduler").get_schedule(Name=f"gcpfargate-{project.family}")
    assert stored["Target"]["RoleArn"] == role
    assert "NoSuchEntity" in _role_error(project, f"gcpfargate-{project.family}-scheduler")


def test_bad_expressions_and_zones_are_usage_errors(project: Project) -> None:
    prepare_schedule(project)
    assert_one_clean_line(
        project.run("schedule", "--cron", "0 3 * * * * *"), 2, "has 7 fields, not 6", "year"
    )
    assert_one_clean_line(
        project.run("schedule", "--cron", "0 3 1 * 1"), 2, "OR day-of-week", "cannot express"
    )
    assert_one_clean_line(project.run("schedule", "--cron", "@reboot"), 2, "not a cron macro")
    assert_one_clean_line(project.run("schedule", "--rate", "1 week"), 2, "unit 'week'")
    assert_one_clean_line(
        project.run("schedule", "--cron", "0 3 * * ? *", "--timezone", "Asia/Tokio"),
        2,
        "'Asia/Tokio' is not an IANA time zone",
    )
    assert_one_clean_line(
        project.run("schedule"), 2, "schedule.expression", "GCPFARGATE_SCHEDULE_EXPRESSION"
    )
    assert_one_clean_line(
        project.run("schedule", "--show", "--delete"), 2, "--show and --delete exclude each other"
    )
    assert f"gcpfargate-{project.family}" not in _schedule_names(project)


def test_a_new_rate_keeps_the_time_zone_and_show_reports_no_changed(project: Project) -> None:
    prepare_schedule(project)
    # No time zone in the file: only the schedule itself knows it.
    config = project.dir / "gcpfargate.toml"
    config.write_text(config.read_text().replace('timezone = "Asia/Tokyo"', ""))
    created = project.run("schedule", "--cron", "0 3 * * ? *", "--timezone", "Europe/Berlin")
    assert created.returncode == 0, created.output
    rated = project.run("schedule", "--rate", "1 hour", "--output", "json")
    assert rated.returncode == 0, rated.output
    assert rated.json["expression"] == "rate(1 hour)" and rated.json["timezone"] == "Europe/Berlin"
    stored = project.aws("scheduler").get_schedule(Name=f"gcpfargate-{project.family}")
    assert stored["ScheduleExpressionTimezone"] == "Europe/Berlin"
    # --show is read-only: no `changed` row in text, no `changed` key in JSON.
    shown = project.run("schedule", "--show")
    assert shown.returncode == 0 and "changed" not in shown.stdout, shown.output
    assert "changed" not in project.run("schedule", "--show", "-o", "json").json


def test_schedule_overrides_go_into_the_target_input_and_are_kept(project: Project) -> None:
    prepare_schedule(project)
    created = project.run(
        "schedule",
        "--cron",
        "0 3 * * ? *",
        "--command",
        "backfill --days 7",
        "--env",
        "MODE=nightly",
        "--cpu",
        "1024",
        "--memory",
        "2048",
    )
    assert created.returncode == 0, created.output
    name = f"gcpfargate-{project.family}"
    stored = json.loads(project.aws("scheduler").get_schedule(Name=name)["Target"]["Input"])
    assert stored == {
        "containerOverrides": [
            {
                "name": "app",
                "command": ["backfill", "--days", "7"],
                "environment": [{"name": "MODE", "value": "nightly"}],
            }
        ],
        "cpu": "1024",
        "memory": "2048",
    }
    rated = project.run("schedule", "--rate", "1 day")
    assert rated.returncode == 0, rated.output
    assert json.loads(project.aws("scheduler").get_schedule(Name=name)["Target"]["Input"]) == stored


def test_a_schedule_made_outside_gcpfargate_is_never_updated_or_deleted(project: Project) -> None:
    """Another team's schedule under the configured name: refused (exit 2) unless --adopt."""
    names = prepare_schedule(project)
    scheduler = project.aws("scheduler")
    name = f"theirs-{project.family}"
    theirs = {
        "Name": name,
        "ScheduleExpression": "rate(1 day)",
        "FlexibleTimeWindow": {"Mode": "OFF"},
        "Description": "nightly export of team B",
        "Target": {
            "Arn": "arn:aws:sqs:ap-northeast-1:123456789012:team-b",
            "RoleArn": f"arn:aws:iam::{ACCOUNT}:role/team-b",
        },
    }
    scheduler.create_schedule(**theirs)
    before = scheduler.get_schedule(Name=name)
    for args in (
        ("--rate", "1 hour"),
        ("--delete",),
        ("--disable",),
        ("--rate", "1 hour", "--dry-run"),
    ):
        refused = project.run("schedule", "--name", name, *args)
        assert_one_clean_line(refused, 2, name, "not created by gcpfargate", "--adopt")
    after = scheduler.get_schedule(Name=name)
    assert after["Target"] == before["Target"] and after["Description"] == before["Description"]
    assert after["ScheduleExpression"] == "rate(1 day)"
    # Adopted deliberately: updated, and from then on carries the mark.
    adopted = project.run("schedule", "--name", name, "--rate", "1 hour", "--adopt")
    assert adopted.returncode == 0, adopted.output
    now = scheduler.get_schedule(Name=name)
    assert now["Target"]["Arn"] == names["cluster_arn"]
    assert now["Description"].endswith("(managed by gcpfargate)")
    deleted = project.run("schedule", "--name", name, "--delete")
    assert deleted.returncode == 0, deleted.output


def test_the_scheduler_role_gets_one_policy_per_region(project: Project) -> None:
    """The role is global: another region's grant is kept; the older single policy goes once it
    grants nothing outside this region."""
    names = prepare_schedule(project)
    assert project.run("schedule", "--rate", "1 hour").returncode == 0
    iam, role = project.aws("iam"), f"gcpfargate-{project.family}-scheduler"
    ours = f"gcpfargate-run-task-{REGION}"
    document = iam.get_role_policy(RoleName=role, PolicyName=ours)["PolicyDocument"]
    for region, kept in (("us-west-2", True), (REGION, False)):
        iam.delete_role_policy(RoleName=role, PolicyName=ours)
        older = json.loads(json.dumps(document).replace(f":{REGION}:", f":{region}:"))
        iam.put_role_policy(
            RoleName=role, PolicyName="gcpfargate-run-task", PolicyDocument=json.dumps(older)
        )
        rerun = project.run("schedule", "--rate", "1 hour")
        assert rerun.returncode == 0, rerun.output
        listed = sorted(iam.list_role_policies(RoleName=role)["PolicyNames"])
        assert listed == (sorted(["gcpfargate-run-task", ours]) if kept else [ours]), region
    assert names["family_arn"] in json.dumps(
        iam.get_role_policy(RoleName=role, PolicyName=ours)["PolicyDocument"]
    )
