"""Scheduled jobs against the local stack: `[jobs.*]` → one schedule each in the family's group,
reruns that write nothing, `--prune` that deletes exactly the removed job's schedule (never a
foreign one), `run --job` / `run-local --job` with the job's overrides, and doctor's job checks."""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from tests.conftest import REGION, Project, assert_one_clean_line

ACCOUNT = "123456789012"
MARK = "(managed by gcpfargate)"

THREE_JOBS = """
[jobs.export-daily]
cron = "0 3 * * *"
timezone = "Asia/Tokyo"
command = "export --since yesterday"
env = {{ MODE = "daily" }}
cpu = "1 vCPU"
memory = "2 GB"

[jobs.cleanup]
rate = "1 hour"
command = ["cleanup", "--all"]
cluster = "{other}"

[jobs.weekly]
cron = "@weekly"
enabled = false
"""


def prepare(project: Project, jobs: str = THREE_JOBS) -> dict[str, str]:
    """A VPC, two clusters, a registered Fargate revision, [run], and the jobs in the config."""
    ec2 = project.aws("ec2")
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    ec2.modify_vpc_attribute(VpcId=vpc, EnableDnsHostnames={"Value": True})
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.1.0/24")["Subnet"]["SubnetId"]
    group = ec2.create_security_group(GroupName=f"sg-{project.family}", Description="t", VpcId=vpc)[
        "GroupId"
    ]
    ecs = project.aws("ecs")
    cluster, other = f"cluster-{project.family}", f"other-{project.family}"
    cluster_arn = ecs.create_cluster(clusterName=cluster)["cluster"]["clusterArn"]
    other_arn = ecs.create_cluster(clusterName=other)["cluster"]["clusterArn"]
    project.aws("logs").create_log_group(logGroupName=f"/ecs/{project.family}")
    registered = ecs.register_task_definition(
        family=project.family,
        networkMode="awsvpc",
        requiresCompatibilities=["FARGATE"],
        cpu="256",
        memory="512",
        executionRoleArn=f"arn:aws:iam::{ACCOUNT}:role/gcpfargate-{project.family}-execution",
        taskRoleArn=f"arn:aws:iam::{ACCOUNT}:role/{project.family}-task",
        containerDefinitions=[
            {
                "name": "app",
                "image": "busybox",
                "essential": True,
                "memory": 512,
                "logConfiguration": {
                    "logDriver": "awslogs",
                    "options": {
                        "awslogs-group": f"/ecs/{project.family}",
                        "awslogs-region": REGION,
                        "awslogs-stream-prefix": "job",
                    },
                },
            }
        ],
    )
    write_jobs(project, subnet, group, cluster, jobs.format(other=other))
    return {
        "subnet": subnet,
        "security_group": group,
        "cluster": cluster,
        "other": other,
        "cluster_arn": cluster_arn,
        "other_arn": other_arn,
        "family_arn": f"arn:aws:ecs:{REGION}:{ACCOUNT}:task-definition/{project.family}",
        "revision_arn": registered["taskDefinition"]["taskDefinitionArn"],
    }


def write_jobs(project: Project, subnet: str, group: str, cluster: str, jobs: str) -> None:
    project.write_config(
        project.base_config
        + f'\n[run]\ncluster = "{cluster}"\nsubnets = ["{subnet}"]\n'
        + f'security_groups = ["{group}"]\npoll_interval = 1\n'
        + jobs
    )


def group_of(project: Project) -> str:
    return f"gcpfargate-{project.family}"


def names_in(project: Project, group: str) -> list[str]:
    listed = project.aws("scheduler").list_schedules(GroupName=group)["Schedules"]
    return sorted(found["Name"] for found in listed)


def writes(project: Project) -> list[str]:
    log = project.dir / "calls"
    lines = log.read_text().splitlines() if log.exists() else []
    return [line for line in lines if line.endswith(" write")]


