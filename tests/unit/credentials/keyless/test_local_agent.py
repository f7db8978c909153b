"""run-local's in-namespace task-role agent, run as the shim container runs it (`python3 -c` with
the shim package importable as `shim`), without an engine: credentials written to its stdin are
what the shim serves over IMDSv2, a newer document replaces the older, and neither the agent's
path nor its token appears in the shim's log."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import gcpfargate.shim
from gcpfargate.credentials.keyless import run_local


def _document(key: str) -> bytes:
    return (
        json.dumps(
            {
                "RoleArn": "arn:aws:iam::123456789012:role/gcpfargate-x-task",
                "AccessKeyId": key,
                "SecretAccessKey": "secret-" + key,
                "Token": "token-" + key,
                "Expiration": "2099-01-01T00:00:00Z",
            }
        )
        + "\n"
    ).encode()


def _imds(port: int) -> dict[str, Any]:
    base = f"http://127.0.0.1:{port}"
    put = urllib.request.Request(
        base + "/latest/api/token",
        method="PUT",
        headers={"X-aws-ec2-metadata-token-ttl-seconds": "60"},
    )
    token = {"X-aws-ec2-metadata-token": urllib.request.urlopen(put, timeout=5).read().decode()}
    path = base + "/latest/meta-data/iam/security-credentials"
    role = urllib.request.urlopen(urllib.request.Request(path, headers=token), timeout=5).read()
    answer = urllib.request.urlopen(
        urllib.request.Request(f"{path}/{role.decode()}", headers=token), timeout=5
    )
    return dict(json.loads(answer.read()))


def test_the_agent_serves_what_arrives_on_stdin_to_the_shim(tmp_path: Path) -> None:
    (tmp_path / "shim").symlink_to(Path(gcpfargate.shim.__file__).parent)
    argv = run_local._agent_entrypoint()
    assert argv[:2] == ["python3", "-c"]
    proc = subprocess.Popen(
        [sys.executable, *argv[1:], "--port", "0", "--max-age", "0"],
        env={"PYTHONPATH": str(tmp_path), "AWS_REGION": "ap-northeast-1"},
        stdin=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=False,
    )
    try:
        assert proc.stdin is not None and proc.stderr is not None
        line = proc.stderr.readline().decode()
        port = int(re.search(r"on http://127\.0\.0\.1:(\d+)", line)[1])  # type: ignore[index]
        # The endpoint is named by scheme://host:port only: its path is the secret.
        assert "/v2/credentials" not in line, line
        proc.stdin.write(_document("ASIAFIRST"))
        proc.stdin.flush()
        deadline = time.monotonic() + 10
        while True:
            try:
                assert _imds(port)["AccessKeyId"] == "ASIAFIRST"
                break
            except (OSError, AssertionError, urllib.error.HTTPError):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        proc.stdin.write(_document("ASIASECOND"))
        proc.stdin.flush()
        deadline = time.monotonic() + 10
        while _imds(port)["AccessKeyId"] != "ASIASECOND":
            assert time.monotonic() < deadline, "the newer credentials never replaced the older"
            time.sleep(0.1)
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=10)
    assert b"ASIA" not in err and b"secret-" not in err and b"/v2/credentials" not in err
