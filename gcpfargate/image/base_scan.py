"""The layers of the image a build starts FROM, searched while the build runs.

push-image searches every layer of the built image not yet recorded clean (image/layer_scan.py)
after the build and before the push, so on a project's first deploy the base image's layers (often
most of the image's bytes) are read while nothing else happens. They are on this machine before the
build starts: `deploy` searches them on the side while the engine builds, and the search after the
build finds them recorded and reads only the layers the build made.

Only an optimisation, and one that cannot let anything through: a layer is recorded only when it
was read and found clean, exactly as the search after the build would record it, and that search
still decides (a base layer holding a key is not recorded, so it is read again and refused there).
A Dockerfile whose final stage's base is not a plain name already in the engine (`scratch`, a
`$VARIABLE`, an image the build will pull), and an engine whose storage cannot be read here (a
remote engine, another store: its export would cost the engine a full write-out of the base), are
left to the search after the build.
"""

from __future__ import annotations

from pathlib import Path

from gcpfargate.core.context import Context


def final_base(dockerfile: str) -> str | None:
    """The image the final stage starts FROM, following stage names (`FROM build AS app`, then
    `FROM app`); None when it is not a plain image name."""
    stages: dict[str, str] = {}
    base: str | None = None
    for instruction in _instructions(dockerfile):
        words = instruction.split()
        if not words or words[0].upper() != "FROM":
            continue
        args = [word for word in words[1:] if not word.startswith("--")]
        if not args:
            continue
        base = stages.get(args[0].lower(), args[0])
        if len(args) >= 3 and args[1].upper() == "AS":
            stages[args[2].lower()] = base
    if base is None or "$" in base or base.lower() == "scratch":
        return None
    return base


def _instructions(text: str) -> list[str]:
    """Instructions with their continuation lines joined (comments and blank lines dropped)."""
    joined: list[str] = []
    pending = ""
    for line in text.splitlines():
        stripped = line.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        joined.append(pending + stripped)
        pending = ""
    if pending:
        joined.append(pending)
    return joined


def prescan_base(ctx: Context, context: Path, dockerfile: str) -> None:
    """Search the final stage's base image's layers, recording the clean ones (module docstring).
    Never raises: whatever goes wrong, the search after the build reads them."""
    try:
        path = Path(dockerfile)
        text = (path if path.is_absolute() else context / path).read_text(
            encoding="utf-8", errors="replace"
        )
        base = final_base(text)
        if base is None:
            return
        from gcpfargate.image.guard import scan_image_files

        # From the engine's storage only: an export (a remote engine, another store) would have the
        # engine write out the whole base image beside the build, for a search it makes anyway.
        scan_image_files(ctx.docker, base, export=False)  # DockerError: not in the engine (yet)
    except Exception:  # only an optimisation: the search after the build decides
        return
