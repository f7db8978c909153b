"""The key lifecycle (Google's guidance: create → roll out → disable → delete), shared by every path
that replaces a key (`rotate-key`, `bootstrap --new-key`, a bootstrap that replaces a dead key).

The rule a user relies on: a task started before rotation N keeps working until rotation N+1.
- A key is *referenced* while a labelled version of any gcpfargate secret of the account holds it:
  AWSCURRENT, AWSPREVIOUS, or the pending label of a run under way.
- A rotation disables the keys nobody references any more (the key two rotations old), and
  deletes the keys an earlier rotation disabled, which it records on the secret
  (`gcpfargate:retired-keys`): until then a disabled key can be re-enabled if something needed it.
- So an account holds at most three user-managed keys per secret in steady state: current,
  previous, and the one disabled last time.
- `prune-keys` deletes unreferenced keys at least 24 h old, whoever made them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from typing import Any

from gcpfargate.clients.gcp import KeyInfo
from gcpfargate.core.context import Context
from gcpfargate.credentials.key import secret
from gcpfargate.errors import AwsError, GcpError, UsageError

TAG_RETIRED = "gcpfargate:retired-keys"  # space-separated ids this secret's rotations disabled
MAX_RECORDED = 6  # a tag value holds 256 characters: six 40-character key ids
PRUNE_MIN_AGE_H = 24.0


@dataclass
class AccountKeys:
    """The account's user-managed keys and who references them, read in that order: a key created
    after the listing cannot be judged unreferenced by mistake."""

    keys: list[KeyInfo]
    referenced: dict[str, list[str]]  # key id -> ["gcpfargate/x:AWSCURRENT", …]
    secrets: list[dict[str, Any]]  # every described gcpfargate secret of the account
    retired: list[str]  # ids our secret's rotations disabled

    def unreferenced(self) -> list[KeyInfo]:
        return [key for key in self.keys if key.key_id not in self.referenced]


def survey(ctx: Context, email: str, own: str) -> AccountKeys:
    keys = ctx.iam.list_user_keys(email)
    described = secret.account_secrets(ctx, email, own)
    referenced: dict[str, list[str]] = {}
    retired: list[str] = []
    for found in described:
        for key_id, labels in secret.keys_by_label(ctx, found).items():
            referenced.setdefault(key_id, []).extend(f"{found['Name']}:{label}" for label in labels)
        if found.get("Name") == own:
            retired = secret.tags_of(found).get(TAG_RETIRED, "").split()
    return AccountKeys(keys, referenced, described, retired)


def delete_retired(
    ctx: Context, email: str, own: str, survey_now: AccountKeys | None = None
) -> list[str]:
    """Delete the keys an earlier rotation disabled that nothing references. Returns their ids."""
    found = survey_now or survey(ctx, email, own)
    deleted: list[str] = []
    for key in found.unreferenced():
        if key.disabled and key.key_id in found.retired:
            try:
                with ctx.reporter.step(
                    f"Deleting key {key.key_id[:12]}… (disabled by the previous rotation)"
                ):
                    _ignore_gone(partial(ctx.iam.delete_key, email, key.key_id))
            except GcpError as exc:
                # Housekeeping: the key is disabled already; the next rotation deletes it.
                ctx.reporter.warn(
                    f"could not delete the retired key {key.key_id} ({exc.message}); the next "
                    "rotation deletes it"
                )
                continue
            deleted.append(key.key_id)
    if deleted:
        _record(ctx, found, own, [k for k in found.retired if k not in deleted])
    return deleted


def disable_superseded(ctx: Context, email: str, own: str) -> list[str]:
    """Disable every enabled key of the account that no labelled version references. Returns their ids."""
    found = survey(ctx, email, own)
    disabled: list[str] = []
    failures: list[str] = []
    for key in found.unreferenced():
        if key.disabled:
            continue
        why = (
            "superseded by two rotations"
            if key.key_id not in found.retired
            else "re-enabled, still unreferenced"
        )
        with ctx.reporter.step(f"Disabling key {key.key_id[:12]}… ({why})"):
            try:
                _ignore_gone(partial(ctx.iam.disable_key, email, key.key_id))
                disabled.append(key.key_id)
            except GcpError as exc:
                failures.append(f"{key.key_id}: {exc.message}")
    if disabled:
        _record(ctx, found, own, [*found.retired, *disabled])
    if failures:
        raise GcpError(
            f"rotated to the new key, but could not disable superseded keys ({'; '.join(failures)})",
            "The secret is on the new key; the next `gcpfargate rotate-key` disables them",
        )
    return disabled


def _ignore_gone(action: Callable[[], None]) -> None:
    try:
        action()
    except GcpError as exc:
        if exc.code != "NOT_FOUND":  # already gone: nothing to do
            raise


def _record(ctx: Context, found: AccountKeys, own: str, ids: list[str]) -> None:
    arn = next((str(s["ARN"]) for s in found.secrets if s.get("Name") == own), "")
    if not arn:
        return
    value = " ".join(list(dict.fromkeys(ids))[-MAX_RECORDED:])
    try:
        ctx.aws.call(
            "secretsmanager",
            "tag_resource",
            f"record retired keys on {own}",
            SecretId=arn,
            Tags=[{"Key": TAG_RETIRED, "Value": value}],
        )
    except AwsError as exc:
        # Only the record is lost: the disabled keys are then deleted by prune-keys after 24 h.
        ctx.reporter.warn(
            f"could not record the retired keys on {own} ({exc.message}); "
            "`gcpfargate prune-keys` deletes them after 24 h"
        )


# -- prune-keys --------------------------------------------------------------------------------------
@dataclass
class PruneEntry:
    key_id: str
    age_hours: float | None
    state: str  # enabled, disabled, expired
    why: str  # why it is unreferenced
    action: str  # "delete" or "keep (younger than 24 h)"

    def to_json(self) -> dict[str, Any]:
        return {
            "key_id": self.key_id,
            "age_hours": None if self.age_hours is None else round(self.age_hours, 1),
            "state": self.state,
            "why": self.why,
            "action": self.action,
        }


@dataclass
class PruneResult:
    service_account: str
    keys: list[PruneEntry]
    deleted: list[str] = field(default_factory=list)
    dry_run: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "service_account": self.service_account,
            "keys": [k.to_json() for k in self.keys],
            "deleted": self.deleted,
            "dry_run": self.dry_run,
        }


def plan_prune(ctx: Context, email: str, own: str) -> PruneResult:
    """What prune-keys would delete: every unreferenced user-managed key at least 24 h old."""
    found = survey(ctx, email, own)
    now = datetime.now(UTC)
    names = ", ".join(str(s.get("Name")) for s in found.secrets) or own
    entries = []
    for key in found.unreferenced():
        age = key.age_hours(now)
        state = "expired" if key.expired(now) else "disabled" if key.disabled else "enabled"
        why = (
            "disabled by an earlier rotation"
            if key.key_id in found.retired
            else f"held by no labelled version of {names}"
        )
        old_enough = age is not None and age >= PRUNE_MIN_AGE_H
        entries.append(
            PruneEntry(
                key.key_id, age, state, why, "delete" if old_enough else "keep (younger than 24 h)"
            )
        )
    return PruneResult(email, entries)


def prune(
    ctx: Context,
    email: str,
    own: str,
    confirm: Callable[[list[PruneEntry]], bool] | None,
    dry_run: bool = False,
) -> PruneResult:
    """List, then (confirmed) delete what `plan_prune` marks for deletion. Never creates a key, so it
    works at 10 of 10. Without a confirmation it raises UsageError and deletes nothing."""
    result = plan_prune(ctx, email, own)
    doomed = [entry for entry in result.keys if entry.action == "delete"]
    result.dry_run = dry_run
    if dry_run or not doomed:
        return result
    if confirm is None or not confirm(doomed):
        raise UsageError(
            f"not deleting {len(doomed)} key(s) of {email}: not confirmed",
            "Run on a terminal to confirm, pass --yes, or --dry-run to only list them",
        )
    for entry in doomed:
        with ctx.reporter.step(f"Deleting key {entry.key_id[:12]}… ({entry.why})"):
            _ignore_gone(partial(ctx.iam.delete_key, email, entry.key_id))
        result.deleted.append(entry.key_id)
    return result
