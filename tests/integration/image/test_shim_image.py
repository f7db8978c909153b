"""The credential shim's image, built from `shim_image.build_context` on the stack's engine, run
with its container definition's command and health check, and used by real google-auth.

The base is the demo's locally built Python base (no image can be pulled here); production uses
python:3-slim. The container uses network `host`, as run-local does, so it reaches the fake ECS
endpoint on 127.0.0.1 and the test reaches the shim.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from gcpfargate.image.shim_image import build_context, container_definition
from gcpfargate.shim import CREDENTIALS_PATH as SHIM_CREDENTIALS_PATH
from tests.integration.helpers import (
    REGION,
    VERIFICATION_URL,
    subject_token_through_adc,
)
from tests.stack.fake_ecs import CREDENTIALS_PATH, FakeEcsEndpoint
from tests.stack.local import free_port
from tests.stack.shim_process import Shim


@pytest.fixture
def application_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_REGION", REGION)
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", "demo-project")
    config_path = tmp_path / "credentials.json"
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(config_path))
    return config_path


def test_shim_image_passes_its_health_check_and_serves_google_auth(
    stack,  # type: ignore[no-untyped-def]
    base_image: str,
    tmp_path: Path,
    application_env: Path,
) -> None:
    import docker

    engine = docker.DockerClient(base_url=stack.docker_host)
    context = tmp_path / "context"
    for relative, content in build_context(base_image).items():
        (context / relative).parent.mkdir(parents=True, exist_ok=True)
        (context / relative).write_bytes(content)
    image, _ = engine.images.build(
        path=str(context), tag="gcpfargate-test/credential-shim:test", rm=True
    )
    port = free_port()
    definition = container_definition(image.id, port)
    with FakeEcsEndpoint() as ecs:
        container = engine.containers.run(
            image.id,
            command=[*definition["command"], "--ecs-endpoint", ecs.base_url],
            detach=True,
            environment={"AWS_CONTAINER_CREDENTIALS_RELATIVE_URI": CREDENTIALS_PATH},
            network_mode="host",
            read_only=definition["readonlyRootFilesystem"],
        )
        try:
            # The health check as ECS runs it: the definition's CMD, executed inside the container.
            deadline = time.monotonic() + 30
            while container.exec_run(definition["healthCheck"]["command"][1:]).exit_code != 0:
                assert time.monotonic() < deadline, container.logs().decode()
                time.sleep(0.2)
            signed = subject_token_through_adc(application_env, port)
            assert signed["url"] == VERIFICATION_URL
            headers = {h["key"]: h["value"] for h in signed["headers"]}
            assert headers["x-amz-security-token"] == ecs.credentials.token
            assert ecs.credentials.access_key_id in headers["Authorization"]
            assert Shim(None, port).call("GET", SHIM_CREDENTIALS_PATH)[0] == 401, (
                "IMDSv2 is required in the image too"
            )
            container.stop(timeout=10)  # SIGTERM, as ECS stops a task
            assert container.wait(timeout=10)["StatusCode"] == 0
            logs = container.logs().decode()
            assert "task-role credentials for role gcpfargate-demo-task fetched" in logs
            assert (
                ecs.credentials.secret_access_key not in logs and ecs.credentials.token not in logs
            )
            assert container.attrs["Config"]["User"] == "65534:65534"
        finally:
            container.remove(force=True)
    engine.images.remove(image.id, force=True)
