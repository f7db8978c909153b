"""Reading single image layers without exporting the whole image.

`docker save` is the only engine API that hands out layer content, and it hands out every layer
of the image: the engine (its graphdriver store; measured on Docker 20.10) first writes the whole
export to a temporary directory and only then sends the first byte (9 s before the first byte of
a 560 MB image, however little the client reads afterwards). So when the engine keeps its layers on
this machine in overlay2 and we may read them, the layers to scan are read where the engine keeps
them: `<data-root>/overlay2/<cache-id>/diff`, which holds exactly the files of that layer (deleted
files are whiteout devices, not regular files).

The directory of each layer is not guessed: the image's `GraphDriver.Data` names them (UpperDir,
then LowerDir top-down), and each one is checked against the engine's own layer database
(`image/overlay2/layerdb/sha256/<chain id>/{diff,cache-id}`), so a directory is only ever read as
the layer whose diff ID the engine filed it under. Anything unexpected (another storage driver, a
remote engine, no permission, a mismatch) returns None and the caller falls back to the export.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, BinaryIO, cast


def chain_ids(diff_ids: list[str]) -> list[str]:
    """The layer chain IDs of a rootfs (OCI image spec, "Layer ChainID")."""
    chains: list[str] = []
    for diff_id in diff_ids:
        if not chains:
            chains.append(diff_id)
        else:
            chains.append(
                "sha256:" + hashlib.sha256(f"{chains[-1]} {diff_id}".encode()).hexdigest()
            )
    return chains


def local_layer_dirs(docker_host: str, inspected: Mapping[str, Any]) -> dict[str, Path] | None:
    """Diff ID → that layer's directory on this machine, each checked against the engine's layer
    database; None when the layers cannot be read here (the caller then uses the export)."""
    if docker_host and not docker_host.startswith("unix://"):
        return None  # a remote engine: paths it reports are on another machine
    driver = inspected.get("GraphDriver") or {}
    diff_ids = list((inspected.get("RootFS") or {}).get("Layers") or [])
    data = driver.get("Data") or {}
    if driver.get("Name") != "overlay2" or not diff_ids or not data.get("UpperDir"):
        return None
    top_down = [
        data["UpperDir"],
        *[each for each in str(data.get("LowerDir") or "").split(":") if each],
    ]
    if len(top_down) != len(diff_ids):
        return None
    dirs = [Path(each) for each in reversed(top_down)]
    layerdb = dirs[0].parents[2] / "image" / "overlay2" / "layerdb" / "sha256"
    found: dict[str, Path] = {}
    try:
        for diff_id, chain, directory in zip(diff_ids, chain_ids(diff_ids), dirs, strict=True):
            record = layerdb / chain.removeprefix("sha256:")
            if (
                directory.name != "diff"
                or (record / "diff").read_text().strip() != diff_id
                or (record / "cache-id").read_text().strip() != directory.parent.name
                or not directory.is_dir()
            ):
                return None
            found[diff_id] = directory
    except (OSError, UnicodeDecodeError):
        return None
    return found


def dir_listing(top: Path) -> list[tuple[str, str, int]]:
    """(path in the image, path on this machine, size) of every non-empty regular file of one
    layer directory, in `dir_files`' order, without opening any (see `open_file`). An unreadable
    directory raises OSError."""
    root = str(top)
    pending, listed = [root], []
    while pending:
        with os.scandir(pending.pop()) as listing:
            entries = list(listing)
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                pending.append(entry.path)
            elif entry.is_file(follow_symlinks=False):
                size = entry.stat(follow_symlinks=False).st_size
                if size:
                    listed.append((entry.path[len(root) :], entry.path, size))
    return listed


def open_file(path: str) -> BinaryIO:
    """One file of a layer directory, for reading in large chunks: symlinks not followed,
    unbuffered (the rule reads in large chunks, a buffer would only add a copy)."""
    return cast(BinaryIO, os.fdopen(os.open(path, os.O_RDONLY | os.O_NOFOLLOW), "rb", buffering=0))


def dir_files(top: Path) -> Iterator[tuple[str, BinaryIO]]:
    """(path in the image, open file) of every non-empty regular file of one layer directory,
    whatever its size: the caller reads each file (in chunks) before asking for the next one, which
    closes it. Symlinks are not followed. An unreadable directory or file raises OSError: a file
    that cannot be read may hold a key. (scandir and string slicing, not os.walk and relpath: a
    dependency layer has tens of thousands of small files, and per-file overhead was a third of the
    scan.)"""
    for inside, path, _ in dir_listing(top):
        with open_file(path) as content:
            yield inside, content
