"""Where gcpfargate keeps what it can compute again: the user's cache directory.

Nothing in it is needed for correctness: a missing, unreadable or damaged entry means "compute it
again" (the layer scan's record of clean layers, core/layer_scan.py; botocore's parsed data files,
clients/botocore_data.py).
"""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """The user's cache directory for gcpfargate (XDG Base Directory: a relative value is ignored)."""
    base = os.environ.get("XDG_CACHE_HOME", "")
    root = Path(base) if base and os.path.isabs(base) else Path.home() / ".cache"
    return root / "gcpfargate"
