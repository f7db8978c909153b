"""push-image against the stack: a real build on the private dockerd, pushed to the real registry,
ECR repositories in moto, ECR authorization through moto (and the fault proxy for failures)."""

from __future__ import annotations

import json
import re
import struct
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Project, assert_one_clean_line
from tests.integration.helpers import (
    configure_image,
    engine,
    fake_key_json,
    registry_digest,
    registry_tags,
)
from tests.stack.engineproxy import EngineProxy, any_digest, aux_digest
from tests.stack.faultproxy import FaultProxy, Rule
from tests.stack.images import no_buildkit_path, write_busybox_context
from tests.stack.local import free_port


def push_events(project: Project, repository: str, since: float) -> list[dict[str, Any]]:
    """The engine's own record of image pushes of this repository since `since`."""
    events = engine(project).events(
        since=f"{since:.6f}",
        until=int(time.time()) + 1,
        filters={"type": "image", "event": "push"},
        decode=True,
    )
    return [event for event in events if f"/{repository}:" in event.get("id", "")]


def test_push_builds_pushes_and_a_second_push_is_a_no_op(project: Project) -> None:
    repository = configure_image(project)
    write_busybox_context(project.dir, ['CMD ["echo", "hello"]'])
    first = project.run("push-image", "--output", "json")
    assert first.returncode == 0, first.output
    out = first.json
    assert set(out) == {"image", "digest", "tags", "changed"}
    assert out["changed"] is True
    tag = out["tags"][0]
    assert out["tags"] == [tag] and re.fullmatch(
        r"\d{14}", tag
    )  # not a git work tree: UTC timestamp
    assert out["image"] == f"{project.stack.registry}/{repository}:{tag}"
    assert out["digest"].startswith("sha256:")
    assert out["digest"] == registry_digest(project, repository, tag)
    assert registry_tags(project, repository) == [tag]  # no `latest` unless image.push_latest
    described = project.aws("ecr").describe_repositories(repositoryNames=[repository])[
        "repositories"
    ][0]
    assert described["imageScanningConfiguration"]["scanOnPush"] is True
    assert not (project.dir / ".home" / ".docker" / "config.json").exists()
    # The build log was streamed (to stderr: stdout holds only JSON): BuildKit's plain progress.
    assert "[2/2] RUN" in first.stderr

    since = time.time()
    calls = project.dir / "calls"
    second = project.run(
        "push-image", "--tag", tag, "--output", "json", env={"GCPFARGATE_CALL_LOG": str(calls)}
    )
    assert second.returncode == 0, second.output
    assert second.json == {**out, "changed": False}
    assert push_events(project, repository, since) == []
    assert [line for line in calls.read_text().splitlines() if line.endswith(" write")] == []
    assert "aws ecr GetAuthorizationToken read" in calls.read_text()
    assert registry_tags(project, repository) == [tag]


@pytest.mark.parametrize(
    "drop, asks_registry",
    [(aux_digest, False), (any_digest, True)],
    ids=["status line only", "no digest in the stream"],
)
def test_push_stream_without_an_aux_digest(
    project: Project, drop: Callable[[dict[str, Any]], bool], asks_registry: bool
) -> None:
    """The real engine pushes to the real registry through a proxy that takes the digest records
    out of the push stream: the digest comes from the status line, else from the registry."""
    repository = configure_image(project, tag="v1")
    write_busybox_context(project.dir, ['CMD ["echo", "no-aux"]'])
    calls = project.dir / "calls"
    with EngineProxy(project.stack.docker_host, drop) as proxy:
        env = {"DOCKER_HOST": proxy.docker_host, "GCPFARGATE_CALL_LOG": str(calls)}
        first = project.run("push-image", "--output", "json", env=env)
        assert first.returncode == 0, first.output
        assert proxy.pushes == 1
        assert any(aux_digest(record) for record in proxy.dropped)  # the engine did send one
        assert first.json["digest"] == registry_digest(project, repository, "v1")
        assert first.json["changed"] is True
        assert ("registry HEAD manifests" in calls.read_text()) is asks_registry
        second = project.run("push-image", "--output", "json", env=env)
    assert second.returncode == 0, second.output
    assert second.json == {**first.json, "changed": False}
    assert proxy.pushes == 1
    assert registry_tags(project, repository) == ["v1"]


