"""push-image's key guard: where it looks. What counts as a key is
gcpfargate/keymaterial/keyscan.py's business.

Before a build: every `image.build_args` value (build arguments end up in the image's history and,
through `ENV`, in its config). Before a push: every file of the build context (after
`.dockerignore`; files searched clean before and unchanged since are passed over,
image/context_scan.py), every file of every layer of the built image (a file deleted by a later
layer is still in the image; Google credential files other than keys too, and `gha-creds-*.json` by
name), and the image config: `Env`, `Labels`, every other string of it, and each
history step's `created_by` (the classic builder records `ARG` values there). Files are streamed
whole, whatever their size.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gcpfargate.errors import ConfigError
from gcpfargate.image import context_scan
from gcpfargate.keymaterial.keyscan import (
    credential_file_name,
    has_key,
    key_paths,
    stream_has_secret,
)

if TYPE_CHECKING:
    from gcpfargate.clients.engine.docker import DockerEngine


def check_build_args(build_args: Mapping[str, str]) -> None:
    """Refuse a build argument that holds a key, before anything is built: its value would be in
    the image's history (and its config, through ENV) for anyone who pulls the image."""
    bad = sorted(name for name, value in build_args.items() if has_key(str(value)))
    if bad:
        raise ConfigError(
            f"image.build_args {', '.join(bad)} hold{'s' if len(bad) == 1 else ''} what looks like "
            "a private key; build arguments are recorded in the image for anyone who pulls it",
            "Remove it: the key reaches the task at start through Secrets Manager (a build "
            "that really needs a secret takes it as a build secret: [image.secrets] and "
            "RUN --mount=type=secret)",
        )


def scan_context(
    context: Path, dockerfile: str, record: context_scan.CleanFiles | None = None
) -> list[str]:
    """Paths (relative to the context) of files holding key material that the build would send."""
    patterns: list[str] = []
    ignore = context / ".dockerignore"
    if ignore.is_file():
        # The same reading of .dockerignore as the docker SDK's build.
        lines = ignore.read_text(encoding="utf-8", errors="replace").splitlines()
        patterns = [
            line.strip() for line in lines if line.strip() and not line.strip().startswith("#")
        ]
    try:
        if patterns:
            # The docker SDK only here: importing it costs a quarter of a second, and deploy runs
            # this search in a child of its own (image/scan_ahead.py) that needs nothing else of it.
            from gcpfargate.clients.engine.sdk import docker_sdk

            docker_sdk()
            from docker.utils.build import exclude_paths

            paths = sorted(exclude_paths(str(context), patterns, dockerfile))
        else:
            paths = sorted(every_path(str(context)))
    except OSError as exc:
        raise ConfigError(
            f"cannot read build context {context}: {exc.strerror or type(exc).__name__}"
            f"{f' ({exc.filename})' if exc.filename else ''}",
            "Set image.context to the project's directory (the one with the Dockerfile)",
        ) from None
    # Files searched clean before and unchanged since are not read again (image/context_scan.py).
    return context_scan.scan_files(
        context, paths, stream_has_secret, record, is_named=credential_file_name
    ).found


def every_path(root: str) -> Iterator[str]:
    """What the docker SDK's `exclude_paths` gives for a context without .dockerignore patterns
    (its only patterns then re-include the Dockerfile and .dockerignore, so nothing is left out):
    every file and directory, relative to `root`, descending into directories but not into
    symlinks to them. The same walk in a third of the time: its pattern matcher costs ~35 us per
    path, most of a no-op context search of 10,000 files (docs/bench.md)."""
    pending = [""]
    while pending:
        relative = pending.pop()
        with os.scandir(os.path.join(root, relative)) as entries:
            for entry in entries:
                path = os.path.join(relative, entry.name)
                yield path
                if entry.is_dir(follow_symlinks=False):
                    pending.append(path)


def scan_image_files(engine: DockerEngine, image: str, export: bool = True) -> list[str]:
    """Paths inside the image (any layer, even if a later layer deletes them) holding key material.
    Layers scanned clean under this `RULES_VERSION` are not read again (image/layer_scan.py)."""
    from gcpfargate.image.layer_scan import scan_layers

    # Every file counts (a PEM block can be in any file), streamed in chunks whatever its size.
    return scan_layers(
        engine, image, stream_has_secret, is_named=credential_file_name, export=export
    ).found


def scan_image_config(engine: DockerEngine, image: str) -> list[str]:
    """Where the image config holds key material: `config Env GOOGLE_CREDENTIALS`, `config Labels
    x`, `history step 3`, or the JSON path of any other string of the config."""
    inspected = engine.inspect(image) or {}
    config: dict[str, Any] = dict(inspected.get("Config") or {})
    found = []
    for entry in config.pop("Env", None) or []:
        name, _, value = str(entry).partition("=")
        if has_key(value) or has_key(name):
            found.append(f"config Env {name if not has_key(name) else '(a variable)'}")
    for name, value in dict(config.pop("Labels", None) or {}).items():
        if has_key(str(value)) or has_key(str(name)):
            found.append(f"config Labels {name if not has_key(str(name)) else '(a label)'}")
    found.extend(f"config {path}" for path in key_paths(config))
    history = engine.history(image)
    # `docker history` lists the newest step first; number them as the Dockerfile does.
    for number, step in enumerate(reversed(history), start=1):
        if has_key(str(step.get("CreatedBy") or "")) or has_key(str(step.get("Comment") or "")):
            found.append(f"history step {number}")
    return found
