"""The credential shim, run as a real subprocess against a fake ECS credentials endpoint on
loopback.

Each test drives the shim over HTTP exactly as google-auth's aws.py does (PUT an IMDSv2 token, GET
the role name, GET the role's credentials) and checks what the fake ECS endpoint saw and what the
shim logged: never a secret access key or a session token.
"""

from __future__ import annotations

import json
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from gcpfargate import shim as shim_module
from gcpfargate.shim import (
    CREDENTIALS_PATH,
    HEALTH_PATH,
    TOKEN_HEADER,
    TOKEN_PATH,
    TTL_HEADER,
    ZONE_PATH,
)
from tests.stack.fake_ecs import CREDENTIALS_PATH as ECS_PATH
from tests.stack.fake_ecs import METADATA_PATH, FakeEcsEndpoint, RoleCredentials
from tests.stack.shim_process import Shim, running_shim

ROLE = "gcpfargate-demo-task"
ROLE_URL = f"{CREDENTIALS_PATH}/{ROLE}"


@pytest.fixture
def ecs() -> Iterator[FakeEcsEndpoint]:
    with FakeEcsEndpoint(role_arn=f"arn:aws:iam::123456789012:role/service/{ROLE}") as endpoint:
        yield endpoint


def relative(ecs: FakeEcsEndpoint) -> tuple[dict[str, str], list[str]]:
    return {"AWS_CONTAINER_CREDENTIALS_RELATIVE_URI": ECS_PATH}, ["--ecs-endpoint", ecs.base_url]


def served_key(shim: Shim) -> str:
    status, body = shim.get(ROLE_URL)
    assert status == 200, body
    return json.loads(body)["AccessKeyId"]


def assert_no_secrets(shim: Shim, *credentials: RoleCredentials) -> None:
    text = shim.log_text()
    for creds in credentials:
        assert creds.secret_access_key not in text and creds.token not in text, (
            "a credential was logged"
        )


def test_relative_uri_serves_the_imds_credential_api(ecs: FakeEcsEndpoint) -> None:
    env, args = relative(ecs)
    # A proxy in the environment must not see the credentials request (here it would fail it).
    env.update({"HTTP_PROXY": "http://127.0.0.1:9", "http_proxy": "http://127.0.0.1:9"})
    with running_shim(env, *args) as shim:
        token = shim.session_token()
        assert shim.get(CREDENTIALS_PATH, token) == (200, ROLE)
        assert shim.get(CREDENTIALS_PATH + "/", token) == (200, ROLE)
        status, body = shim.get(ROLE_URL, token)
        assert status == 200
        document = json.loads(body)
        creds = ecs.credentials
        assert document == {
            "Code": "Success",
            "LastUpdated": document["LastUpdated"],
            "Type": "AWS-HMAC",
            "AccessKeyId": creds.access_key_id,
            "SecretAccessKey": creds.secret_access_key,
            "Token": creds.token,
            "Expiration": creds.expiration.strftime("%Y-%m-%dT%H:%M:%SZ"),
        }
        assert shim.get(CREDENTIALS_PATH + "/another-role", token)[0] == 404
        assert shim.call("GET", HEALTH_PATH) == (200, "ok\n")
        assert_no_secrets(shim, creds)
    # Cached: one fetch served every request, with no Authorization header on the relative URI.
    assert ecs.requests == [(ECS_PATH, None)]
    assert shim.proc.returncode == 0, "SIGTERM should end the shim cleanly"


def test_full_uri_sends_the_authorization_token(ecs: FakeEcsEndpoint) -> None:
    ecs.required_token = "task-auth-token-1"
    env = {
        "AWS_CONTAINER_CREDENTIALS_FULL_URI": ecs.base_url + ECS_PATH,
        "AWS_CONTAINER_AUTHORIZATION_TOKEN": "task-auth-token-1",
    }
    with running_shim(env) as shim:
        assert served_key(shim) == ecs.credentials.access_key_id
        assert "task-auth-token-1" not in shim.log_text()
    assert ecs.requests == [(ECS_PATH, "task-auth-token-1")]


def test_relative_uri_wins_over_full_uri(ecs: FakeEcsEndpoint) -> None:
    env, args = relative(ecs)
    env["AWS_CONTAINER_CREDENTIALS_FULL_URI"] = "http://127.0.0.1:9/not-this-one"
    with running_shim(env, *args) as shim:
        assert served_key(shim) == ecs.credentials.access_key_id


