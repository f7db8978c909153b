"""Reading a `docker save` export as a stream: every layer's files, for the key-file scan.

Nothing is written to disk: the export streams through tarfile's streaming mode, layer by layer.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Callable, Iterator
from typing import Any, BinaryIO

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
        raise DockerError(
            f"cannot search layer {name} for key files: it is not a tar stream gcpfargate can read",
            "Export the image with a current Docker (gzip or plain layers), or pass "
            "--allow-embedded-credentials after checking it yourself",
        ) from None


def legacy_chain_id(description: bytes, chain_ids: list[str]) -> str | None:
    """Which of the image's layer chain IDs the legacy layout's `<v1 id>/json` describes; None when
    it matches none (the caller then reads that layer: fail closed).

    The legacy layout names each layer directory by a v1 ID, which the engine computes from the
    layer's chain ID (moby image/v1.CreateID, used by image/tarexport/save.go): the sha256 of the
    layer's v1 JSON without `id`, plus `layer_id` (the chain ID) and `parent` (the previous v1 ID),
    keys sorted, as Go's encoding/json writes a map. The json file holds that JSON as Go wrote it,
    so its raw fields are reused byte for byte; `os` is set after the ID is computed, except for the
    top layer (whose JSON is the image's own). A match is a sha256 over the chain ID itself, so a
    directory is only ever taken for the layer the engine computed its name from."""
    try:
        text = description.decode()
        fields = _raw_fields(text)
        v1_id = json.loads(fields.pop("id"))
        parent = fields.pop("parent", None)
    except (ValueError, KeyError, TypeError, IndexError):
        return None
    if parent is not None:
        fields["parent"] = json.dumps("sha256:" + str(json.loads(parent)))
    without_os = {key: value for key, value in fields.items() if key != "os"}
    for chain in chain_ids:
        for variant in (without_os, fields):
            raw = {**variant, "layer_id": json.dumps(chain)}
            body = "{" + ",".join(f"{json.dumps(key)}:{raw[key]}" for key in sorted(raw)) + "}"
            if hashlib.sha256(body.encode()).hexdigest() == v1_id:
                return chain
    return None


def _raw_fields(text: str) -> dict[str, str]:
    """The top-level fields of a JSON object as their raw text (no re-encoding)."""
    decoder, fields = json.JSONDecoder(), dict[str, str]()
    at = text.index("{") + 1
    while True:
        while text[at] in " \t\r\n,":
            at += 1
        if text[at] == "}":
            return fields
        key, at = decoder.raw_decode(text, at)
        if not isinstance(key, str):
            raise ValueError("not a JSON object")
        while text[at] in " \t\r\n:":
            at += 1
        _, end = decoder.raw_decode(text, at)
        fields[key], at = text[at:end], end


def layer_files(
    chunks: Iterator[bytes],
    skip: Callable[[str], bool] = lambda name: False,
    done: Callable[[], bool] = lambda: False,
    described: Callable[[str, bytes], None] = lambda name, description: None,
) -> Iterator[tuple[str, str, BinaryIO]]:
    """Walk a `docker save` tar (legacy `<id>/layer.tar` or OCI `blobs/sha256/…`): every member that
    is itself a tar is a layer; yield (layer, path, open file) for each of its non-empty regular
    files, whatever their size. Read each file before asking for the next (the export is one
    stream). A legacy layer's `<id>/json` comes before its `layer.tar` (the export is written in
    name order) and is handed to `described`. Members for which `skip(name)` is true are passed over
    unparsed; once `done()` is true after a layer, the rest is not read."""
    import tarfile

    # A large buffer: passing over a skipped layer is then a few hundred reads, not tens of
    # thousands.
    reader = io.BufferedReader(_ChunkReader(chunks), 1 << 20)
    with tarfile.open(fileobj=reader, mode="r|", bufsize=1 << 20) as outer:
        for member in outer:
            if member.isfile() and member.name.endswith("/json") and member.size <= 1 << 20:
                description = outer.extractfile(member)
                if description is not None:
                    described(member.name.removesuffix("/json"), description.read())
                continue
            if (
                not member.isfile()
                or member.size < 1024
                or member.name.endswith((".json", "repositories"))
            ):
                # a layer tar is at least two 512-byte blocks; manifests and configs are JSON
                continue
            if skip(member.name):
                continue
            layer = _open_layer(outer.extractfile(member), member.name)
            if layer is None:
                continue  # an OCI config or manifest blob, not a layer
            with layer:
                for entry in layer:
                    if not entry.isfile() or entry.size == 0:
                        continue
                    content = layer.extractfile(entry)
                    if content is not None:
                        yield member.name, "/" + entry.name.removeprefix("./").lstrip("/"), content
            if done():
                return
