"""The tag push-image derives when none is configured: the build context's git commit, or the time.

A dirty work tree gets `<sha>-dirty-<content hash>`: the uncommitted changes
are part of the image, and repositories with immutable tags would refuse a second push of `<sha>`
with other content. The hash covers the diff against HEAD and the untracked files (what
.gitignore does not exclude), below the context only, so the same edits give the same tag.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from datetime import UTC, datetime
from pathlib import Path

_TIMEOUT = 30


def derive_tag(context: Path, now: datetime | None = None) -> str:
    """The short git SHA of the context's HEAD (plus `-dirty-<hash>`) in a git work tree, else a UTC
    timestamp."""
    git = shutil.which("git")
    if git:
        try:
            sha = _git(git, context, "rev-parse", "--short", "HEAD").decode().strip()
            if sha and _git(git, context, "rev-parse", "--is-inside-work-tree").strip() == b"true":
                dirty = _dirty_hash(git, context)
                return f"{sha}-dirty-{dirty}" if dirty else sha
        except (OSError, subprocess.SubprocessError, UnicodeDecodeError):
            pass  # no usable git: fall back to the timestamp
    return (now or datetime.now(UTC)).strftime("%Y%m%d%H%M%S")


def _git(git: str, context: Path, *args: str) -> bytes:
    return subprocess.run(
        [git, "-C", str(context), *args], capture_output=True, check=True, timeout=_TIMEOUT
    ).stdout


def _dirty_hash(git: str, context: Path) -> str:
    """12 hex digits over the uncommitted changes below `context`; "" when there are none."""
    if not _git(git, context, "status", "--porcelain", "--untracked-files=all", "--", ".").strip():
        return ""
    digest = hashlib.sha256(_git(git, context, "diff", "HEAD", "--binary", "--", "."))
    untracked = _git(git, context, "ls-files", "-z", "--others", "--exclude-standard", "--", ".")
    for name in sorted(filter(None, untracked.split(b"\0"))):
        path = context / name.decode("utf-8", "surrogateescape")
        digest.update(b"\0" + name + b"\0")
        if path.is_file() and not path.is_symlink():
            digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()[:12]