def by_name(result: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {job["name"]: job for job in result["jobs"]}


def test_three_jobs_make_three_schedules_and_a_rerun_writes_nothing(project: Project) -> None:
    names = prepare(project)
    group = group_of(project)
    planned = project.run("schedule", "--dry-run", "-o", "json")
    assert planned.returncode == 0, planned.output
    assert {name: job["action"] for name, job in by_name(planned.json).items()} == {
        "export-daily": "create",
        "cleanup": "create",
        "weekly": "create",
    }
    lines = [change["text"] for change in planned.json["plan"]]
    assert any(f"create schedule cleanup in group {group}" in line for line in lines)
    assert ("create", "schedule", f"{group}/cleanup") in [
        (c["action"], c["resource"], c["name"]) for c in planned.json["plan"]
    ]
    assert group not in str(project.aws("scheduler").list_schedule_groups())

    created = project.run("schedule", "-o", "json")
    assert created.returncode == 0, created.output
    assert created.json["changed"] is True and created.json["group"] == group
    assert names_in(project, group) == ["cleanup", "export-daily", "weekly"]

    scheduler = project.aws("scheduler")
    export = scheduler.get_schedule(Name="export-daily", GroupName=group)
    assert export["ScheduleExpression"] == "cron(0 3 * * ? *)"
    assert export["ScheduleExpressionTimezone"] == "Asia/Tokyo"
    assert export["State"] == "ENABLED" and export["Description"].endswith(MARK)
    target = export["Target"]
    assert target["Arn"] == names["cluster_arn"]
    assert target["RoleArn"] == f"arn:aws:iam::{ACCOUNT}:role/gcpfargate-{project.family}-scheduler"
    assert target["EcsParameters"]["TaskDefinitionArn"] == names["family_arn"]
    assert target["EcsParameters"]["Group"] == "job:export-daily"
    assert json.loads(target["Input"]) == {
        "containerOverrides": [
            {
                "name": "app",
                "command": ["export", "--since", "yesterday"],
                "environment": [{"name": "MODE", "value": "daily"}],
            }
        ],
        "cpu": "1024",
        "memory": "2048",
    }
    runs = by_name(created.json)["export-daily"]["next_runs"]
    assert runs and all(when.endswith("T03:00:00+09:00") for when in runs)

    cleanup = scheduler.get_schedule(Name="cleanup", GroupName=group)
    assert cleanup["ScheduleExpression"] == "rate(1 hour)"
    assert cleanup["ScheduleExpressionTimezone"] == "UTC"
    assert cleanup["Target"]["Arn"] == names["other_arn"]  # the job's own cluster
    assert cleanup["Target"]["EcsParameters"]["Group"] == "job:cleanup"
    weekly = scheduler.get_schedule(Name="weekly", GroupName=group)
    assert weekly["State"] == "DISABLED" and weekly["ScheduleExpression"] == "cron(0 0 ? * SUN *)"
    assert "Input" not in weekly["Target"]
    assert by_name(created.json)["weekly"]["next_runs"] == []

    # One role serves every job: it may run the family on both clusters.
    role = f"gcpfargate-{project.family}-scheduler"
    document = project.aws("iam").get_role_policy(
        RoleName=role, PolicyName=f"gcpfargate-run-task-{REGION}"
    )["PolicyDocument"]
    run_task = next(s for s in document["Statement"] if s["Sid"] == "RunTaskDefinition")
    assert sorted(run_task["Condition"]["ArnEquals"]["ecs:cluster"]) == sorted(
        [names["cluster_arn"], names["other_arn"]]
    )

    calls = {"GCPFARGATE_CALL_LOG": str(project.dir / "calls")}
    again = project.run("schedule", "-o", "json", env=calls)
    assert again.returncode == 0, again.output
    assert again.json["changed"] is False
    assert {job["action"] for job in again.json["jobs"]} == {"unchanged"}
    assert writes(project) == []
    text = project.run("schedule", env=calls)
    assert text.returncode == 0, text.output
    assert "unchanged: rate(1 hour) (UTC), ENABLED" in text.stdout
    assert writes(project) == []

    # A changed job: the plan says which field, old -> new; only that schedule is written.
    config = project.dir / "gcpfargate.toml"
    config.write_text(config.read_text().replace('rate = "1 hour"', 'rate = "2 hours"'))
    diff = project.run("schedule", "--dry-run", "-o", "json")
    assert diff.returncode == 0, diff.output
    changed = by_name(diff.json)
    assert changed["cleanup"]["action"] == "update"
    assert changed["cleanup"]["changes"] == ["expression: 'rate(1 hour)' -> 'rate(2 hours)'"]
    assert changed["export-daily"]["action"] == changed["weekly"]["action"] == "unchanged"
    (project.dir / "calls").unlink()
    updated = project.run("schedule", "-o", "json", env=calls)
    assert updated.returncode == 0, updated.output
    assert writes(project) == ["aws scheduler UpdateSchedule write"]
    assert scheduler.get_schedule(Name="cleanup", GroupName=group)["ScheduleExpression"] == (
        "rate(2 hours)"
    )


def test_prune_deletes_exactly_the_removed_job_and_never_a_foreign_schedule(
    project: Project,
) -> None:
    names = prepare(project)
    group = group_of(project)
    assert project.run("schedule").returncode == 0
    scheduler = project.aws("scheduler")
    foreign = {
        "ScheduleExpression": "rate(1 day)",
        "FlexibleTimeWindow": {"Mode": "OFF"},
        "Target": {
            "Arn": "arn:aws:sqs:ap-northeast-1:123456789012:team-b",
            "RoleArn": f"arn:aws:iam::{ACCOUNT}:role/team-b",
        },
    }
    # Someone else's schedule in gcpfargate's group (no mark), and a marked one in another group.
    scheduler.create_schedule(Name="theirs", GroupName=group, Description="team b", **foreign)
    scheduler.create_schedule(Name="weekly", Description=f"elsewhere {MARK}", **foreign)

    config = project.dir / "gcpfargate.toml"
    config.write_text(config.read_text().split("[jobs.weekly]")[0])
    listed = project.run("schedule", "-o", "json")
    assert listed.returncode == 0, listed.output
    assert listed.json["stale"] == ["weekly"] and listed.json["pruned"] == []
    assert listed.json["foreign"] == ["theirs"]
    assert "weekly in group" in listed.stderr and "no job names it any more" in listed.stderr
    assert names_in(project, group) == ["cleanup", "export-daily", "theirs", "weekly"]

    refused = project.run("schedule", "--prune")
    assert_one_clean_line(refused, 2, "needs a confirmation", "--yes")
    planned = project.run("schedule", "--prune", "--dry-run", "-o", "json")
    assert planned.returncode == 0, planned.output
    assert planned.json["plan"] == [
        {
            "action": "delete",
            "resource": "schedule",
            "name": f"{group}/weekly",
            "text": f"delete schedule weekly in group {group} (no job names it)",
        }
    ]
    assert names_in(project, group) == ["cleanup", "export-daily", "theirs", "weekly"]

    pruned = project.run("schedule", "--prune", "--yes", "-o", "json")
    assert pruned.returncode == 0, pruned.output
    assert pruned.json["pruned"] == ["weekly"] and pruned.json["changed"] is True
    assert names_in(project, group) == ["cleanup", "export-daily", "theirs"]
    assert scheduler.get_schedule(Name="theirs", GroupName=group)["Description"] == "team b"
    assert scheduler.get_schedule(Name="weekly")["Description"] == f"elsewhere {MARK}"
    assert names["family_arn"]  # the remaining jobs still run the family
    again = project.run("schedule", "--prune", "--yes", "-o", "json")
    assert again.returncode == 0 and again.json["pruned"] == [] and again.json["changed"] is False

    # Every job removed: --prune clears their schedules, and still only gcpfargate's.
    config.write_text(config.read_text().split("[jobs.")[0])
    emptied = project.run("schedule", "--prune", "--yes", "-o", "json")
    assert emptied.returncode == 0, emptied.output
    assert sorted(emptied.json["pruned"]) == ["cleanup", "export-daily"]
    assert names_in(project, group) == ["theirs"]


def test_one_job_and_the_refusals(project: Project) -> None:
    prepare(project)
    group = group_of(project)
    one = project.run("schedule", "--job", "cleanup", "-o", "json")
    assert one.returncode == 0, one.output
    assert [job["name"] for job in one.json["jobs"]] == ["cleanup"]
    assert names_in(project, group) == ["cleanup"]
    assert_one_clean_line(project.run("schedule", "--job", "nope"), 2, "no job 'nope'", "cleanup")
    assert_one_clean_line(
        project.run("schedule", "--job", "cleanup", "--rate", "5 minutes"),
        2,
        "is for the [schedule] schedule",
    )
    # A schedule under a job's name that gcpfargate did not make is never taken over.
    project.aws("scheduler").create_schedule(
        Name="weekly",
        GroupName=group,
        ScheduleExpression="rate(1 day)",
        FlexibleTimeWindow={"Mode": "OFF"},
        Target={
            "Arn": "arn:aws:sqs:ap-northeast-1:123456789012:team-b",
            "RoleArn": f"arn:aws:iam::{ACCOUNT}:role/team-b",
        },
    )
    refused = project.run("schedule")
    assert_one_clean_line(refused, 2, "schedule weekly", "not created by gcpfargate")
    assert names_in(project, group) == ["cleanup", "weekly"]


def test_a_schedule_section_next_to_jobs_is_still_applied(project: Project) -> None:
    prepare(project, THREE_JOBS + '\n[schedule]\nexpression = "rate(30 minutes)"\n')
    result = project.run("schedule", "-o", "json")
    assert result.returncode == 0, result.output
    assert result.json["schedule"]["expression"] == "rate(30 minutes)"
    assert len(result.json["jobs"]) == 3
    single = project.aws("scheduler").get_schedule(Name=f"gcpfargate-{project.family}")
    assert single["GroupName"] == "default" and "Group" not in single["Target"]["EcsParameters"]
    assert names_in(project, group_of(project)) == ["cleanup", "export-daily", "weekly"]
    calls = {"GCPFARGATE_CALL_LOG": str(project.dir / "calls")}
    again = project.run("schedule", "-o", "json", env=calls)
    assert again.returncode == 0 and again.json["schedule"]["changed"] is False, again.output
    assert writes(project) == []


def test_the_strict_layer_refuses_a_group_name_over_64(project: Project) -> None:
    from botocore.exceptions import ClientError

    try:
        project.aws("scheduler").create_schedule_group(Name="g" * 65)
    except ClientError as exc:
        assert exc.response["Error"]["Code"] == "ValidationException"
        assert "Member must have length less than or equal to 64" in str(exc)
    else:
        raise AssertionError("a 65-character group name was accepted")


def _first_task(project: Project, cluster: str, timeout: float = 30) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        arns = project.aws("ecs").list_tasks(cluster=cluster)["taskArns"]
        if arns:
            return str(arns[0])
        time.sleep(0.2)
    raise AssertionError("the CLI started no task")


def test_run_job_passes_its_overrides_and_group(project: Project, hold_tasks: None) -> None:
    names = prepare(project)
    started = project.run(
        "run", "--job", "export-daily", "--no-wait", "--env", "EXTRA=1", "-o", "json"
    )
    assert started.returncode == 0, started.output
    ecs = project.aws("ecs")
    task = ecs.describe_tasks(cluster=names["cluster"], tasks=[started.json["task_arn"]])["tasks"][
        0
    ]
    assert task["overrides"]["containerOverrides"] == [
        {
            "name": "app",
            "command": ["export", "--since", "yesterday"],
            "environment": [{"name": "MODE", "value": "daily"}, {"name": "EXTRA", "value": "1"}],
        }
    ]
    assert (task["overrides"]["cpu"], task["overrides"]["memory"]) == ("1024", "2048")
    assert task["group"] == "job:export-daily" and task["startedBy"] == "gcpfargate"
    ecs.stop_task(cluster=names["cluster"], task=started.json["task_arn"])

    # The job's own cluster, and a run that waits for the stop and exits with it.
    with ThreadPoolExecutor(1) as pool:
        running = pool.submit(project.run, "run", "--job", "cleanup", timeout=90)
        task_arn = _first_task(project, names["other"])
        time.sleep(1.5)
        ecs.stop_task(cluster=names["other"], task=task_arn, reason="Essential container exited")
        result = running.result()
    assert result.returncode == 0, result.output
    task = ecs.describe_tasks(cluster=names["other"], tasks=[task_arn])["tasks"][0]
    assert task["group"] == "job:cleanup"
    assert task["overrides"]["containerOverrides"][0]["command"] == ["cleanup", "--all"]

    plain = project.run("run", "--dry-run", "-o", "json")
    assert plain.returncode == 0 and "group" not in plain.json["request"]
    assert_one_clean_line(project.run("run", "--job", "nope"), 2, "no job 'nope'")


def test_doctor_checks_each_job(project: Project) -> None:
    prepare(project)
    group = group_of(project)
    assert project.run("schedule").returncode == 0
    project.aws("scheduler").delete_schedule(Name="cleanup", GroupName=group)
    config = project.dir / "gcpfargate.toml"
    config.write_text(config.read_text().replace("enabled = false", "enabled = true"))
    report = project.run("doctor", "-o", "json")
    checks = {check["id"]: check for check in report.json["checks"]}
    assert checks["jobs.export-daily"]["status"] == "OK", checks["jobs.export-daily"]
    assert "its role may run it" in checks["jobs.export-daily"]["detail"]
    assert checks["jobs.cleanup"]["status"] == "FAIL"
    assert "does not exist in group" in checks["jobs.cleanup"]["detail"]
    assert checks["jobs.weekly"]["status"] == "WARN"
    assert "config says" in checks["jobs.weekly"]["detail"]


def test_run_local_job_rehearses_its_command_and_env(project: Project) -> None:
    from tests.integration.helpers import deploy
    from tests.integration.helpers import prepare as prepare_deploy

    # ENTRYPOINT only: the job's command is the whole command, as in the run-local override test.
    prepare_deploy(project, steps=('ENTRYPOINT ["/bin/sh", "-c"]',))
    deploy(project)
    config = project.dir / "gcpfargate.toml"
    config.write_text(
        config.read_text()
        + """
[jobs.backfill]
rate = "1 day"
command = ["echo mode=$MODE extra=$EXTRA; exit 4"]
env = { MODE = "backfill" }
"""
    )
    result = project.run("run-local", "--job", "backfill", "--env", "EXTRA=flag")
    assert result.returncode == 4, result.output
    assert "mode=backfill extra=flag" in result.stderr


def test_a_long_family_gets_a_shortened_group_the_strict_layer_accepts(project: Project) -> None:
    project.family = f"{project.family}-" + "x" * 70  # 64 + characters: the group is cut and hashed
    prepare(project, '\n[jobs.nightly]\ncron = "@daily"\n')
    result = project.run("schedule", "-o", "json")
    assert result.returncode == 0, result.output
    group = result.json["group"]
    assert len(group) == 64 and group.startswith(f"gcpfargate-{project.family}"[:55] + "-")
    assert names_in(project, group) == ["nightly"]
