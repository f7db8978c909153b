"""`gcpfargate run` against moto over HTTP.

moto starts Fargate tasks and keeps them in its state machine: the `hold_tasks` fixture
(tests/conftest.py) uses moto's state-manager API so a task stays RUNNING until the test stops it
with StopTask (as ECS would when the container exits). moto cannot model container exit codes or
start failures, so those tests put a small rewriting proxy on the real HTTP path between the CLI
and moto (`AWS_ENDPOINT_URL_ECS`) that edits DescribeTasks/RunTask answers the way ECS would send
them.
"""

from __future__ import annotations

import http.client
import json
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from threading import Thread
from typing import Any

from tests.conftest import REGION, Project, assert_one_clean_line
from tests.integration.helpers import CONTAINER, PREFIX, prepare_run


def _first_task(project: Project, cluster: str, timeout: float = 30) -> str:
    ecs = project.aws("ecs")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        arns = ecs.list_tasks(cluster=cluster)["taskArns"]
        if arns:
            return str(arns[0])
        time.sleep(0.2)
    raise AssertionError("the CLI started no task")


def test_run_streams_logs_and_reports_the_stop(project: Project, hold_tasks: None) -> None:
    ecs = prepare_run(project)
    with ThreadPoolExecutor(1) as pool:
        running = pool.submit(project.run, "run", timeout=90)
        task_arn = _first_task(project, ecs.cluster)
        task_id = task_arn.rsplit("/", 1)[-1]
        logs = project.aws("logs")
        stream = f"{PREFIX}/{CONTAINER}/{task_id}"
        logs.create_log_stream(logGroupName=ecs.log_group, logStreamName=stream)
        now = int(time.time() * 1000)
        logs.put_log_events(
            logGroupName=ecs.log_group,
            logStreamName=stream,
            logEvents=[
                {"timestamp": now, "message": "hello from the task"},
                {"timestamp": now + 1, "message": "second line"},
            ],
        )
        time.sleep(1.5)  # let at least one poll see the task RUNNING with its logs
        project.aws("ecs").stop_task(
            cluster=ecs.cluster, task=task_arn, reason="Essential container in task exited"
        )
        result = running.result()

    assert result.returncode == 0, result.output
    assert (
        result.stdout.strip()
        == f"Task {task_id} stopped: Essential container in task exited (exit code 0)."
    )
    assert "hello from the task\nsecond line\n" in result.stderr
    assert (
        result.stderr.count("hello from the task") == 1
    )  # each event once, across polls and the final drain
    assert f"started task {task_arn}" in result.stderr

    task = project.aws("ecs").describe_tasks(cluster=ecs.cluster, tasks=[task_arn])["tasks"][0]
    assert task["launchType"] == "FARGATE"
    assert task["platformVersion"] == "LATEST"
    assert task["startedBy"] == "gcpfargate"
    assert task["taskDefinitionArn"] == ecs.task_definition_arn
    eni = {d["name"]: d["value"] for d in task["attachments"][0]["details"]}
    assert eni["subnetId"] == ecs.subnet


def test_run_no_wait_returns_after_starting(project: Project, hold_tasks: None) -> None:
    ecs = prepare_run(project)
    # A second revision: without --revision the latest ACTIVE one runs.
    client = project.aws("ecs")
    described = client.describe_task_definition(taskDefinition=project.family)["taskDefinition"]
    second = client.register_task_definition(
        family=project.family,
        networkMode="awsvpc",
        requiresCompatibilities=["FARGATE"],
        cpu="256",
        memory="512",
        # awslogs on Fargate needs the execution role (ECS refuses it otherwise; so does the strict
        # layer).
        executionRoleArn=described["executionRoleArn"],
        containerDefinitions=described["containerDefinitions"],
    )["taskDefinition"]["taskDefinitionArn"]

    result = project.run("run", "--no-wait", "--output", "json")
    assert result.returncode == 0, result.output
    task_arn = result.json["task_arn"]
    assert result.json == {"task_arn": task_arn, "exit_code": None}
    task = client.describe_tasks(cluster=ecs.cluster, tasks=[task_arn])["tasks"][0]
    assert task["taskDefinitionArn"] == second
    assert task["lastStatus"] == "RUNNING"

    pinned = project.run("run", "--no-wait", "--revision", "1", "--output", "json")
    assert pinned.returncode == 0, pinned.output
    task = client.describe_tasks(cluster=ecs.cluster, tasks=[pinned.json["task_arn"]])["tasks"][0]
    assert task["taskDefinitionArn"] == ecs.task_definition_arn


