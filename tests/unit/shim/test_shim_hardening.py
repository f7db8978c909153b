"""The credential shim under attack, as a real subprocess: it never tells the ECS credentials path,
never follows a redirect, and idle, trickling or aborted connections neither stop /healthz nor
fill its log with tracebacks."""

from __future__ import annotations

import socket
import struct
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from gcpfargate.shim import CREDENTIALS_PATH, HEALTH_PATH
from gcpfargate.shim.server import SessionTokens
from tests.stack.fake_ecs import CREDENTIALS_PATH as ECS_PATH
from tests.stack.fake_ecs import FakeEcsEndpoint
from tests.stack.shim_process import Shim, running_shim

ROLE = "gcpfargate-demo-task"
SECRET_PART = ECS_PATH.rsplit("/", 1)[-1]  # the random id that guards the ECS endpoint


@pytest.fixture
def ecs() -> Iterator[FakeEcsEndpoint]:
    with FakeEcsEndpoint(role_arn=f"arn:aws:iam::123456789012:role/{ROLE}") as endpoint:
        yield endpoint


def relative(ecs: FakeEcsEndpoint) -> tuple[dict[str, str], list[str]]:
    return {"AWS_CONTAINER_CREDENTIALS_RELATIVE_URI": ECS_PATH}, ["--ecs-endpoint", ecs.base_url]


def threads_and_files(shim: Shim) -> tuple[int, int]:
    assert shim.proc is not None
    status = Path(f"/proc/{shim.proc.pid}/status").read_text()
    threads = int(next(line for line in status.splitlines() if line.startswith("Threads:"))[8:])
    return threads, len(list(Path(f"/proc/{shim.proc.pid}/fd").iterdir()))


def test_answers_and_logs_name_the_endpoint_by_scheme_and_host_only(ecs: FakeEcsEndpoint) -> None:
    ecs.fail_with(500)
    env = {
        "AWS_CONTAINER_CREDENTIALS_FULL_URI": ecs.base_url + ECS_PATH,
        "AWS_CONTAINER_AUTHORIZATION_TOKEN": "auth-token-value",
    }
    with running_shim(env) as shim:
        answers = [shim.call("GET", HEALTH_PATH), shim.get(CREDENTIALS_PATH)]
        log = shim.log_text()
    expected = (
        f"credential-shim: failed to fetch task-role credentials from {ecs.base_url}: "
        "HTTP 500 Internal Server Error\n"
    )
    assert answers == [(503, expected), (502, expected)]
    assert f"serving task-role credentials from {ecs.base_url} on http://127.0.0.1:" in log
    for text in (log, *(body for _, body in answers)):
        assert SECRET_PART not in text and "auth-token" not in text


def test_a_redirect_is_an_error_and_is_never_followed(ecs: FakeEcsEndpoint) -> None:
    with FakeEcsEndpoint() as elsewhere:
        ecs.redirect = elsewhere.base_url + ECS_PATH
        env = {
            "AWS_CONTAINER_CREDENTIALS_FULL_URI": ecs.base_url + ECS_PATH,
            "AWS_CONTAINER_AUTHORIZATION_TOKEN": "auth-token-value",
        }
        with running_shim(env) as shim:
            status, body = shim.get(CREDENTIALS_PATH)
            log = shim.log_text()
        assert (status, body) == (
            502,
            f"credential-shim: failed to fetch task-role credentials from {ecs.base_url}: "
            "HTTP 302 Found (redirects are not followed)\n",
        )
        assert elsewhere.requests == [], "the redirect (and its token) went nowhere"
        assert ecs.credential_requests == 1  # a 3xx is not retried
        assert elsewhere.base_url not in log + body


def test_idle_and_trickling_connections_do_not_stop_healthz(ecs: FakeEcsEndpoint) -> None:
    env, args = relative(ecs)
    idle: list[socket.socket] = []
    with running_shim(env, *args, "--max-connections", "16") as shim:
        assert shim.call("GET", HEALTH_PATH) == (200, "ok\n")
        try:
            for index in range(300):  # half-sent requests, far more than the cap
                sock = socket.create_connection(("127.0.0.1", shim.port))
                sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n" if index % 2 else b"G")
                idle.append(sock)
            started = time.monotonic()
            for _ in range(5):
                assert shim.call("GET", HEALTH_PATH) == (200, "ok\n")
            assert time.monotonic() - started < 2.0
            threads, files = threads_and_files(shim)
            assert threads <= 16 + 4 and files <= 16 + 16, (threads, files)
        finally:
            for sock in idle:
                sock.close()
        log = shim.log_text()
    assert "Traceback" not in log


def test_an_idle_connection_is_dropped_after_the_request_timeout(ecs: FakeEcsEndpoint) -> None:
    env, args = relative(ecs)
    with running_shim(env, *args, "--request-timeout", "0.5") as shim:
        with socket.create_connection(("127.0.0.1", shim.port)) as sock:
            sock.sendall(b"GET /healthz HTTP/1.1\r\n")
            sock.settimeout(5)
            started = time.monotonic()
            assert sock.recv(100) == b""  # closed by the shim, not answered
            assert time.monotonic() - started < 3
        assert shim.call("GET", HEALTH_PATH) == (200, "ok\n")
        assert "Traceback" not in shim.log_text()


def test_aborted_clients_cost_one_log_line_each_and_no_traceback(ecs: FakeEcsEndpoint) -> None:
    env, args = relative(ecs)
    with running_shim(env, *args) as shim:
        assert shim.call("GET", HEALTH_PATH) == (200, "ok\n")  # credentials fetched (one log line)
        before = len(shim.log_text().splitlines())
        for _ in range(50):
            sock = socket.create_connection(("127.0.0.1", shim.port))
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")  # no end of the head
            # Reset, not close: the shim's read fails with ECONNRESET.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            sock.close()
        time.sleep(0.5)
        assert shim.call("GET", HEALTH_PATH) == (200, "ok\n")
        lines = shim.log_text().splitlines()[before:]
    assert not any("Traceback" in line or line.startswith(" ") for line in lines), lines
    failures = [line for line in lines if "a connection failed" in line]
    assert len(failures) <= 50 and len(lines) == len(failures), lines
    assert all("ConnectionResetError" in line for line in failures)


def test_the_session_token_table_is_bounded() -> None:
    now = [0.0]
    tokens = SessionTokens(clock=lambda: now[0], limit=3)
    issued = [tokens.issue(600) for _ in range(5)]
    assert len(tokens) == 3
    assert [tokens.valid(t) for t in issued] == [False, False, True, True, True]
    now[0] = 601.0  # expired tokens are dropped before live ones
    fresh = tokens.issue(600)
    assert len(tokens) == 1 and tokens.valid(fresh)


def test_a_client_asking_for_tokens_in_a_loop_does_not_grow_the_process(
    ecs: FakeEcsEndpoint,
) -> None:
    env, args = relative(ecs)
    with running_shim(env, *args) as shim:
        tokens = [shim.session_token(ttl="21600") for _ in range(1100)]
        assert shim.get(CREDENTIALS_PATH, tokens[-1]) == (200, ROLE)
        assert shim.get(CREDENTIALS_PATH, tokens[0])[0] == 401  # the oldest was forgotten
