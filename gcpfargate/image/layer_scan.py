"""The image half of push-image's key guard: each layer is read once, ever.

A layer is identified by its diff ID (the digest of its uncompressed content, which the engine
computes and reports in `RootFS.Layers`). A layer scanned clean is written to a small cache under
the user's cache directory ($XDG_CACHE_HOME or ~/.cache, then gcpfargate/), and a later push of an
image that holds it does not read it again: after an app-only change only the app layer is read,
and an image made only of known layers is not read at all.

- The cache is keyed by `RULES_VERSION`, gcpfargate/keymaterial/keyscan.py's: a change to what the
  guard looks for bumps it there, and every layer is scanned again.
- It fails closed: a missing, unreadable, truncated or tampered-with cache (its checksum does not
  match) counts as empty, so every layer is scanned. Only layers in which nothing was found are
  recorded; a layer with a key (even one let through by --allow-embedded-credentials) never is.
- Reading: the layers to scan are read from the engine's own storage when it is on this machine
  and readable (clients/engine/layers.py says why and how it is checked); otherwise the engine's
  export is streamed, passing over layers it names by a known diff ID (or, in the legacy layout,
  by a v1 ID computed from one) and stopping once every unknown layer was read. Both hand every
  non-empty regular file, whatever its size, to the rule as an open file that it reads in chunks
  (with an overlap, keyscan.py), one file at a time, so memory stays flat. From the engine's
  storage, new layers of 64 MiB or more in all are searched by two processes (scan_worker.py).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from gcpfargate.cache import cache_dir, read_entry, sign_text, signed_text, write_entry
from gcpfargate.errors import DockerError
from gcpfargate.keymaterial import keyscan

if TYPE_CHECKING:
    from gcpfargate.clients.engine.docker import DockerEngine

# The guard's rule set (keyscan.py): layers recorded under another version are scanned again.
RULES_VERSION = keyscan.RULES_VERSION
# Enough for the layers of many images; the oldest entries go first.
MAX_CACHED_LAYERS = 5000
_DIFF_ID = re.compile(r"sha256:[0-9a-f]{64}")


class CleanLayers:
    """The diff IDs of layers scanned clean under `RULES_VERSION`, in a JSON file with a
    checksum."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path or cache_dir() / f"clean-layers-v{RULES_VERSION}.json"

    @staticmethod
    def _body(layers: list[str]) -> str:
        return f"clean-layers\n{RULES_VERSION}\n{chr(10).join(layers)}"

    @classmethod
    def _checksum(cls, layers: list[str]) -> str | None:
        """The record's HMAC under the cache secret (gcpfargate/cache.py): a forger who can write
        the cache cannot recompute it."""
        return sign_text(cls._body(layers))

    def load(self) -> list[str]:
        """The recorded layers, oldest first; [] for anything but an intact file of this version."""
        try:
            raw = read_entry(self.path)
            if raw is None:
                return []
            data = json.loads(raw)
            layers = data["layers"]
            if (
                data["rules"] != RULES_VERSION
                or not isinstance(layers, list)
                or not all(isinstance(each, str) and _DIFF_ID.fullmatch(each) for each in layers)
                or not signed_text(self._body(layers), data["checksum"])
            ):
                return []
            return layers
        except (OSError, ValueError, TypeError, KeyError):
            return []

    def add(self, diff_ids: Iterable[str]) -> None:
        """Record layers as clean. Best effort: a cache that cannot be written only costs a
        rescan."""
        new = [each for each in diff_ids if _DIFF_ID.fullmatch(each)]
        if not new:
            return
        layers = [each for each in self.load() if each not in new] + list(dict.fromkeys(new))
        layers = layers[-MAX_CACHED_LAYERS:]
        signature = self._checksum(layers)
        if signature is None:
            return  # no usable signing secret: nothing is cached
        body = json.dumps({"rules": RULES_VERSION, "layers": layers, "checksum": signature})
        write_entry(self.path, body.encode())


@dataclass
class LayerScan:
    found: list[str] = field(default_factory=list)  # paths in the image of key-like files
    layers: int = 0  # layers in the image
    read: list[str] = field(
        default_factory=list
    )  # layers whose content was read (diff ID or export name)
    exported: bool = False  # whether the engine's export was streamed