def test_run_gives_up_after_the_wait_timeout(project: Project, hold_tasks: None) -> None:
    ecs = prepare_run(project)
    result = project.run("run", "--wait-timeout", "2")
    line = assert_one_clean_line(
        result,
        1,
        "did not stop within run.wait_timeout = 2 s",
        "RUNNING",
        f"aws ecs stop-task --cluster {ecs.cluster}",
    )
    assert "stop-task" in line


def test_run_dry_run_prints_the_request_and_starts_nothing(project: Project) -> None:
    ecs = prepare_run(project)
    result = project.run(
        "run", "--dry-run", "--subnet", "subnet-0123456789abcdef0", "--output", "json"
    )
    assert result.returncode == 0, result.output
    assert result.json == {
        "task_arn": None,
        "exit_code": None,
        "request": {
            "cluster": ecs.cluster,
            "taskDefinition": ecs.task_definition_arn,
            "launchType": "FARGATE",
            "platformVersion": "LATEST",
            "count": 1,
            "startedBy": "gcpfargate",
            "networkConfiguration": {
                "awsvpcConfiguration": {
                    "subnets": ["subnet-0123456789abcdef0"],
                    "securityGroups": [ecs.security_group],
                    "assignPublicIp": "DISABLED",
                }
            },
        },
    }
    assert project.aws("ecs").list_tasks(cluster=ecs.cluster)["taskArns"] == []


def test_run_without_subnets_is_a_config_error(project: Project) -> None:
    result = project.run("run")
    assert_one_clean_line(result, 2, "run.subnets", "GCPFARGATE_RUN_SUBNETS")


def test_run_without_a_task_definition_says_how_to_register(project: Project) -> None:
    prepare_run(project)
    result = project.run("run", "--revision", "9")
    assert_one_clean_line(
        result, 1, f"task definition {project.family}:9 does not exist", "register-task"
    )


def test_run_on_a_missing_cluster(project: Project) -> None:
    prepare_run(project)
    result = project.run("run", "--cluster", "nowhere")
    assert_one_clean_line(result, 1, "ECS cluster nowhere does not exist", "run.cluster")


# -- ECS answers moto cannot give: through a rewriting proxy on the HTTP path ---------------------

Rewrite = Callable[[dict[str, Any]], dict[str, Any]]


class RewritingProxy:
    """Forwards to moto; answers of the named ECS operations pass through a rewrite function."""

    def __init__(self, upstream: str, rewrites: dict[str, Rewrite]) -> None:
        parsed = urllib.parse.urlsplit(upstream)
        host, port = parsed.hostname or "127.0.0.1", parsed.port or 80

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                operation = str(self.headers.get("X-Amz-Target", "")).rsplit(".", 1)[-1]
                upstream_conn = http.client.HTTPConnection(host, port, timeout=30)
                headers = {
                    k: v
                    for k, v in self.headers.items()
                    if k.lower() not in ("host", "content-length")
                }
                upstream_conn.request("POST", self.path, body=body, headers=headers)
                response = upstream_conn.getresponse()
                payload = response.read()
                if response.status == 200 and operation in rewrites:
                    payload = json.dumps(rewrites[operation](json.loads(payload))).encode()
                self.send_response(response.status)
                for name, value in response.getheaders():
                    if name.lower() not in ("content-length", "transfer-encoding", "connection"):
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)
                upstream_conn.close()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> RewritingProxy:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def _stopped(exit_code: int | None, reason: str, stop_code: str) -> Rewrite:
    def rewrite(answer: dict[str, Any]) -> dict[str, Any]:
        for task in answer["tasks"]:
            task.update(
                lastStatus="STOPPED",
                desiredStatus="STOPPED",
                stoppedReason=reason,
                stopCode=stop_code,
            )
            for container in task["containers"]:
                container["lastStatus"] = "STOPPED"
                container.pop("exitCode", None)
                if exit_code is not None:
                    container["exitCode"] = exit_code
        return answer

    return rewrite


