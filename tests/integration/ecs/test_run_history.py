"""Run history, `jobs`, failure alerts and `logs`, against the stack.

The stack's ECS (the strict layer, tests/stack/strict/tasks.py and events.py) sends the "ECS Task
State Change" event when a task reaches STOPPED, and its EventBridge delivers it to the rules'
targets: the run-history log group, the alert topic (then SNS to an SQS subscription). A test ends
a task's program with `layer.finish_task` (exit code, stop code, reason), as ECS would see it.
"""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import pytest

from tests.conftest import REGION, Project
from tests.integration.helpers import deploy, prepare
from tests.stack.strict.tasks import Outcome

JOB = "nightly"


def _network(project: Project) -> tuple[str, dict[str, Any]]:
    ec2 = project.aws("ec2")
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    ec2.modify_vpc_attribute(VpcId=vpc, EnableDnsHostnames={"Value": True})
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.1.0/24")["Subnet"]["SubnetId"]
    group = ec2.create_security_group(
        GroupName=f"sg-{project.family}", Description="history test", VpcId=vpc
    )["GroupId"]
    cluster = f"cluster-{project.family}"
    project.aws("ecs").create_cluster(clusterName=cluster)
    config = project.dir / "gcpfargate.toml"
    config.write_text(
        config.read_text()
        + f'\n[run]\ncluster = "{cluster}"\nsubnets = ["{subnet}"]\n'
        + f'security_groups = ["{group}"]\n'
    )
    network = {"awsvpcConfiguration": {"subnets": [subnet], "securityGroups": [group]}}
    return cluster, network


def _start(project: Project, cluster: str, network: dict[str, Any], job: str = JOB) -> str:
    """A task of the job, started as `run --job` and the job's schedule start it."""
    answer = project.aws("ecs").run_task(
        cluster=cluster,
        taskDefinition=project.family,
        launchType="FARGATE",
        networkConfiguration=network,
        group=f"job:{job}",
        startedBy="gcpfargate",
    )
    return str(answer["tasks"][0]["taskArn"])


def _schedule(project: Project) -> None:
    """The job's schedule in the family's group, as `schedule` writes it."""
    scheduler = project.aws("scheduler")
    group = f"gcpfargate-{project.family}"
    scheduler.create_schedule_group(Name=group)
    scheduler.create_schedule(
        Name=JOB,
        GroupName=group,
        ScheduleExpression="cron(0 3 * * ? *)",
        ScheduleExpressionTimezone="Asia/Tokyo",
        FlexibleTimeWindow={"Mode": "OFF"},
        Description="Runs the nightly job (managed by gcpfargate)",
        Target={
            "Arn": f"arn:aws:ecs:{REGION}:123456789012:cluster/x",
            "RoleArn": "arn:aws:iam::123456789012:role/scheduler",
        },
    )


def _until(what: Callable[[], Any], timeout: float = 20) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        found = what()
        if found or time.monotonic() > deadline:
            return found
        time.sleep(0.3)


@pytest.fixture
def deployed(project: Project, hold_tasks: None) -> tuple[Project, str, dict[str, Any]]:
    prepare(project)
    # moto places a task by its containers' memory, which the default template leaves to the task.
    template = project.dir / "task-definition.json.j2"
    text = template.read_text()
    template.write_text(text.replace('"essential": true,', '"essential": true, "memory": 512,'))
    cluster, network = _network(project)
    return project, cluster, network


def _jobs(project: Project) -> dict[str, Any]:
    result = project.run("jobs", "-o", "json")
    assert result.returncode == 0, result.output
    return dict(result.json)


