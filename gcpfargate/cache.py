"""Where gcpfargate keeps what it can compute again: the user's cache directory.

Nothing in it is needed for correctness: a missing, unreadable or damaged entry means "compute it
again" (the layer scan's record of clean layers, core/layer_scan.py; botocore's parsed data files,
clients/botocore_data.py).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path


def cache_dir() -> Path:
    """The user's cache directory for gcpfargate (XDG Base Directory: a relative value is ignored)."""
    base = os.environ.get("XDG_CACHE_HOME", "")
    root = Path(base) if base and os.path.isabs(base) else Path.home() / ".cache"
    return root / "gcpfargate"


def write_entry(path: Path, content: bytes) -> None:
    """Write `path` aside, then rename it into place: a concurrent reader sees the old entry or the new
    one, never half of one. Best effort: a cache that cannot be written only costs recomputing."""
    temporary = ""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
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