def test_derived_tag_reuses_the_image_the_task_definition_pins(project: Project) -> None:
    repository = configure_image(project, platform="linux/amd64")
    write_busybox_context(project.dir)
    first = project.run("push-image", "--output", "json")
    assert first.returncode == 0, first.output
    pinned = f"{project.stack.registry}/{repository}@{first.json['digest']}"
    project.aws("ecs").register_task_definition(
        family=project.family,
        requiresCompatibilities=["FARGATE"],
        networkMode="awsvpc",
        cpu="256",
        memory="512",
        runtimePlatform={"cpuArchitecture": "X86_64", "operatingSystemFamily": "LINUX"},
        # ECS refuses an ECR image on Fargate without an execution role (the strict layer, too).
        executionRoleArn=f"arn:aws:iam::123456789012:role/gcpfargate-{project.family}-execution",
        containerDefinitions=[{"name": "app", "image": pinned, "essential": True}],
    )
    time.sleep(1.1)  # the derived timestamp tag of the next run is certainly a new one

    since = time.time()
    second = project.run("push-image", "--output", "json")
    assert second.returncode == 0, second.output
    # Reported by digest, as registered: no tag lookups on the no-op path.
    assert second.json == {
        "image": pinned,
        "digest": first.json["digest"],
        "tags": [],
        "changed": False,
    }
    assert "already runs this image" in second.stderr
    assert push_events(project, repository, since) == []
    assert registry_tags(project, repository) == first.json["tags"]


def test_push_latest_when_asked(project: Project) -> None:
    repository = configure_image(project, tag="v1", push_latest=True)
    write_busybox_context(project.dir)
    result = project.run("push-image", "--output", "json")
    assert result.returncode == 0, result.output
    assert result.json["tags"] == ["v1", "latest"]
    assert registry_tags(project, repository) == ["latest", "v1"]
    assert registry_digest(project, repository, "latest") == result.json["digest"]


def test_dry_run_plans_with_the_git_sha_and_changes_nothing(project: Project) -> None:
    repository = configure_image(project)
    write_busybox_context(project.dir)
    git = ["git", "-C", str(project.dir), "-c", "user.name=t", "-c", "user.email=t@example.com"]
    subprocess.run([*git, "init", "-q"], check=True, env=project.env)
    # A clean work tree (uncommitted changes would give <sha>-dirty-<hash>): the test's own files
    # ignored.
    (project.dir / ".gitignore").write_text(".home/\ncalls\n")
    subprocess.run([*git, "add", "-A"], check=True, env=project.env)
    subprocess.run([*git, "commit", "-q", "-m", "init"], check=True, env=project.env)
    sha = subprocess.run(
        [*git, "rev-parse", "--short", "HEAD"],
        check=True,
        capture_output=True,
        text=True,
        env=project.env,
    ).stdout.strip()

    calls = project.dir / "calls"
    result = project.run(
        "push-image", "--dry-run", "--output", "json", env={"GCPFARGATE_CALL_LOG": str(calls)}
    )
    assert result.returncode == 0, result.output
    assert result.json["image"] == f"{project.stack.registry}/{repository}:{sha}"
    assert result.json["tags"] == [sha] and result.json["digest"] is None
    assert {"action": "create", "resource": "ECR repository", "name": repository} in [
        {key: change[key] for key in ("action", "resource", "name")}
        for change in result.json["plan"]
    ]
    assert any(
        change["text"] == f"create ECR repository {repository} (scan on push)"
        for change in result.json["plan"]
    )
    assert [line for line in calls.read_text().splitlines() if line.endswith(" write")] == []
    assert not project.exists("repository", repository)
    assert engine(project).images.list(name=f"{project.stack.registry}/{repository}") == []

    text = project.run("push-image", "--dry-run")
    assert text.returncode == 0, text.output
    assert "Plan (dry run, nothing changed):" in text.stderr and sha in text.stderr


def test_key_in_the_context_is_refused_and_dockerignore_lets_the_push_through(
    project: Project,
) -> None:
    repository = configure_image(project)
    key = fake_key_json()
    write_busybox_context(project.dir, files={"config/sa-key.json": key})
    refused = project.run("push-image")
    line = assert_one_clean_line(
        refused, 1, "refusing to push", "config/sa-key.json", "--allow-embedded-credentials"
    )
    assert "MIIfake" not in refused.output and "PRIVATE" not in line
    assert not project.exists("repository", repository)

    (project.dir / ".dockerignore").write_text("config/sa-key.json\n")
    allowed = project.run("push-image", "--output", "json")
    assert allowed.returncode == 0, allowed.output
    assert allowed.json["changed"] is True
    assert registry_digest(project, repository, allowed.json["tags"][0]) == allowed.json["digest"]