def scan_layers(
    engine: DockerEngine,
    image: str,
    is_key: Callable[[BinaryIO], bool],
    cache: CleanLayers | None = None,
    local_storage: bool = True,
    is_named: Callable[[str], bool] = lambda path: False,
    export: bool = True,
) -> LayerScan:
    """Search the layers of `image` not yet known to be clean for key-like files (see the module
    docstring); `is_key` reads one open file in chunks, and a file `is_named` picks by its path
    counts without being read. `local_storage=False` forces the export; `export=False` reads only
    what the engine's storage holds readable here (the rest stays unread, and unrecorded)."""
    from gcpfargate.clients.engine.layers import local_layer_dirs

    cache = cache or CleanLayers()
    inspected = engine.inspect(image)
    if inspected is None:
        raise DockerError(f"image {image} is not in the Docker engine", "Build it first")
    diff_ids = list((inspected.get("RootFS") or {}).get("Layers") or [])
    known = set(cache.load())
    pending = [each for each in dict.fromkeys(diff_ids) if each not in known]
    scan = LayerScan(layers=len(diff_ids))
    clean: list[str] = []
    dirs = local_layer_dirs(engine.host, inspected) if pending and local_storage else None
    for diff_id, hits in _scan_dirs(dirs or {}, pending, is_key, is_named):
        scan.read.append(diff_id)
        pending.remove(diff_id)
        scan.found.extend(each for each in hits if each not in scan.found)
        if not hits:
            clean.append(diff_id)
    if export and (
        pending or not diff_ids
    ):  # an engine that names no layers gets the whole export read: fail closed
        _scan_export(
            engine, image, is_key, diff_ids, known | set(clean), pending, scan, clean, is_named
        )
    cache.add(clean)
    return scan


def _scan_dirs(
    layer_dirs: dict[str, Path],
    pending: list[str],
    is_key: Callable[[BinaryIO], bool],
    is_named: Callable[[str], bool],
) -> list[tuple[str, list[str]]]:
    """(diff ID, paths with key material) of the pending layers read from the engine's storage, in
    order, up to the first one that could not be read whole (a file we may not read could hold a
    key: the export reads it and the rest). The files of all of them are searched together, big
    ones on two cores (image/scan_worker.py)."""
    from gcpfargate.clients.engine.layers import dir_listing
    from gcpfargate.image.scan_worker import scan_files

    listed: list[tuple[str, list[tuple[str, str, int]]]] = []
    for diff_id in pending if layer_dirs else []:
        try:
            listed.append((diff_id, dir_listing(layer_dirs[diff_id])))
        except OSError:
            break
    files = [each for _, layer in listed for each in layer]
    answers = iter(scan_files(files, is_key, is_named))
    read: list[tuple[str, list[str]]] = []
    for diff_id, layer in listed:
        found = [(inside, next(answers)) for inside, _, _ in layer]
        if any(answer is None for _, answer in found):
            break
        read.append((diff_id, [inside for inside, answer in found if answer]))
    return read


def _scan_export(
    engine: DockerEngine,
    image: str,
    is_key: Callable[[BinaryIO], bool],
    diff_ids: list[str],
    known: set[str],
    pending: list[str],
    scan: LayerScan,
    clean: list[str],
    is_named: Callable[[str], bool] = lambda path: False,
) -> None:
    """Stream the engine's export, passing over layers it names as a known diff ID and stopping once
    every pending layer was read. The OCI layout names uncompressed layers by diff ID; the legacy
    layout by v1 IDs, which are told apart by the `<v1 id>/json` that precedes each layer
    (clients/image_tar.legacy_chain_id). A layer not named either way is read. With nothing
    found, every pending layer is clean."""
    from gcpfargate.clients.engine.image_tar import legacy_chain_id
    from gcpfargate.clients.engine.layers import chain_ids

    scan.exported = True
    chains = chain_ids(diff_ids)
    by_chain = dict(zip(chains, diff_ids, strict=True))
    legacy: dict[str, str] = {}  # `<v1 id>/layer.tar` -> diff ID
    unread = set(pending)
    hits = 0

    def described(directory: str, description: bytes) -> None:
        chain = legacy_chain_id(description, chains)
        if chain is not None:
            legacy[f"{directory}/layer.tar"] = by_chain[chain]

    def skip(name: str) -> bool:
        diff_id = legacy.get(name) or (
            "sha256:" + name.removeprefix("blobs/sha256/")
            if name.startswith("blobs/sha256/")
            else None
        )
        if diff_id in known:
            return True
        unread.discard(diff_id or "")
        scan.read.append(name)
        return False

    def done() -> bool:
        return bool(pending) and not unread

    for _layer, path, content in engine.image_files(image, skip, done, described):
        if is_named(path) or is_key(content):
            hits += 1
            if path not in scan.found:
                scan.found.append(path)
    if not hits:
        clean.extend(pending)
