"""The build context is streamed to the engine while it is archived (clients/build_context.py, issue
18).

Against the stack's real engine: the archive is byte for byte the docker SDK's own (so the engine
sees the same context and its build cache still hits), no temporary copy of the context is made,
and a file of the context that cannot be read ends the build with one clear error naming it.
"""

from __future__ import annotations

import errno
import io
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker.utils
import pytest

from gcpfargate.clients.engine.build_context import StreamedContext
from gcpfargate.clients.engine.docker import DockerEngine
from gcpfargate.errors import DockerError
from tests.stack.images import write_busybox_context
from tests.stack.local import LocalStack


@pytest.fixture
def engine(stack: LocalStack, monkeypatch: pytest.MonkeyPatch) -> Iterator[DockerEngine]:
    monkeypatch.setenv("DOCKER_HOST", stack.docker_host)
    yield DockerEngine()


def context(directory: Path, content: str = "v1") -> Path:
    write_busybox_context(
        directory,
        ["COPY app.txt /app.txt", "COPY lib /lib-copy"],
        files={
            "app.txt": content,
            "lib/a.py": "x = 1\n" * 5000,
            "lib/b.bin": "\0" * 70000,
            "skipped/secret.txt": "not sent",
        },
        dockerignore=["skipped/"],
    )
    return directory


def test_the_stream_is_the_sdks_own_archive(tmp_path: Path) -> None:
    root = context(tmp_path / "ctx")
    expected = docker.utils.tar(
        str(root), exclude=["skipped/"], dockerfile=("Dockerfile", None)
    ).read()
    streamed = StreamedContext(root, "Dockerfile")
    assert b"".join(streamed.chunks()) == expected
    assert streamed.failure() is None and streamed.dockerfile == "Dockerfile"


def test_a_build_makes_no_temporary_copy_and_hits_the_cache(
    engine: DockerEngine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refused(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the build context was copied to a temporary file")

    root = context(tmp_path / "ctx")
    first = engine.build(root, "Dockerfile", "gcpf-test/streamed:one")
    monkeypatch.setattr(tempfile, "NamedTemporaryFile", refused)
    lines: list[str] = []
    again = engine.build(root, "Dockerfile", "gcpf-test/streamed:two", on_line=lines.append)
    assert again == first  # the same context archived the same way: every step from the cache
    assert any("Using cache" in line for line in lines)
    inspected = engine.inspect(again)
    assert inspected is not None


def test_a_file_that_cannot_be_read_ends_the_build_with_one_clear_error(
    engine: DockerEngine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Root reads every file here, so the read failure is made where the SDK's archive reads one."""
    real = docker.utils.tar

    def failing(path: str, **kwargs: Any) -> Any:
        out = kwargs["fileobj"]
        out.write(
            real(path, exclude=kwargs.get("exclude"), dockerfile=kwargs.get("dockerfile")).read()[
                :20000
            ]
        )
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(docker.utils, "tar", failing)
    with pytest.raises(DockerError) as raised:
        engine.build(context(tmp_path / "ctx"), "Dockerfile", "gcpf-test/streamed:broken")
    assert (
        raised.value.message
        == f"cannot read the build context {tmp_path / 'ctx'}: Input/output error"
    )
    assert "\n" not in raised.value.message


def test_the_stream_stops_when_nobody_reads(tmp_path: Path) -> None:
    root = context(tmp_path / "ctx", "x" * 3_000_000)  # more than a pipe holds
    streamed = StreamedContext(root, "Dockerfile")
    first = next(streamed.chunks())
    assert first
    assert streamed.failure() is None  # the writer ended on the closed pipe: not a context failure
    assert isinstance(io.BytesIO(first).read(1), bytes)
