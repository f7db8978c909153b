"""botocore's data files, parsed once and kept in gcpfargate's cache directory.

Every client botocore makes parses its service's JSON model and endpoint rules, and the first one
also endpoints.json (1.2 MB) and partitions.json: about a tenth of a no-op deploy's CPU, paid again
by every command. `CachedFileLoader` (botocore's loader takes a file loader for exactly this) keeps
each parsed file as `marshal` data, several times faster to read than JSON, and reads that while the
file's path, size and mtime, botocore's and Python's versions are what they were (an upgrade
rewrites the files). An entry carries an HMAC of its content under the cache secret
(gcpfargate/cache.py), so one written by anyone else is not read: an entry that is missing, damaged,
unsigned, stale or unwritable only means parsing the JSON, as botocore would. Only botocore's own
public data is kept, and never what decides where requests go: endpoints.json, partitions.json and
each service's endpoint rule set are always parsed from botocore's own files (a forged rule set
could send a request, key and all, to any host).

Plain dicts where botocore would build OrderedDicts: dicts keep insertion order, which is all
botocore's model code relies on (it builds its own OrderedDicts from them).
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import json
import marshal
import os
import stat
import sys
from pathlib import Path
from typing import Any

import botocore
from botocore.loaders import JSONFileLoader

from gcpfargate.cache import cache_dir, read_entry, sign, signed, write_entry

_MAGIC = b"gcpfargate botocore data 2\n"
# Data files that decide where requests go: never cached (see the module docstring).
NEVER_CACHED = frozenset({"endpoints", "partitions", "endpoint-rule-set-1"})
_DIGEST = hashlib.sha256().digest_size
# botocore's own order: the plain file first, then the compressed one (botocore/loaders.py).
_OPENERS: tuple[tuple[str, Any], ...] = ((".json", open), (".json.gz", gzip.open))


class CachedFileLoader(JSONFileLoader):
    def __init__(self, directory: Path | None = None) -> None:
        self.directory = directory or cache_dir() / "botocore-data"
        self.parsed = 0  # cacheable files parsed from JSON by this loader (the tests count them)

    def load_file(self, file_path: str) -> Any:
        """The data of `file_path` + .json or .json.gz, as botocore's JSONFileLoader.load_file; None
        if neither."""
        if os.path.basename(file_path) in NEVER_CACHED:
            return super().load_file(file_path)  # not counted in `parsed`: never cacheable
        for extension, opener in _OPENERS:
            path = file_path + extension
            try:
                info = os.stat(path)
            except OSError:
                continue
            if not stat.S_ISREG(info.st_mode):
                continue
            key = (
                path,
                info.st_size,
                info.st_mtime_ns,
                botocore.__version__,
                sys.version,
                marshal.version,
            )
            entry = self.directory / (
                hashlib.sha256(path.encode("utf-8", "surrogateescape")).hexdigest()[:32]
                + ".marshal"
            )
            data = _read(entry, key)
            if data is not None:
                return data
            with opener(path, "rb") as handle:
                data = json.loads(handle.read().decode("utf-8"))
            self.parsed += 1
            _write(entry, key, data)
            return data
        return None


def use_cached_files(session: Any) -> None:
    """Make botocore `session` (boto3's `Session._session`) read its data files, and its list of
    services, through the cache."""
    loader = session.get_component("data_loader")
    loader.file_loader = CachedFileLoader()
    listing = loader.list_available_services
    # botocore checks each model it loads (service-2, the endpoint rules, the paginators) against
    # the list of every service that has one: ~420 directories listed and stat'ed, about 35 ms per
    # kind and process, to answer "is `ecs` there". The list is kept per kind, for the search
    # paths as they are: each one's path and mtime (a directory of models added to
    # ~/.aws/models changes it) and botocore's version (an upgrade rewrites botocore's own).
    known: dict[str, list[str]] = {}

    def list_available_services(type_name: str) -> list[str]:
        if type_name not in known:
            known[type_name] = _services(loader, loader.file_loader.directory, type_name, listing)
        return list(known[type_name])

    loader.list_available_services = list_available_services


def _services(loader: Any, directory: Path, type_name: str, listing: Any) -> list[str]:
    # The directories botocore would list (it passes over a search path that is not one).
    places: list[tuple[str, int]] = []
    for path in loader.search_paths:
        with contextlib.suppress(OSError):
            info = os.stat(path)
            if stat.S_ISDIR(info.st_mode):
                places.append((path, info.st_mtime_ns))
    key = ("services", type_name, tuple(places), botocore.__version__, sys.version)
    entry = directory / (hashlib.sha256(repr(key[:2]).encode()).hexdigest()[:32] + ".marshal")
    services = _read(entry, key)
    if services is None:
        services = listing(type_name)
        _write(entry, key, services)
    return list(services)


def _read(entry: Path, key: tuple[Any, ...]) -> Any:
    blob = read_entry(entry)
    if blob is None:
        return None
    head, digest, payload = (
        blob[: len(_MAGIC)],
        blob[len(_MAGIC) : len(_MAGIC) + _DIGEST],
        blob[len(_MAGIC) + _DIGEST :],
    )
    if head != _MAGIC or not signed(payload, digest):
        return None
    try:
        stored_key, data = marshal.loads(payload)
    except (EOFError, ValueError, TypeError):
        return None
    return data if stored_key == key else None


def _write(entry: Path, key: tuple[Any, ...], data: Any) -> None:
    try:
        payload = marshal.dumps((key, data))
    except ValueError:  # not marshallable: never for JSON data, and then only the parse is repeated
        return
    signature = sign(payload)
    if signature is not None:  # no usable signing secret: nothing is cached
        write_entry(entry, _MAGIC + signature + payload)
