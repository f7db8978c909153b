"""Reading a `docker save` export as a stream: every layer's small files, for the key-file scan.

Nothing is written to disk: the export streams through tarfile's streaming mode, layer by layer.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from typing import Any

from gcpfargate.errors import DockerError


class _ChunkReader(io.RawIOBase):
    """A file object over an iterator of byte chunks, for tarfile's streaming mode."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._buffer = b""

    def readable(self) -> bool:
        return True

    def readinto(self, target: Any) -> int:
        while not self._buffer:
            try:
                self._buffer = next(self._chunks)
            except StopIteration:
                return 0
        size = min(len(target), len(self._buffer))
        target[:size] = self._buffer[:size]
        self._buffer = self._buffer[size:]
        return size


def _open_layer(blob: Any, name: str) -> Any:
    """The blob as a tar stream; None for a JSON blob (an OCI config or manifest). A blob that is
    neither fails the scan: skipping it would let a key through unseen."""
    import tarfile

    if blob is None:
        return None
    if blob.peek(1)[:1] in (b"{", b"["):
        return None
    try:
        return tarfile.open(fileobj=blob, mode="r|*")
    except tarfile.TarError:
        raise DockerError(f"cannot search layer {name} for key files: it is not a tar stream gcpfargate can read",
                          "Export the image with a current Docker (gzip or plain layers), or pass "
                          "--allow-embedded-credentials after checking it yourself") from None


def layer_files(chunks: Iterator[bytes], max_size: int, wanted: Callable[[bytes], bool],
                skip: Callable[[str], bool] = lambda name: False, done: Callable[[], bool] = lambda: False
                ) -> Iterator[tuple[str, str, bytes]]:
    """Walk a `docker save` tar (legacy `<id>/layer.tar` or OCI `blobs/sha256/…`): every member that
    is itself a tar is a layer; yield its small regular files. Members for which `skip(name)` is
    true are passed over unread; once `done()` is true after a layer, the rest is not read."""
    import tarfile

    with tarfile.open(fileobj=io.BufferedReader(_ChunkReader(chunks), 1 << 16), mode="r|") as outer:
        for member in outer:
            if not member.isfile() or member.size < 1024 or member.name.endswith((".json", "/json", "repositories")):
                continue  # a layer tar is at least two 512-byte blocks; manifests and configs are JSON
            if skip(member.name):
                continue
            layer = _open_layer(outer.extractfile(member), member.name)
            if layer is None:
                continue  # an OCI config or manifest blob, not a layer
            with layer:
                for entry in layer:
                    if not entry.isfile() or entry.size == 0 or entry.size > max_size:
                        continue
                    content = layer.extractfile(entry)
                    if content is None:
                        continue
                    head = content.read(min(entry.size, 64))
                    if wanted(head):
                        yield member.name, "/" + entry.name.removeprefix("./").lstrip("/"), head + content.read()
            if done():
                return
