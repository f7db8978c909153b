"""The build-context half of push-image's key guard: a file that has not changed is read once.

Every deploy searches every file of the build context before the build sends it to the engine.
With vendored dependencies, wheels or model files in the context that is hundreds of MB read on
every deploy, no-op ones included. So a file searched clean is recorded with what its
`stat` says (device, inode, size, and mtime and ctime in nanoseconds), and a later search passes
over a file whose `stat` is still exactly that. The ctime is the safeguard: no user call sets it,
and every write to the file (and every `utime` that puts an old mtime back) moves it on.

- Racy writes: as with git's index, a file changed again within the timestamp granularity of the
  moment it was read could keep its `stat`. A file is therefore recorded only when its mtime and
  ctime are at least `SETTLED_SECONDS` older than the search; a younger file is read every time
  until it is older than that.
- The record is per context (its real path) and per `RULES_VERSION`
  (gcpfargate/keymaterial/keyscan.py's): new rules read every file again. It fails closed like the
  layer cache: anything but an intact record of this version and context (its checksum) counts as
  empty, so every file is read. Only files in which nothing was found are recorded.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from gcpfargate.cache import cache_dir, read_entry, sign_text, signed_text, write_entry
from gcpfargate.keymaterial.keyscan import RULES_VERSION

SETTLED_SECONDS = 3.0  # above the coarsest timestamps a Linux file system keeps (FAT: 2 s)
MAX_RECORDED = 200_000  # files; a larger context is searched whole each time

Stamp = tuple[int, int, int, int, int]  # st_dev, st_ino, st_size, st_mtime_ns, st_ctime_ns


def stamp_of(info: os.stat_result) -> Stamp:
    return (info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns)


class CleanFiles:
    """The files of one build context searched clean under `RULES_VERSION`, in a JSON file with a
    checksum."""

    def __init__(self, context: Path, path: Path | None = None) -> None:
        self.context = os.path.realpath(context)
        name = hashlib.sha256(self.context.encode("utf-8", "surrogateescape")).hexdigest()[:32]
        self.path = path or cache_dir() / "context-scan" / f"{name}-v{RULES_VERSION}.json"

    def _body(self, files: dict[str, list[int]]) -> str:
        return json.dumps(
            ["context-scan", RULES_VERSION, self.context, files],
            sort_keys=True,
            separators=(",", ":"),
        )

    def _checksum(self, files: dict[str, list[int]]) -> str | None:
        """The record's HMAC under the cache secret (gcpfargate/cache.py): a forger who can write
        the cache cannot recompute it."""
        return sign_text(self._body(files))

    def load(self) -> dict[str, Stamp]:
        """The recorded files and their stamps; {} for anything but an intact record of this version
        and context."""
        try:
            raw = read_entry(self.path)
            if raw is None:
                return {}
            data = json.loads(raw)
            files = data["files"]
            if (
                data["rules"] != RULES_VERSION
                or data["context"] != self.context
                or not isinstance(files, dict)
                or not signed_text(self._body(files), data["checksum"])
            ):
                return {}
            stamps: dict[str, Stamp] = {}
            for name, value in files.items():
                if not (
                    isinstance(value, list)
                    and len(value) == 5
                    and all(type(each) is int for each in value)
                ):
                    return {}
                stamps[name] = (value[0], value[1], value[2], value[3], value[4])
            return stamps
        except (OSError, ValueError, TypeError, KeyError, AttributeError):
            return {}

    def save(self, stamps: dict[str, Stamp]) -> None:
        """Record these files as clean (replacing the record). Best effort: failing only costs
        reading them again."""
        if len(stamps) > MAX_RECORDED:
            return
        files = {name: list(value) for name, value in sorted(stamps.items())}
        signature = self._checksum(files)
        if signature is None:
            return  # no usable signing secret: nothing is cached
        body = json.dumps(
            {
                "rules": RULES_VERSION,
                "context": self.context,
                "files": files,
                "checksum": signature,
            }
        )
        write_entry(self.path, body.encode())


@dataclass
class ContextScan:
    found: list[str] = field(
        default_factory=list
    )  # context-relative paths of files holding key material
    read: int = 0  # files whose content was read (the others were recorded clean and unchanged)


def scan_files(
    context: Path,
    paths: Iterable[str],
    is_key: Callable[[BinaryIO], bool],
    record: CleanFiles | None = None,
    now: Callable[[], float] = time.time,
    is_named: Callable[[str], bool] = lambda relative: False,
) -> ContextScan:
    """Search the regular files `paths` (relative to `context`) not known clean and unchanged;
    record the clean ones. A file `is_named` picks by its path is found without being read."""
    record = record or CleanFiles(context)
    known = record.load()
    settled = int((now() - SETTLED_SECONDS) * 1e9)
    result = ContextScan()
    clean: dict[str, Stamp] = {}
    root = str(context)  # string paths: pathlib's per-file objects cost more than the lstat
    for relative in paths:
        if is_named(relative):
            result.found.append(relative)
            continue
        path = os.path.join(root, relative)
        try:
            info = os.lstat(path)
            if not stat.S_ISREG(info.st_mode):
                # symlinks and the rest: what the build sends of them is not this file's content
                continue
            if known.get(relative) == stamp_of(info):
                clean[relative] = known[relative]
                continue
            with open(path, "rb") as handle:
                opened = os.fstat(
                    handle.fileno()
                )  # the stamp of what is read, not of what was listed
                result.read += 1
                if is_key(handle):
                    result.found.append(relative)
                    continue
            if max(opened.st_mtime_ns, opened.st_ctime_ns) < settled:
                clean[relative] = stamp_of(opened)
        except OSError:
            continue  # unreadable: the build itself will say so
    if clean != known:
        record.save(clean)
    return result
