"""The build context's key search, started in a forked child (core/forked.py) as soon as `deploy`
knows the context: it runs on the other core while this process imports the SDKs and asks AWS and
GCP.

The search is Python work (a walk, a `stat` per file, reading what changed): in a thread it would
hold the GIL against those imports, and the build waits for it. The child runs
`guard.scan_context`, the very function push-image would run, and answers with the context-relative
paths of the files holding key material (paths only: no content crosses the pipe). push-image takes
that answer only for the same context and Dockerfile; otherwise, or without an answer, it searches
the context itself, so the guard never depends on the child.
"""

from __future__ import annotations

from pathlib import Path

from gcpfargate.core.forked import Forked


class ScanAhead:
    """One context search running in a forked child."""

    def __init__(self, context: Path, dockerfile: str, child: Forked) -> None:
        self.context = context
        self.dockerfile = dockerfile
        self.child = child

    @classmethod
    def start(cls, context: Path, dockerfile: str) -> ScanAhead | None:
        """The search started, or None where it would not help or cannot start."""
        child = Forked.start(_search, str(context), dockerfile)
        return cls(context, dockerfile, child) if child is not None else None

    def found(self, context: Path, dockerfile: str) -> list[str] | None:
        """The child's answer for this context and Dockerfile, or None: search it here."""
        found = self.child.answer()
        if (context, dockerfile) != (self.context, self.dockerfile):
            return None
        if not isinstance(found, list) or not all(isinstance(each, str) for each in found):
            return None
        return found

    def close(self) -> None:
        """A deploy that stopped before push-image took the answer: the child is not left
        running."""
        self.child.close()


def _search(context: str, dockerfile: str) -> list[str]:
    from gcpfargate.image.guard import scan_context

    return scan_context(Path(context), dockerfile)