def test_token_file_wins_over_the_variable_and_is_reread(
    ecs: FakeEcsEndpoint, tmp_path: Path
) -> None:
    token_file = tmp_path / "eks-pod-identity-token"
    token_file.write_text("from-the-file-1")
    ecs.required_token = "from-the-file-1"
    env = {
        "AWS_CONTAINER_CREDENTIALS_FULL_URI": ecs.base_url + ECS_PATH,
        "AWS_CONTAINER_AUTHORIZATION_TOKEN": "from-the-variable",
        "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE": str(token_file),
    }
    with running_shim(env, "--max-age", "1") as shim:
        assert served_key(shim) == ecs.credentials.access_key_id
        # Its owner rotates the file; the next fetch must send the new token.
        token_file.write_text("from-the-file-2")
        ecs.required_token = "from-the-file-2"
        new = ecs.rotate()
        time.sleep(1.2)
        assert served_key(shim) == new.access_key_id
    assert [auth for _, auth in ecs.requests] == ["from-the-file-1", "from-the-file-2"]


def test_token_file_with_a_trailing_newline_is_a_clear_error(
    ecs: FakeEcsEndpoint, tmp_path: Path
) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("abc\n")
    env = {
        "AWS_CONTAINER_CREDENTIALS_FULL_URI": ecs.base_url + ECS_PATH,
        "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE": str(token_file),
    }
    with running_shim(env) as shim:
        status, body = shim.get(ROLE_URL)
    assert status == 502
    assert body == (
        "credential-shim: the container authorization token contains a line break; "
        "write the file without a trailing newline\n"
    )
    assert ecs.requests == []


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {},
            "no task role: neither AWS_CONTAINER_CREDENTIALS_RELATIVE_URI nor "
            "AWS_CONTAINER_CREDENTIALS_FULL_URI is set; set taskRoleArn in the task definition",
        ),
        (
            {"AWS_CONTAINER_CREDENTIALS_FULL_URI": "http://169.254.169.254/creds"},
            "AWS_CONTAINER_CREDENTIALS_FULL_URI host '169.254.169.254' is not allowed: use https, "
            "a loopback address or one of 169.254.170.2, 169.254.170.23, fd00:ec2::23, localhost "
            "(the rule every AWS SDK applies)",
        ),
    ],
)
def test_bad_configuration_is_one_line_and_exit_2(env: dict[str, str], message: str) -> None:
    from tests.stack.shim_process import shim_env

    proc = subprocess.run(
        [sys.executable, "-m", "gcpfargate.shim", "--port", "0"],
        env=shim_env(env),
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert (proc.returncode, proc.stderr) == (2, f"credential-shim ERROR: {message}\n")


def test_refetches_shortly_before_expiry(ecs: FakeEcsEndpoint) -> None:
    env, args = relative(ecs)
    with running_shim(env, *args, "--refresh-margin", "60") as shim:
        first = ecs.rotate(lifetime=timedelta(seconds=64))  # due for a refetch in 3-4 s
        assert served_key(shim) == first.access_key_id
        assert served_key(shim) == first.access_key_id
        assert ecs.credential_requests == 1, (
            "credentials far enough from expiry must come from the cache"
        )
        second = ecs.rotate()
        due = first.expiration - timedelta(seconds=60) - datetime.now(UTC)
        time.sleep(max(due.total_seconds(), 0) + 0.3)
        assert served_key(shim) == second.access_key_id
        assert ecs.credential_requests == 2
        assert (
            f"rotated; new ones expire at {second.expiration:%Y-%m-%dT%H:%M:%SZ}" in shim.log_text()
        )
        assert_no_secrets(shim, first, second)


def test_rotated_credentials_are_picked_up_within_max_age(ecs: FakeEcsEndpoint) -> None:
    env, args = relative(ecs)
    old = ecs.credentials
    with running_shim(env, *args, "--max-age", "2") as shim:
        assert served_key(shim) == old.access_key_id
        new = ecs.rotate()
        assert served_key(shim) == old.access_key_id
        time.sleep(2.2)
        assert served_key(shim) == new.access_key_id
        assert_no_secrets(shim, old, new)


def test_imdsv2_session_token_is_required(ecs: FakeEcsEndpoint) -> None:
    env, args = relative(ecs)
    with running_shim(env, *args) as shim:
        for path in (CREDENTIALS_PATH, ROLE_URL, ZONE_PATH, "/latest/meta-data/"):
            status, body = shim.call("GET", path)
            assert status == 401, path
            assert (
                body == "Unauthorized: PUT /latest/api/token first and send the token in "
                f"{TOKEN_HEADER}\n"
            )
        assert shim.call("GET", ROLE_URL, {TOKEN_HEADER: "made-up"})[0] == 401
        assert shim.call("PUT", TOKEN_PATH)[0] == 400
        for ttl in ("0", "21601", "ten"):
            assert shim.call("PUT", TOKEN_PATH, {TTL_HEADER: ttl}) == (
                400,
                f"Bad Request: {TTL_HEADER} must be 1-21600\n",
            )
        assert (
            shim.call("PUT", TOKEN_PATH, {TTL_HEADER: "60", "X-Forwarded-For": "10.0.0.9"})[0]
            == 403
        )
        assert shim.call("POST", TOKEN_PATH, {TTL_HEADER: "60"})[0] == 405
        short = shim.session_token(ttl="1")
        assert shim.get(CREDENTIALS_PATH, short) == (200, ROLE)
        time.sleep(1.1)
        assert shim.get(CREDENTIALS_PATH, short)[0] == 401, (
            "an expired session token must be refused"
        )
    assert ecs.credential_requests == 1, "unauthenticated requests must not reach the ECS endpoint"


def test_upstream_error_is_a_clear_http_error_and_one_log_line(ecs: FakeEcsEndpoint) -> None:
    ecs.fail_with(500)
    env, args = relative(ecs)
    with running_shim(env, *args) as shim:
        status, body = shim.get(ROLE_URL)
        expected = (
            f"failed to fetch task-role credentials from {ecs.base_url}: "
            "HTTP 500 Internal Server Error"
        )
        assert (status, body) == (502, f"credential-shim: {expected}\n")
        assert shim.call("GET", HEALTH_PATH) == (503, f"credential-shim: {expected}\n")
        check = subprocess.run(
            [sys.executable, "-m", "gcpfargate.shim", "--check", "--port", str(shim.port)],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert (check.returncode, check.stderr) == (1, f"credential-shim unhealthy: {expected}\n")
        errors = [line for line in shim.log_text().splitlines() if "ERROR" in line]
        assert errors == [f"credential-shim ERROR: {expected}"] * 3  # one line per failed request
        assert ecs.credential_requests == 9  # three attempts each, as the AWS SDKs make
        ecs.fail_with(None)  # the agent is back: the next request succeeds without a restart
        assert served_key(shim) == ecs.credentials.access_key_id


def test_connection_refused_is_a_clear_error() -> None:
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        closed = sock.getsockname()[1]
    env = {"AWS_CONTAINER_CREDENTIALS_RELATIVE_URI": ECS_PATH}
    with running_shim(env, "--ecs-endpoint", f"http://127.0.0.1:{closed}") as shim:
        status, body = shim.get(CREDENTIALS_PATH)
    assert status == 502
    assert body == (
        f"credential-shim: failed to fetch task-role credentials from http://127.0.0.1:{closed}: "
        "unreachable ([Errno 111] Connection refused)\n"
    )


def test_cached_credentials_outlive_an_upstream_outage(ecs: FakeEcsEndpoint) -> None:
    env, args = relative(ecs)
    with running_shim(env, *args, "--max-age", "1") as shim:
        key = served_key(shim)
        ecs.fail_with(503)
        time.sleep(1.2)
        assert served_key(shim) == key
        assert (
            "HTTP 503 Service Unavailable; serving the cached credentials until" in shim.log_text()
        )


def test_health_check_command(ecs: FakeEcsEndpoint) -> None:
    env, args = relative(ecs)
    with running_shim(env, *args) as shim:
        check = subprocess.run(
            [sys.executable, "-m", "gcpfargate.shim", "--check", "--port", str(shim.port)],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert (check.returncode, check.stderr) == (0, "")
    check = subprocess.run(
        [sys.executable, "-m", "gcpfargate.shim", "--check", "--port", str(shim.port)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert check.returncode == 1
    assert check.stderr.startswith(
        f"credential-shim unhealthy: not answering on port {shim.port} ("
    )


def test_availability_zone_comes_from_task_metadata(ecs: FakeEcsEndpoint) -> None:
    env, args = relative(ecs)
    with running_shim(
        {**env, "ECS_CONTAINER_METADATA_URI_V4": ecs.base_url + METADATA_PATH}, *args
    ) as shim:
        assert shim.get(ZONE_PATH) == (200, "ap-northeast-1a")
    with running_shim(env, *args) as shim:
        assert shim.get(ZONE_PATH) == (
            404,
            "credential-shim: the availability zone is unknown: "
            "ECS_CONTAINER_METADATA_URI_V4 is not set; set AWS_REGION in the "
            "application container\n",
        )


def test_the_package_alone_runs_on_the_standard_library(
    ecs: FakeEcsEndpoint, tmp_path: Path
) -> None:
    """The sidecar image is a Python base plus this package copied as `shim`: no gcpfargate, no
    SDK."""
    shutil.copytree(
        Path(shim_module.__file__).parent,
        tmp_path / "shim",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    env, args = relative(ecs)
    # -E -s: no PYTHON* variables, no user site; the working directory is the image's WORKDIR.
    argv = [sys.executable, "-X", "importtime", "-E", "-s", "-m", "shim"]
    with running_shim(env, *args, argv=argv, cwd=tmp_path) as shim:
        assert served_key(shim) == ecs.credentials.access_key_id
        shim.proc.send_signal(signal.SIGTERM)
        shim.proc.wait(timeout=10)
        imported = {
            line.rsplit("|", 1)[1].strip()
            for line in shim.log_text().splitlines()
            if line.startswith("import time:") and "|" in line
        }
    assert "http.server" in imported, "importtime output was not parsed"
    third_party = sorted(
        name
        for name in imported
        if name.split(".")[0]
        in {"gcpfargate", "boto3", "botocore", "google", "docker", "requests", "urllib3"}
    )
    assert third_party == []


def test_the_cli_subcommand_runs_the_same_program(ecs: FakeEcsEndpoint) -> None:
    env, args = relative(ecs)
    with running_shim(
        env, *args, argv=[sys.executable, "-m", "gcpfargate", "credential-shim"]
    ) as shim:
        assert served_key(shim) == ecs.credentials.access_key_id
    assert shim.proc.returncode == 0
    usage = subprocess.run(
        [sys.executable, "-m", "gcpfargate", "credential-shim", "--help"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert usage.returncode == 0 and usage.stdout.startswith(
        "usage: credential-shim [-h] [--port PORT]"
    )


def test_cache_policy_in_process() -> None:
    """The refetch rule on a fake clock: margin before expiry, max age, stale-but-valid on
    failure."""
    from gcpfargate.shim.upstream import CredentialCache, ShimError, TaskRoleCredentials

    clock = [datetime(2026, 1, 1, tzinfo=UTC)]
    answers: list[TaskRoleCredentials | ShimError] = []

    def fetch() -> TaskRoleCredentials:
        answer = answers.pop(0)
        if isinstance(answer, ShimError):
            raise answer
        return answer

    def creds(key: str, lifetime: float) -> TaskRoleCredentials:
        return TaskRoleCredentials(
            key, "secret", "token", clock[0] + timedelta(seconds=lifetime), ROLE, clock[0]
        )

    def advance(seconds: float) -> None:
        clock[0] += timedelta(seconds=seconds)

    cache = CredentialCache(fetch, lambda: clock[0], refresh_margin=600, max_age=900)
    answers.append(creds("A", 3600))
    assert cache.get().access_key_id == "A"
    advance(899)
    assert cache.get().access_key_id == "A" and answers == []  # still cached: nothing asked
    advance(1)
    answers.append(creds("B", 1000))
    assert cache.get().access_key_id == "B"  # max age reached
    advance(400)
    answers.append(creds("C", 3600))
    assert cache.get().access_key_id == "C"  # within 600 s of B's expiry
    advance(900)
    answers.append(ShimError("upstream down"))
    assert cache.get().access_key_id == "C"  # refetch failed, C still valid: served
    advance(2700)
    answers.append(ShimError("upstream down"))
    with pytest.raises(ShimError, match="upstream down"):
        cache.get()  # C has expired: nothing valid to serve
    assert "secret" not in repr(creds("D", 1)) and "token" not in repr(creds("D", 1))