def test_key_created_by_a_run_step_is_refused_unless_allowed(project: Project) -> None:
    import base64
    import gzip

    repository = configure_image(project, tag="v1")
    # Compressed, then base64: the guard sees plain base64 of a key in the Dockerfile (the build
    # context), and this test is about the layer.
    encoded = base64.b64encode(gzip.compress(fake_key_json().encode())).decode()
    # The key is not in the context: a RUN step makes it (as a `curl` of a secret would), then
    # deletes it, which leaves it in that step's layer.
    write_busybox_context(
        project.dir,
        [
            f"RUN mkdir -p /app && echo {encoded} | base64 -d | gunzip > /app/creds.json",
            "RUN rm /app/creds.json",
        ],
    )
    refused = project.run("push-image")
    assert_one_clean_line(
        refused,
        1,
        "refusing to push",
        f"image {project.stack.registry}/{repository}:v1",
        "/app/creds.json",
    )
    assert "MIIfake" not in refused.output
    assert registry_tags(project, repository) == []

    allowed = project.run("push-image", "--allow-embedded-credentials", "--output", "json")
    assert allowed.returncode == 0, allowed.output
    assert "warning:" in allowed.stderr and "/app/creds.json" in allowed.stderr
    assert registry_tags(project, repository) == ["v1"]


def test_engine_unreachable_is_one_line(project: Project) -> None:
    configure_image(project)
    write_busybox_context(project.dir)
    result = project.run("push-image", env={"DOCKER_HOST": "unix:///nonexistent"})
    assert_one_clean_line(result, 1, "cannot reach the Docker engine", "DOCKER_HOST")


@pytest.mark.parametrize("entry", ["credsStore", "credHelpers"])
def test_missing_credential_helper_is_one_line(project: Project, entry: str) -> None:
    """A Docker client config naming a credential helper that is not installed (a former Docker
    Desktop user, WSL): the SDK cannot read the logins it sends with a classic build. BuildKit
    asks for a login only when a registry wants one, and the push takes ECR's own."""
    repository = configure_image(project, tag="v1")
    write_busybox_context(project.dir)
    docker_config = project.dir.parent / f"{project.dir.name}.docker"
    docker_config.mkdir()
    helper = {"credsStore": "gcpf-missing"}
    if entry == "credHelpers":
        helper = {"credHelpers": {"registry.example.com": "gcpf-missing"}}
    (docker_config / "config.json").write_text(json.dumps(helper))
    classic = no_buildkit_path(project.dir.parent / f"{project.dir.name}.bin")
    result = project.run("push-image", env={"DOCKER_CONFIG": str(docker_config), "PATH": classic})
    line = assert_one_clean_line(
        result,
        1,
        "image build failed: Docker's credential helper docker-credential-gcpf-missing",
        f"{docker_config}/config.json",
        "is not installed or not on PATH",
        "Install docker-credential-gcpf-missing, or remove that entry",
    )
    assert "StoreError" not in line and "unexpected" not in line
    assert registry_tags(project, repository) == []
    buildkit = project.run("push-image", env={"DOCKER_CONFIG": str(docker_config)})
    assert buildkit.returncode == 0, buildkit.output
    assert registry_tags(project, repository) == ["v1"]


def test_ssh_docker_host_that_cannot_be_reached_is_one_line(project: Project) -> None:
    """DOCKER_HOST=ssh://… goes through paramiko (the SDK's ssh extra): a refused connection and a
    peer that does not speak ssh (the registry's HTTP port) are each one line naming the host."""
    configure_image(project)
    write_busybox_context(project.dir)
    for host, reason in (
        (f"ssh://builder@127.0.0.1:{free_port()}", "connection refused"),
        (f"ssh://builder@{project.stack.registry}", ""),
    ):
        result = project.run("push-image", env={"DOCKER_HOST": host})
        line = assert_one_clean_line(
            result, 1, f"cannot reach the Docker engine at {host}: {reason}", "ssh-agent"
        )
        assert "paramiko" not in line and "unexpected" not in line