def test_deploy_keeps_the_run_history_and_jobs_shows_the_last_runs(
    deployed: tuple[Project, str, dict[str, Any]],
) -> None:
    project, cluster, network = deployed
    first = deploy(project)
    assert first["run-history"]["changed"] is True
    group = f"/gcpfargate/{project.family}/runs"
    assert first["run-history"]["log_group"] == group
    logs = project.aws("logs")
    found = logs.describe_log_groups(logGroupNamePrefix=group)["logGroups"]
    assert [(g["logGroupName"], g.get("retentionInDays")) for g in found] == [(group, 30)]
    rule = project.aws("events").describe_rule(Name=f"gcpfargate-{project.family}-runs")
    assert rule["Description"].endswith("(managed by gcpfargate)")
    assert json.loads(rule["EventPattern"])["detail"]["lastStatus"] == ["STOPPED"]
    # A rerun writes nothing of it.
    again = deploy(project)
    assert again["run-history"]["changed"] is False

    _schedule(project)
    layer = project.stack.strict
    assert layer is not None
    ok = _start(project, cluster, network)
    layer.finish_task(cluster, ok, Outcome(exit_code=0))
    failed = _start(project, cluster, network)
    time.sleep(0.05)
    layer.finish_task(cluster, failed, Outcome(exit_code=3))

    status = _until(lambda: (j := _jobs(project))["jobs"][0]["last_runs"][1:] and j)
    (job,) = status["jobs"]
    assert (job["name"], job["expression"], job["timezone"], job["state"]) == (
        JOB,
        "cron(0 3 * * ? *)",
        "Asia/Tokyo",
        "ENABLED",
    )
    assert len(job["next_runs"]) == 3 and job["next_runs"][0].endswith("+09:00")
    newest, older = job["last_runs"][:2]
    assert newest["task_arn"] == failed and older["task_arn"] == ok
    assert (newest["exit_code"], newest["failed"], newest["stop_code"]) == (
        3,
        True,
        "EssentialContainerExited",
    )
    assert newest["stop_reason"] == "Essential container in task exited"
    assert newest["started"] and newest["stopped"] and newest["duration_s"] >= 0
    assert (older["exit_code"], older["failed"]) == (0, False)

    text = project.run("jobs")
    assert text.returncode == 0, text.output
    assert "nightly" in text.stdout and "FAILED  exit 3" in text.stdout, text.stdout

    doctor = project.run("doctor", "-o", "json")
    checks = {c["id"]: c for c in doctor.json["checks"]}
    assert checks["runs.history"]["status"] == "OK", checks["runs.history"]
    assert checks["jobs.last_run"]["status"] == "WARN"
    assert "nightly (exit 3" in checks["jobs.last_run"]["detail"]


def test_without_the_logs_resource_policy_nothing_is_kept_and_doctor_says_why(
    deployed: tuple[Project, str, dict[str, Any]],
) -> None:
    project, cluster, network = deployed
    deploy(project)
    layer = project.stack.strict
    assert layer is not None
    # Real EventBridge delivers to a log group only under a Logs resource policy; the stack too.
    logs = project.aws("logs")
    logs.delete_resource_policy(policyName="gcpfargate-events-to-logs")
    try:
        task = _start(project, cluster, network)
        layer.finish_task(cluster, task, Outcome(exit_code=0))
        failures = [f for f in layer.event_failures if f[0] == f"gcpfargate-{project.family}-runs"]
        assert failures and "resource policy" in failures[-1][2]
        doctor = project.run("doctor", "-o", "json")
        checks = {c["id"]: c for c in doctor.json["checks"]}
        assert checks["runs.history"]["status"] == "FAIL"
        assert "resource policy" in checks["runs.history"]["detail"]
    finally:
        deploy(project)  # puts the shared policy back for the worker's other tests
    assert _jobs(project)["other_runs"] == []


def _queue_on_topic(project: Project, topic: str) -> str:
    sqs = project.aws("sqs")
    url = sqs.create_queue(QueueName=f"alerts-{project.family}")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    project.aws("sns").subscribe(TopicArn=topic, Protocol="sqs", Endpoint=arn)
    return str(url)


def _messages(project: Project, url: str) -> list[str]:
    got = project.aws("sqs").receive_message(
        QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1
    )
    return [json.loads(m["Body"])["Message"] for m in got.get("Messages", [])]


