"""The build context as a stream: the docker SDK's own archive, sent while it is written.

`APIClient.build(path=...)` writes the whole context into a temporary file before it sends the
first byte (docker/utils/build.py, `create_archive`): with 400 MB of vendored dependencies that is
a second copy of the context written and read back on every build, while the engine waits. Here
the same archive (the SDK's reading of `.dockerignore`, its file list, its `process_dockerfile` and
`create_archive`, so the engine receives the same bytes) is written into a pipe by a thread while
the request sends what is there, chunked, as the docker CLI does.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator
from pathlib import Path

CHUNK = 1 << 20


class _PipeOut:
    """The pipe's write end as `create_archive` uses a file: tarfile asks its position, and the SDK
    rewinds its temporary file when done (`seek(0)`), which means nothing for a pipe."""

    def __init__(self, descriptor: int) -> None:
        self._out = os.fdopen(descriptor, "wb", buffering=CHUNK)
        self.position = 0
        self.hung_up = (
            False  # the reader closed its end: the SDK words that as a file it cannot read
        )

    @contextlib.contextmanager
    def _noting_hang_up(self) -> Iterator[None]:
        try:
            yield
        except BrokenPipeError:
            self.hung_up = True
            raise

    def write(self, data: bytes) -> int:
        with self._noting_hang_up():
            self._out.write(data)
        self.position += len(data)
        return len(data)

    def flush(self) -> None:
        with self._noting_hang_up():
            self._out.flush()

    def tell(self) -> int:
        return self.position

    def seek(self, offset: int, whence: int = 0) -> int:
        return self.position

    def close(self) -> None:
        with self._noting_hang_up():
            self._out.close()


class StreamedContext:
    """The archive of `context`, written by a thread; `chunks()` is the request body, `dockerfile`
    the name the engine finds the Dockerfile under."""

    def __init__(self, context: Path, dockerfile: str) -> None:
        from gcpfargate.clients.engine.sdk import docker_sdk

        docker_sdk()
        from docker.api.build import process_dockerfile

        root = os.path.abspath(context)
        exclude: list[str] = []
        ignore = os.path.join(root, ".dockerignore")
        if os.path.exists(ignore):
            # The SDK's own reading of .dockerignore (docker/api/build.py), so the same files are
            # sent.
            with open(ignore) as handle:
                exclude = [
                    line
                    for line in (raw.strip() for raw in handle.read().splitlines())
                    if line != "" and line[0] != "#"
                ]
        processed = process_dockerfile(dockerfile, root)
        self.dockerfile: str = processed[0]
        self.error: BaseException | None = None
        self._hung_up = False
        reading, writing = os.pipe()
        self._in = os.fdopen(reading, "rb", buffering=0)
        self._writer = threading.Thread(
            target=self._write,
            args=(root, exclude, processed, writing),
            name="gcpfargate-context",
            daemon=True,
        )
        self._writer.start()

    def _write(
        self, root: str, exclude: list[str], dockerfile: tuple[str, str | None], descriptor: int
    ) -> None:
        from gcpfargate.clients.engine.sdk import docker_sdk

        docker_sdk()
        from docker.utils import tar

        out = _PipeOut(descriptor)
        try:
            tar(root, exclude=exclude, dockerfile=dockerfile, fileobj=out)
        except BaseException as exc:  # the reader sees the stream end early; `failure()` says why
            self.error = exc
        finally:
            with contextlib.suppress(OSError):  # the engine may have hung up: nobody reads any more
                out.close()
            self._hung_up = out.hung_up

    def chunks(self) -> Iterator[bytes]:
        try:
            while chunk := self._in.read(CHUNK):
                yield chunk
        finally:
            self.close()

    def close(self) -> None:
        """Stop reading: a writer still writing then fails on the closed pipe and ends."""
        with contextlib.suppress(OSError):
            self._in.close()

    def failure(self) -> OSError | None:
        """Why the archive could not be written whole (a file of the context that cannot be read),
        once the writer has ended; None when it was written, or stopped only because nobody read
        on."""
        self.close()
        self._writer.join()
        if self.error is None or self._hung_up:
            return None
        if isinstance(self.error, OSError):
            return self.error
        raise self.error
