"""Reads sent ahead (AwsClients.read_ahead) overlap their round trips: two are in flight at once,
each answer still goes to the very call it stands for, and a dependent read sent by `then` follows
its own read. Against a loopback HTTP server that answers AWS's JSON protocol slowly and counts the
requests it is serving at the same time (a count, not a timing)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import pytest

from gcpfargate.clients.aws import AHEAD_WORKERS, AwsClients


class _Slow(BaseHTTPRequestHandler):
    lock = threading.Lock()
    serving = 0
    most = 0
    order: ClassVar[list[str]] = []  # each request: its log group prefix, or its operation

    def do_POST(self) -> None:
        target = self.headers.get("X-Amz-Target", "")
        request = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))) or b"{}")
        with _Slow.lock:
            _Slow.serving += 1
            _Slow.most = max(_Slow.most, _Slow.serving)
            _Slow.order.append(request.get("logGroupNamePrefix") or target.rpartition(".")[2])
        time.sleep(0.3)  # long enough for a second request to arrive meanwhile
        operation = target.rpartition(".")[2]
        body = json.dumps(
            {"taskDefinition": {"family": "f", "revision": 1}}
            if operation == "DescribeTaskDefinition"
            else {"logGroups": [{"logGroupName": operation}]}
        ).encode()
        with _Slow.lock:
            _Slow.serving -= 1
        self.send_response(200)
        self.send_header("Content-Type", "application/x-amz-json-1.1")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        return None


@pytest.fixture
def slow_aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Slow)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _Slow.serving = _Slow.most = 0
    _Slow.order.clear()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    monkeypatch.setenv("AWS_ENDPOINT_URL", url)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    try:
        yield url
    finally:
        server.shutdown()
        server.server_close()


def test_two_reads_sent_ahead_are_in_flight_at_once(slow_aws: str) -> None:
    aws = AwsClients(region="ap-northeast-1")
    aws.read_ahead("ecs", "describe_task_definition", taskDefinition="f")
    aws.read_ahead("logs", "describe_log_groups", logGroupNamePrefix="/a")
    logs = aws.call("logs", "describe_log_groups", logGroupNamePrefix="/a")
    ecs = aws.call("ecs", "describe_task_definition", taskDefinition="f")
    assert ecs["taskDefinition"]["family"] == "f"
    assert logs["logGroups"] == [{"logGroupName": "DescribeLogGroups"}]
    assert len(_Slow.order) == 2  # each call took the answer of its read: nothing asked twice
    assert _Slow.most == min(2, AHEAD_WORKERS) == 2


def test_a_dependent_read_follows_its_own_read(slow_aws: str) -> None:
    aws = AwsClients(region="ap-northeast-1")

    def then(_: object) -> None:
        aws.read_ahead("logs", "describe_log_groups", logGroupNamePrefix="/after-ecs")

    aws.read_ahead("ecs", "describe_task_definition", then=then, taskDefinition="f")
    aws.read_ahead("logs", "describe_log_groups", logGroupNamePrefix="/other")
    aws.call("ecs", "describe_task_definition", taskDefinition="f")
    aws.call("logs", "describe_log_groups", logGroupNamePrefix="/other")
    aws.call("logs", "describe_log_groups", logGroupNamePrefix="/after-ecs")
    # Each read once; the dependent one sent once the ECS read answered (by the worker that made
    # it), while the other worker was already sending the next read of the queue.
    assert sorted(_Slow.order) == sorted(["DescribeTaskDefinition", "/other", "/after-ecs"])
    assert _Slow.order[-1] == "/after-ecs"