def test_a_failed_run_reaches_the_alert_topic(
    deployed: tuple[Project, str, dict[str, Any]],
) -> None:
    project, cluster, network = deployed
    config = project.dir / "gcpfargate.toml"
    config.write_text(
        config.read_text() + '\n[notify]\ncreate_topic = true\nemail = "ops@example.com"\n'
    )
    first = deploy(project)
    topic = first["alerts"]["topic_arn"]
    assert topic.endswith(f":gcpfargate-{project.family}-alerts")
    policy = json.loads(
        project.aws("sns").get_topic_attributes(TopicArn=topic)["Attributes"]["Policy"]
    )
    assert any(
        s.get("Principal", {}).get("Service") == "events.amazonaws.com" for s in policy["Statement"]
    )
    subscriptions = project.aws("sns").list_subscriptions_by_topic(TopicArn=topic)
    assert [s["Endpoint"] for s in subscriptions["Subscriptions"]] == ["ops@example.com"]
    assert deploy(project)["alerts"]["changed"] is False
    url = _queue_on_topic(project, topic)
    layer = project.stack.strict
    assert layer is not None

    fine = _start(project, cluster, network)
    layer.finish_task(cluster, fine, Outcome(exit_code=0))
    assert _messages(project, url) == []  # a run that succeeded alerts nobody

    broken = _start(project, cluster, network)
    layer.finish_task(cluster, broken, Outcome(exit_code=2, reason="Essential container exited"))
    never = _start(project, cluster, network)
    pull = "CannotPullContainerError: pull image manifest has been retried 5 time(s)"
    layer.finish_task(cluster, never, Outcome(None, "TaskFailedToStart", pull))
    messages: list[str] = []
    _until(lambda: messages.extend(_messages(project, url)) or len(messages) >= 2)
    assert len(messages) == 2, messages
    by_task = {m.split("(task ", 1)[1].split(",", 1)[0]: m for m in messages}
    exited = by_task[broken]
    assert f"a run of {project.family} failed: job job:{JOB}, exit code 2" in exited
    assert "EssentialContainerExited: Essential container exited" in exited
    assert "exit code ," in by_task[never] and f"TaskFailedToStart: {pull}" in by_task[never]

    doctor = project.run("doctor", "-o", "json")
    checks = {c["id"]: c for c in doctor.json["checks"]}
    assert checks["alerts.rule"]["status"] == "OK", checks["alerts.rule"]


def test_logs_follow_streams_new_lines_and_stops_on_ctrl_c(
    deployed: tuple[Project, str, dict[str, Any]],
) -> None:
    project, cluster, network = deployed
    deploy(project)
    task = _start(project, cluster, network)
    other = _start(project, cluster, network, job="weekly")
    logs = project.aws("logs")
    group = f"/ecs/{project.family}"

    def put(task_arn: str, message: str) -> None:
        stream = f"gcpfargate/app/{task_arn.rsplit('/', 1)[-1]}"
        with contextlib.suppress(logs.exceptions.ResourceAlreadyExistsException):
            logs.create_log_stream(logGroupName=group, logStreamName=stream)
        logs.put_log_events(
            logGroupName=group,
            logStreamName=stream,
            logEvents=[{"timestamp": int(time.time() * 1000), "message": message}],
        )

    put(task, "first line")
    put(other, "a line of another job")
    once = project.run("logs", "--since", "10m")
    assert once.returncode == 0, once.output
    assert "first line" in once.stdout and "a line of another job" in once.stdout
    assert f"app/{task.rsplit('/', 1)[-1][:8]} first line" in once.stdout

    proc = subprocess.Popen(
        [sys.executable, "-m", "gcpfargate", "logs", "--job", JOB, "--follow", "--since", "10m"],
        cwd=project.dir,
        env=project.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        assert "first line" in proc.stdout.readline()
        put(task, "second line")
        put(other, "not this job")
        assert "second line" in proc.stdout.readline()
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "Traceback" not in err and "not this job" not in out, (out, err)