def test_missing_dockerfile_names_the_path(project: Project) -> None:
    configure_image(project, dockerfile="build/Dockerfile.prod")
    result = project.run("push-image")
    assert_one_clean_line(
        result, 2, f"Dockerfile {project.dir.resolve()}/build/Dockerfile.prod does not exist"
    )


def test_failing_run_step_is_reported_as_that_step(project: Project) -> None:
    repository = configure_image(project)
    write_busybox_context(project.dir, ["RUN echo preparing-the-data && exit 3"])
    result = project.run("push-image")
    # BuildKit numbers a stage's steps without its FROM, as its progress shows them.
    line = assert_one_clean_line(
        result,
        1,
        "image build failed at step 3/3",
        "RUN echo preparing-the-data",
        "returned a non-zero code: 3",
        "last output: preparing-the-data",
    )
    assert "Fix that step" in line
    assert registry_tags(project, repository) == []


def aarch64_program() -> bytes:
    """The ELF header of an arm64 Linux program: an x86-64 kernel without QEMU's binfmt handler
    refuses to run it with ENOEXEC ("exec format error"), as an amd64 base image's /bin/sh is
    refused on Apple Silicon without emulation."""
    ident = b"\x7fELF" + bytes([2, 1, 1, 0]) + bytes(8)  # 64-bit, little-endian, System V
    # e_type EXEC, e_machine EM_AARCH64 (183), e_version, e_entry, e_phoff, e_shoff, e_flags,
    # e_ehsize, e_phentsize, e_phnum, e_shentsize, e_shnum, e_shstrndx
    return ident + struct.pack("<HHIQQQIHHHHHH", 2, 183, 1, 0x400000, 64, 0, 0, 64, 56, 0, 64, 0, 0)


def test_run_step_of_another_architecture_gets_the_emulation_hint(project: Project) -> None:
    assert not any(Path("/proc/sys/fs/binfmt_misc").glob("qemu-aarch64*")), (
        "this machine emulates arm64: the step would run"
    )
    repository = configure_image(project, tag="v1")
    write_busybox_context(
        project.dir,
        ["COPY armtool /bin/armtool", 'RUN ["/bin/armtool", "--version"]'],
        files={"armtool": aarch64_program()},
    )
    (project.dir / "armtool").chmod(0o755)
    result = project.run("push-image")
    line = assert_one_clean_line(
        result,
        1,
        'image build failed at step 4/4 `RUN ["/bin/armtool", "--version"]`',
        "exec format error",
        "This machine cannot run linux/amd64 programs: register QEMU's binfmt handlers",
        "or build on a linux/amd64 machine",
    )
    assert "Fix that step" not in line
    assert registry_tags(project, repository) == []


def test_build_failure_message_has_no_terminal_escapes(project: Project) -> None:
    configure_image(project, tag="v1")
    write_busybox_context(
        project.dir,
        ["RUN printf '\\033[1;31merror:\\033[0m no \\033[4mcompiler\\033[0m\\n' && exit 4"],
    )
    result = project.run("push-image")
    line = assert_one_clean_line(
        result,
        1,
        "image build failed at step 3/3",
        "last output: error: no compiler",
        "Fix that step",
    )
    assert "\x1b" not in line


