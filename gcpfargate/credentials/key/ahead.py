"""Key mode's IAM reads sent ahead (clients/google/ahead.py): the service account, and the key
its secret held when this machine last deployed it.

Which key the secret holds is known only once Secrets Manager answers, later; the child reads the
key recorded after the last deploy from this project's secret, and the adapter takes that answer
only when the secret still holds the same key of the same account (anything else is asked again,
so the record decides nothing). The record is a key id, never key material, kept like every cache
entry (signed, cache.py).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING

from gcpfargate.core.context import Context
from gcpfargate.errors import GcpfargateError

if TYPE_CHECKING:
    from gcpfargate.clients.google.ahead import IamAhead
    from gcpfargate.core.forked import Forked


def start(ctx: Context, after: Forked | None = None) -> IamAhead | None:
    """The reads started in a child that waits for `go()`, or None (see core/forked.py)."""
    from gcpfargate.cache import load_record
    from gcpfargate.clients.google.ahead import IamAhead

    gcp = ctx.settings.gcp
    path, key = _record(ctx)
    held = load_record(path, key)
    known = (
        {"email": str(held["email"]), "key_id": str(held["key_id"])}
        if isinstance(held, dict) and {"email", "key_id"} <= set(held)
        else None
    )
    ahead = IamAhead.start(
        gcp.transport, gcp.universe_domain, gcp.project, gcp.service_account, known, after
    )
    if ahead is None:
        return None
    try:
        ctx.iam.read_ahead_from(ahead)
    except GcpfargateError:  # the adapter cannot be made: bootstrap says why, in its step
        ahead.close()
        return None
    return ahead


def remember(ctx: Context, email: str, key_id: str) -> None:
    """Record the key the secret holds now, for the next deploy's reads ahead (unchanged: no
    write)."""
    from gcpfargate.cache import load_record, save_record

    path, key = _record(ctx)
    held = {"email": email, "key_id": key_id}
    if load_record(path, key) != held:
        save_record(path, key, held)


def _record(ctx: Context) -> tuple[Path, list[object]]:
    from gcpfargate.cache import cache_dir

    settings = ctx.settings
    key: list[object] = [
        "iam-key",
        settings.aws.region,
        settings.aws.profile,
        settings.secret_name,
        settings.gcp.project,
        settings.gcp.service_account,
    ]
    name = hashlib.sha256(json.dumps(key).encode()).hexdigest()[:32]
    return cache_dir() / "iam-keys" / f"{name}.json", key
