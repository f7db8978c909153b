"""Where gcpfargate keeps what it can compute again: the user's cache directory.

Nothing in it is needed for correctness: a missing, unreadable, damaged or unsigned entry means
"compute it again" (the layer scan's record of clean layers, image/layer_scan.py; the build
context's, image/context_scan.py; botocore's parsed data files, clients/botocore_data.py).

Some entries decide what the key guard skips, so whoever can write them could let a key through.
Two defences:
- Every entry is signed with an HMAC-SHA256 keyed by a 32-byte secret kept outside the cache
  directory, in `$XDG_STATE_HOME/gcpfargate/cache-secret` (default `~/.local/state`), mode 0600 and
  owned by the user: a forger who can write the cache (a CI cache restore, a shared
  `XDG_CACHE_HOME`) cannot recompute the signature. A secret file that is not the user's, is
  readable by others or lies inside the cache directory is not used, and then nothing is cached.
- A cache directory (and each one below it that holds entries) must be the user's and writable by
  no one else; one created here is 0700. One that is the user's but writable by group or others is
  emptied of its entries and made 0700 (rebuilt); one that is not the user's is not used.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import os
import stat
import tempfile
from pathlib import Path

SECRET_BYTES = 32


def cache_dir() -> Path:
    """The user's cache directory for gcpfargate (XDG Base Directory: a relative value is
    ignored)."""
    return _xdg("XDG_CACHE_HOME", ".cache")


def state_dir() -> Path:
    """Where the cache's signing secret lives: the XDG state directory, never the cache's."""
    return _xdg("XDG_STATE_HOME", ".local/state")


def _xdg(variable: str, default: str) -> Path:
    base = os.environ.get(variable, "")
    root = Path(base) if base and os.path.isabs(base) else Path.home() / default
    return root / "gcpfargate"


def _owned_private(path: Path, rebuild: bool) -> bool:
    """`path` is (or is made) a directory of this user that no one else may write. With `rebuild`,
    one of ours that others could write is emptied of its files and made 0700."""
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        info = os.lstat(path)
    except OSError:
        return False
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid():
        return False
    if info.st_mode & 0o022:
        if not rebuild:
            return False
        try:
            for entry in os.scandir(path):
                if entry.is_file(follow_symlinks=False) or entry.is_symlink():
                    os.unlink(entry.path)
            os.chmod(path, 0o700)
        except OSError:
            return False
    return True


def _usable_directory(directory: Path) -> bool:
    """`directory` and, when it is inside the cache directory, each directory down to it."""
    root = cache_dir()
    chain = [directory]
    if root in directory.parents:
        below = [each for each in reversed(directory.parents) if root in each.parents]
        chain = [root, *below, directory]
    return all(_owned_private(each, rebuild=True) for each in chain)


def _secret() -> bytes | None:
    """The signing secret, made on first use; None when it cannot be trusted or made."""
    directory = state_dir()
    cache = cache_dir()
    if directory == cache or cache in directory.parents:
        return None
    if not _owned_private(directory, rebuild=False):
        return None
    path = directory / "cache-secret"
    for _ in range(2):
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        except FileNotFoundError:
            _make_secret(path)
            continue
        except OSError:
            return None
        with os.fdopen(fd, "rb") as handle:
            info = os.fstat(handle.fileno())
            if not stat.S_ISREG(info.st_mode) or info.st_uid != os.getuid() or info.st_mode & 0o077:
                return None
            data = handle.read(SECRET_BYTES + 1)
        return data if len(data) == SECRET_BYTES else None
    return None


def _make_secret(path: Path) -> None:
    """Write a new secret aside and link it into place: never half a secret, and the first of two
    concurrent processes wins."""
    temporary = ""
    try:
        handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")  # 0600
        with os.fdopen(handle, "wb") as out:
            out.write(os.urandom(SECRET_BYTES))
        with contextlib.suppress(FileExistsError):
            os.link(temporary, path)
    except OSError:
        pass
    finally:
        if temporary:
            with contextlib.suppress(OSError):
                os.unlink(temporary)


def sign(content: bytes) -> bytes | None:
    """The HMAC-SHA256 of `content` under the cache secret; None when there is no usable secret
    (then nothing may be cached, and nothing cached is trusted)."""
    secret = _secret()
    if secret is None:
        return None
    return hmac.new(secret, content, hashlib.sha256).digest()


def sign_text(content: str) -> str | None:
    """`sign` for a text record, as hex."""
    signature = sign(content.encode("utf-8", "surrogateescape"))
    return signature.hex() if signature is not None else None


def signed(content: bytes, signature: bytes) -> bool:
    expected = sign(content)
    return expected is not None and hmac.compare_digest(expected, signature)


def signed_text(content: str, signature: object) -> bool:
    expected = sign_text(content)
    return (
        expected is not None
        and isinstance(signature, str)
        and hmac.compare_digest(expected.encode(), signature.encode("utf-8", "replace"))
    )


def read_entry(path: Path) -> bytes | None:
    """An entry's bytes, when its directory is one the user alone may write; else None."""
    if not _usable_directory(path.parent):
        return None
    try:
        return path.read_bytes()
    except OSError:
        return None


def write_entry(path: Path, content: bytes) -> None:
    """Write `path` aside, then rename it into place: a concurrent reader sees the old entry or the
    new one, never half of one. Best effort: a cache that cannot be written only costs
    recomputing."""
    temporary = ""
    try:
        if not _usable_directory(path.parent):
            return
        handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        with os.fdopen(handle, "wb") as out:
            out.write(content)
        os.replace(temporary, path)
        temporary = ""
    except OSError:
        pass
    finally:
        if temporary:
            with contextlib.suppress(OSError):
                os.unlink(temporary)


def load_record(path: Path, key: list[object]) -> object:
    """The value of the signed record at `path` when it was saved for exactly `key` (what the value
    was computed from); None when it is missing, damaged, unsigned or for another key."""
    raw = read_entry(path)
    if raw is None:
        return None
    try:
        data = json.loads(raw)
        value = data["value"]
        if data["key"] != key or not signed_text(_record_body(key, value), data["checksum"]):
            return None
    except (ValueError, TypeError, KeyError):
        return None
    return value


def save_record(path: Path, key: list[object], value: object) -> None:
    """Record `value` as computed from `key`, signed (nothing is saved without a signing
    secret)."""
    checksum = sign_text(_record_body(key, value))
    if checksum is not None:
        write_entry(path, json.dumps({"key": key, "value": value, "checksum": checksum}).encode())


def _record_body(key: list[object], value: object) -> str:
    return json.dumps([key, value], separators=(",", ":"))