def test_image_of_another_architecture_is_refused(project: Project) -> None:
    """A base image without a variant for image.platform gives an image of another architecture:
    refused before anything is created or pushed (Fargate would not start it)."""
    base = f"gcpf-arm64-base-{project.family}:1"
    base_context = project.dir.parent / f"{project.dir.name}.base"
    write_busybox_context(base_context)
    # A path no other test copies to: the classic builder's cache ignores the architecture, so a
    # `COPY busybox /bin/busybox` layer of this arm64 build could be reused by another test's build.
    (base_context / "Dockerfile").write_text("FROM scratch\nCOPY busybox /bin/arm64-busybox\n")
    client = engine(project)
    # No cache: a cached layer of an amd64 build would be reused as the base.
    for chunk in client.api.build(
        path=str(base_context), tag=base, platform="linux/arm64", nocache=True, decode=True
    ):
        assert "error" not in chunk, chunk
    assert client.api.inspect_image(base)["Architecture"] == "arm64"
    repository = configure_image(project, tag="v1", platform="linux/amd64")
    (project.dir / "Dockerfile").write_text(f'FROM {base}\nCMD ["/bin/arm64-busybox", "true"]\n')
    # The classic builder: BuildKit asks the registry for the base's linux/amd64 variant (there
    # is none) rather than build on the arm64 one, so only the classic builder makes such an image.
    classic = no_buildkit_path(project.dir.parent / f"{project.dir.name}.bin")
    try:
        result = project.run("push-image", env={"PATH": classic})
    finally:
        client.api.remove_image(f"{project.stack.registry}/{repository}:v1", force=True)
        client.api.remove_image(base, force=True)
    line = assert_one_clean_line(
        result,
        2,
        f"refusing to push {project.stack.registry}/{repository}:v1: it was built for linux/arm64, "
        "but image.platform is linux/amd64",
        "exec format error",
        "FROM --platform",
    )
    # The only warning is the classic builder's own (no BuildKit here).
    assert [each for each in result.stderr.splitlines() if "warning" in each] == [
        each for each in result.stderr.splitlines() if "classic builder" in each
    ]
    assert registry_tags(project, repository) == []
    assert not project.exists("repository", repository)
    assert line.count("error:") == 1


def test_ecr_authorization_failure_is_one_line(project: Project) -> None:
    configure_image(project)
    write_busybox_context(project.dir)
    with FaultProxy(project.stack.moto_url) as proxy:
        proxy.add(
            Rule(
                "GetAuthorizationToken",
                status=400,
                code="AccessDeniedException",
                message="not authorized to perform ecr:GetAuthorizationToken",
                times=-1,
            )
        )
        result = project.run(
            "push-image", env={"AWS_ENDPOINT_URL": proxy.url, "AWS_MAX_ATTEMPTS": "1"}
        )
    assert_one_clean_line(
        result, 1, "ECR authorization token", "AccessDeniedException", "IAM permissions"
    )


def test_create_repository_refusal_is_access_denied(project: Project) -> None:
    repository = configure_image(project)
    write_busybox_context(project.dir)
    with FaultProxy(project.stack.moto_url) as proxy:
        proxy.add(
            Rule(
                "CreateRepository",
                status=400,
                code="AccessDeniedException",
                message="not authorized to perform ecr:CreateRepository",
                times=-1,
            )
        )
        result = project.run(
            "push-image", env={"AWS_ENDPOINT_URL": proxy.url, "AWS_MAX_ATTEMPTS": "1"}
        )
    assert_one_clean_line(
        result,
        1,
        f"create ECR repository {repository}",
        "AccessDeniedException",
        "ecr:CreateRepository",
    )


@contextmanager
def denying_registry() -> Iterator[str]:
    """A registry that lets the engine look but answers every upload the way ECR refuses a push."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:
            pass

        def _answer(self, status: int, body: dict[str, Any] | None = None) -> None:
            payload = json.dumps(body or {}).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Docker-Distribution-API-Version", "registry/2.0")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(payload)

        def do_GET(self) -> None:
            if self.path.rstrip("/") == "/v2":
                self._answer(200)
            else:
                self._answer(
                    404, {"errors": [{"code": "MANIFEST_UNKNOWN", "message": "manifest unknown"}]}
                )

        do_HEAD = do_GET

        def do_POST(self) -> None:
            self._answer(
                403,
                {
                    "errors": [
                        {
                            "code": "DENIED",
                            "message": "User is not authorized to perform "
                            "ecr:InitiateLayerUpload because of the repository policy",
                        }
                    ]
                },
            )

        do_PUT = do_PATCH = do_POST

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_push_refused_by_the_registry_is_access_denied(project: Project) -> None:
    configure_image(project, tag="v1")
    write_busybox_context(project.dir)
    with denying_registry() as host:
        result = project.run("push-image", env={"GCPFARGATE_ECR_REGISTRY": host})
    assert_one_clean_line(
        result, 1, f"failed to push {host}/{project.family}:v1", "AccessDenied", "repository policy"
    )


def test_registry_down_is_one_line(project: Project) -> None:
    configure_image(project, tag="v1")
    write_busybox_context(project.dir)
    host = f"127.0.0.1:{free_port()}"
    result = project.run("push-image", env={"GCPFARGATE_ECR_REGISTRY": host})
    assert_one_clean_line(result, 1, f"cannot reach registry {host}", "GCPFARGATE_ECR_REGISTRY")
