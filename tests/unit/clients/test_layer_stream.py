"""Image layers' files are searched end to end whatever their size, in chunks (issue 18): a key
straddling a chunk boundary deep inside a file larger than the old 256 MiB cap is found, from the
engine's storage (a sparse file) and from the export (a generated stream), with flat memory. With
an overlap of one byte instead of keyscan.OVERLAP, neither is found (checked by hand)."""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from pathlib import Path

from gcpfargate.clients.engine.image_tar import layer_files
from gcpfargate.keymaterial.keyscan import CHUNK, MAX_EXPANDED, stream_has_key
from tests.conftest import ROOT
from tests.unit.helpers import pem

SIZE = MAX_EXPANDED + 4 * CHUNK  # past the old per-file cap (files above it were not read at all)
AT = SIZE - 3 * CHUNK - 7  # a CHUNK boundary cuts the BEGIN marker: only the overlap sees it whole


def planted() -> bytes:
    key = pem().encode()
    assert key.startswith(
        b"-----BEGIN "
    )  # 7 bytes before the boundary: "-----BE", the rest after it
    return key


def sparse_file(path: Path, key: bytes | None) -> None:
    """SIZE bytes that cost no disk: a hole, then the key (if any) near the end."""
    with path.open("wb") as handle:
        handle.truncate(SIZE)
        if key is not None:
            handle.seek(AT)
            handle.write(key)


def export_stream(key: bytes) -> Iterator[bytes]:
    """A `docker save` (OCI layout) holding one layer with one SIZE-byte file, generated in CHUNK
    pieces: nothing of that size is ever in memory or on disk."""
    inner = tarfile.TarInfo("opt/model.bin")
    inner.size = SIZE
    inner_header = inner.tobuf(format=tarfile.PAX_FORMAT)
    inner_pad = (
        b"\0" * (-SIZE % 512) + b"\0" * 1024
    )  # the member's padding, then the end-of-archive
    outer = tarfile.TarInfo("blobs/sha256/" + "e" * 64)
    outer.size = len(inner_header) + SIZE + len(inner_pad)
    yield outer.tobuf(format=tarfile.PAX_FORMAT) + inner_header
    written = 0
    while written < SIZE:
        chunk = bytearray(min(CHUNK, SIZE - written))
        start, end = max(AT, written), min(AT + len(key), written + len(chunk))
        if start < end:
            chunk[start - written : end - written] = key[start - AT : end - AT]
        yield bytes(chunk)
        written += len(chunk)
    yield inner_pad + b"\0" * (-outer.size % 512) + b"\0" * 1024


def test_a_key_across_a_chunk_boundary_in_a_file_past_the_old_cap_is_found_in_the_export() -> None:
    found = [
        (layer, path, stream_has_key(content))
        for layer, path, content in layer_files(export_stream(planted()))
    ]
    assert found == [("blobs/sha256/" + "e" * 64, "/opt/model.bin", True)]


def test_a_key_across_a_chunk_boundary_in_a_file_past_the_old_cap_is_found_in_engine_storage(
    tmp_path: Path,
) -> None:
    """Searched in a separate process, whose peak RSS (a resource figure, not a timing) stays far
    below SIZE and well under the 200 MB a whole deploy may use."""
    layer = tmp_path / "diff"
    (layer / "opt").mkdir(parents=True)
    sparse_file(layer / "opt" / "model.bin", planted())
    (layer / "opt" / "empty").touch()
    # VmHWM, not ru_maxrss: Linux carries ru_maxrss over from the forked parent (pytest) across
    # exec.
    script = (
        "import re, sys; from pathlib import Path; from gcpfargate.clients.engine.layers import "
        "dir_files; from gcpfargate.keymaterial.keyscan import stream_has_key; "
        "found = [(p, stream_has_key(c)) for p, c in dir_files(Path(sys.argv[1]))]; "
        "hwm = re.search(r'VmHWM:\\s*(\\d+)', Path('/proc/self/status').read_text()); "
        "print(found, int(hwm.group(1)) // 1024, sep='|')"
    )
    out = subprocess.run(
        [sys.executable, "-c", script, str(layer)],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    ).stdout
    found, peak_mb = out.strip().split("|")
    assert found == "[('/opt/model.bin', True)]"  # the empty file is not even opened
    assert int(peak_mb) < 100, f"peak RSS {peak_mb} MB"