def test_run_exits_with_the_containers_exit_code(project: Project) -> None:
    ecs = prepare_run(project)
    rewrite = _stopped(7, "Essential container in task exited", "EssentialContainerExited")
    with RewritingProxy(project.stack.moto_url, {"DescribeTasks": rewrite}) as proxy:
        result = project.run("run", "--output", "json", env={"AWS_ENDPOINT_URL_ECS": proxy.url})
    assert result.returncode == 7, result.output
    task_arn = result.json["task_arn"]
    assert result.json == {"task_arn": task_arn, "exit_code": 7}
    assert task_arn in project.aws("ecs").list_tasks(cluster=ecs.cluster)["taskArns"]


def test_task_that_fails_to_start_is_one_clear_line(project: Project) -> None:
    prepare_run(project)
    reason = (
        "ResourceInitializationError: unable to pull secrets or registry auth: execution resource "
        "retrieval failed: unable to retrieve secret from asm: service call has been retried 1 "
        "time(s): AccessDeniedException"
    )
    rewrite = _stopped(None, reason, "TaskFailedToStart")
    with RewritingProxy(project.stack.moto_url, {"DescribeTasks": rewrite}) as proxy:
        result = project.run("run", env={"AWS_ENDPOINT_URL_ECS": proxy.url})
    assert_one_clean_line(
        result,
        1,
        "failed to start",
        "ResourceInitializationError",
        "unable to retrieve secret",
        "gcpfargate doctor",
    )
    assert result.stdout == ""


def test_run_task_failures_are_reported(project: Project) -> None:
    ecs = prepare_run(project)

    def no_capacity(answer: dict[str, Any]) -> dict[str, Any]:
        return {
            "tasks": [],
            "failures": [
                {
                    "arn": f"arn:aws:ecs:{REGION}:123456789012:cluster/{ecs.cluster}",
                    "reason": "RESOURCE:MEMORY",
                    "detail": "no capacity",
                }
            ],
        }

    with RewritingProxy(project.stack.moto_url, {"RunTask": no_capacity}) as proxy:
        result = project.run("run", env={"AWS_ENDPOINT_URL_ECS": proxy.url})
    assert_one_clean_line(
        result,
        1,
        f"ECS did not start the task on cluster {ecs.cluster}",
        "RESOURCE:MEMORY (no capacity)",
    )


def test_run_overrides_reach_run_task(project: Project, hold_tasks: None) -> None:
    ecs = prepare_run(project)
    result = project.run(
        "run",
        "--no-wait",
        "--command",
        "manage.py migrate --noinput",
        "--env",
        "MODE=backfill",
        "--env",
        "EMPTY=",
        "--cpu",
        "512",
        "--memory",
        "2 GB",
        "--output",
        "json",
    )
    assert result.returncode == 0, result.output
    task = project.aws("ecs").describe_tasks(cluster=ecs.cluster, tasks=[result.json["task_arn"]])[
        "tasks"
    ][0]
    assert task["overrides"]["containerOverrides"] == [
        {
            "name": CONTAINER,
            "command": ["manage.py", "migrate", "--noinput"],
            "environment": [{"name": "MODE", "value": "backfill"}, {"name": "EMPTY", "value": ""}],
        }
    ]
    assert (task["overrides"]["cpu"], task["overrides"]["memory"]) == ("512", "2048")
    project.aws("ecs").stop_task(cluster=ecs.cluster, task=result.json["task_arn"])


def test_run_override_words_and_checks(project: Project) -> None:
    prepare_run(project)
    planned = project.run("run", "--dry-run", "--arg", "echo", "--arg", "a b", "-o", "json")
    assert planned.returncode == 0, planned.output
    assert planned.json["request"]["overrides"] == {
        "containerOverrides": [{"name": CONTAINER, "command": ["echo", "a b"]}]
    }
    assert_one_clean_line(
        project.run("run", "--cpu", "256", "--memory", "4096"),
        2,
        "cpu 256 with memory 4096 is not a Fargate task size",
    )
    assert_one_clean_line(project.run("run", "--env", "1X=y"), 2, "is not NAME=VALUE")
    assert_one_clean_line(
        project.run("run", "--command", "a", "--arg", "b"), 2, "--command and --arg exclude"
    )
