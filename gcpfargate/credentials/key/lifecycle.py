"""The key lifecycle (Google's guidance: create → roll out → disable → delete), shared by every path
that replaces a key (`rotate-key`, `bootstrap --new-key`, a bootstrap that replaces a dead key).

The rule a user relies on: a task started before rotation N keeps working until rotation N+1.
- A key is *referenced* while a labelled version of any gcpfargate secret of the account holds it:
  AWSCURRENT, AWSPREVIOUS, or the pending label of a run under way.
- A key is *ours* (this secret's) only when the secret records it: one tag per key,
  `gcpfargate:key:<id>` = `minted` or `retired`, written before the key's value is stored. Tags
  and not the secret's versions: DescribeSecret reads them in one call without the value (so
  `doctor --no-get-secret` sees them too), they survive Secrets Manager's removal of unlabelled
  versions, and one tag per key lets concurrent runs add and remove records without overwriting
  each other's. A key a labelled version of this secret holds is recorded on sight (secrets made
  before the record existed, or adopted ones).
- Every other key of the account is *foreign*: another region's or account's secret, a person's
  key, another tool's. It is listed, never disabled or deleted, unless named with
  `prune-keys --key ID`.
- A rotation disables our keys nobody references any more (the key two rotations old), and deletes
  ours an earlier rotation disabled (recorded `retired`): until then a disabled key can be
  re-enabled if something needed it. So a secret owns at most three keys in steady state.
- `prune-keys` deletes our unreferenced keys at least 24 h old.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from typing import Any

from gcpfargate.clients.google.gcp import KeyInfo
from gcpfargate.core import plan as planning
from gcpfargate.core.context import Context
from gcpfargate.credentials.key import secret
from gcpfargate.errors import AwsError, GcpError, UsageError

TAG_OWNED = secret.TAG_OWNED
TAG_RETIRED = (
    "gcpfargate:retired-keys"  # the older record (space-separated ids): read, then replaced
)
MINTED, RETIRED = "minted", "retired"
PRUNE_MIN_AGE_H = 24.0


@dataclass
class AccountKeys:
    """The account's user-managed keys, who references them and which are ours, read in that order:
    a key created after the listing cannot be judged unreferenced by mistake."""

    keys: list[KeyInfo]
    referenced: dict[str, list[str]]  # key id -> ["gcpfargate/x:AWSCURRENT", …]
    secrets: list[dict[str, Any]]  # every described gcpfargate secret visible in this region
    owned: dict[str, str] = field(default_factory=dict)  # key id -> minted | retired
    own_arn: str = ""
    unrecorded: dict[str, str] = field(default_factory=dict)  # ours, not yet tagged as such
    legacy: bool = False  # the older retired-keys tag is there
    email: str = ""

    @property
    def retired(self) -> list[str]:
        return [key_id for key_id, state in self.owned.items() if state == RETIRED]

    def ours(self, key: KeyInfo) -> bool:
        return key.key_id in self.owned

    def unreferenced(self) -> list[KeyInfo]:
        """Our keys that no labelled version holds: the only ones a rotation may retire."""
        return [k for k in self.keys if self.ours(k) and k.key_id not in self.referenced]

    def foreign(self) -> list[KeyInfo]:
        return [key for key in self.keys if not self.ours(key)]

    def holder(self, key_id: str) -> str:
        held = self.referenced.get(key_id)
        return f"held by {', '.join(held)}" if held else "in no secret visible here"


def recorded(tags: dict[str, str]) -> dict[str, str]:
    """key id -> minted | retired, as a secret's tags record them (the older tag included)."""
    found = {
        tag[len(TAG_OWNED) :]: value for tag, value in tags.items() if tag.startswith(TAG_OWNED)
    }
    for key_id in tags.get(TAG_RETIRED, "").split():
        found.setdefault(key_id, RETIRED)
    return found


def survey(ctx: Context, email: str, own: str) -> AccountKeys:
    keys = ctx.iam.list_user_keys(email)
    described = secret.account_secrets(ctx, email, own)
    found = AccountKeys(keys, {}, described, email=email)
    for item in described:
        held = secret.keys_by_label(ctx, item)
        for key_id, labels in held.items():
            found.referenced.setdefault(key_id, []).extend(
                f"{item['Name']}:{lab}" for lab in labels
            )
        if item.get("Name") != own:
            continue
        tags = secret.tags_of(item)
        found.own_arn, found.legacy = str(item["ARN"]), TAG_RETIRED in tags
        found.owned = recorded(tags)
        for key_id in held:
            if key_id not in found.owned:
                found.owned[key_id] = found.unrecorded[key_id] = MINTED
    return found


def record(ctx: Context, found: AccountKeys, states: dict[str, str]) -> None:
    """Record `states` (key id -> minted | retired) on our secret. One tag per key, so a concurrent
    run's records are never overwritten. A failure only warns: the next run records them again."""
    if not found.own_arn or not states:
        return
    try:
        ctx.aws.call(
            "secretsmanager",
            "tag_resource",
            "record the secret's keys",
            SecretId=found.own_arn,
            Tags=[{"Key": f"{TAG_OWNED}{key_id}", "Value": v} for key_id, v in states.items()],
        )
    except AwsError as exc:
        what = "the retired keys" if set(states.values()) == {RETIRED} else "keys"
        ctx.reporter.warn(
            f"could not record {what} {', '.join(states)} on the secret ({exc.message}); the "
            "next run records them"
        )
        return
    found.owned.update(states)
    if found.legacy:  # every id of the older tag is a tag of its own now
        _untag(ctx, found.own_arn, [TAG_RETIRED])
        found.legacy = False


def forget(ctx: Context, found: AccountKeys, key_ids: Iterable[str]) -> None:
    """Drop the records of keys that no longer exist (best effort: a stale record harms nothing)."""
    ids = [key_id for key_id in key_ids if key_id in found.owned]
    if found.own_arn and ids and _untag(ctx, found.own_arn, [f"{TAG_OWNED}{i}" for i in ids]):
        for key_id in ids:
            found.owned.pop(key_id, None)


def drop_stale_labels(ctx: Context, found: AccountKeys) -> list[str]:
    """Remove our secret's `gcpf-pending-*` labels older than an hour. Returns them."""
    own = next((item for item in found.secrets if str(item["ARN"]) == found.own_arn), None)
    dropped: list[str] = []
    for version, labels in ((own or {}).get("VersionIdsToStages") or {}).items():
        for label in labels:
            if label.startswith(secret.PENDING_PREFIX) and not secret.pending_is_live(label):
                ctx.reporter.detail(f"removing label {label}, left by a run that did not finish")
                secret.drop_label(ctx, found.own_arn, label, str(version))
                dropped.append(label)
    return dropped


def _untag(ctx: Context, arn: str, tag_keys: list[str]) -> bool:
    try:
        ctx.aws.call(
            "secretsmanager",
            "untag_resource",
            "remove records from the secret",
            SecretId=arn,
            TagKeys=tag_keys,
        )
    except AwsError as exc:
        ctx.reporter.detail(f"could not remove tags {', '.join(tag_keys)} ({exc.message})")
        return False
    return True


def adopt(ctx: Context, found: AccountKeys) -> None:
    """Write down what is ours but unrecorded (keys this secret holds; the older tag's ids), drop
    the records of keys that are gone, and remove pending labels of runs that died (older than an
    hour: no run takes that long). Runs before anything is retired."""
    drop_stale_labels(ctx, found)
    legacy = {k: v for k, v in found.owned.items() if found.legacy and v == RETIRED}
    record(ctx, found, {**found.unrecorded, **legacy})
    found.unrecorded = {}
    listed = {key.key_id for key in found.keys}
    missing = [key_id for key_id in found.owned if key_id not in listed]
    if missing:
        # Listed again: a key minted since the survey's listing is recorded, but not yet listed.
        again = {key.key_id for key in ctx.iam.list_user_keys(found.email)}
        forget(ctx, found, [key_id for key_id in missing if key_id not in again])


def delete_retired(
    ctx: Context, email: str, own: str, survey_now: AccountKeys | None = None
) -> list[str]:
    """Delete our keys an earlier rotation disabled that nothing references. Returns their ids."""
    found = survey_now or survey(ctx, email, own)
    adopt(ctx, found)
    deleted: list[str] = []
    for key in found.unreferenced():
        if key.disabled and found.owned.get(key.key_id) == RETIRED:
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
    forget(ctx, found, deleted)
    return deleted


def disable_superseded(ctx: Context, email: str, own: str) -> list[str]:
    """Disable each enabled key of ours that no labelled version references. Returns their ids."""
    found = survey(ctx, email, own)
    adopt(ctx, found)
    disabled: list[str] = []
    failures: list[str] = []
    for key in found.unreferenced():
        if key.disabled:
            continue
        why = (
            "superseded by two rotations"
            if found.owned.get(key.key_id) != RETIRED
            else "re-enabled, still unreferenced"
        )
        with ctx.reporter.step(f"Disabling key {key.key_id[:12]}… ({why})"):
            try:
                _ignore_gone(partial(ctx.iam.disable_key, email, key.key_id))
                disabled.append(key.key_id)
            except GcpError as exc:
                failures.append(f"{key.key_id}: {exc.message}")
    record(ctx, found, dict.fromkeys(disabled, RETIRED))
    if failures:
        raise GcpError(
            "rotated to the new key, but could not disable superseded keys "
            f"({'; '.join(failures)})",
            "The secret is on the new key; the next `gcpfargate rotate-key` disables them",
        )
    return disabled


def _ignore_gone(action: Callable[[], None]) -> None:
    try:
        action()
    except GcpError as exc:
        if exc.code != "NOT_FOUND":  # already gone: nothing to do
            raise


def foreign_listing(found: AccountKeys, now: datetime | None = None) -> list[str]:
    """One phrase per foreign key: id, age, state and who holds it."""
    now = now or datetime.now(UTC)
    return [
        f"{key.key_id} ({_age(key, now)}, {_state(key, now)}, {found.holder(key.key_id)})"
        for key in found.foreign()
    ]


def _age(key: KeyInfo, now: datetime) -> str:
    days = key.age_days(now)
    return "age unknown" if days is None else f"{days} days old"


def _state(key: KeyInfo, now: datetime) -> str:
    return "expired" if key.expired(now) else "disabled" if key.disabled else "enabled"


# -- prune-keys
# --------------------------------------------------------------------------------------
KEEP_FOREIGN = "keep (foreign: delete it only with --key)"


@dataclass
class PruneEntry:
    key_id: str
    age_hours: float | None
    state: str  # enabled, disabled, expired
    why: str  # why it is unreferenced, or whose it is
    action: str  # "delete", "keep (younger than 24 h)", KEEP_FOREIGN
    foreign: bool = False
    held_by: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "key_id": self.key_id,
            "age_hours": None if self.age_hours is None else round(self.age_hours, 1),
            "state": self.state,
            "why": self.why,
            "action": self.action,
            "foreign": self.foreign,
            "held_by": self.held_by,
        }


@dataclass
class PruneResult:
    service_account: str
    keys: list[PruneEntry]
    deleted: list[str] = field(default_factory=list)
    preview: bool = False  # listed only: the plan was not applied

    def to_json(self) -> dict[str, Any]:
        return {
            "service_account": self.service_account,
            "keys": [k.to_json() for k in self.keys],
            "deleted": self.deleted,
            "dry_run": self.preview,
        }


def plan_prune(
    ctx: Context, email: str, own: str, named: Iterable[str] = ()
) -> tuple[PruneResult, AccountKeys]:
    """What prune-keys would delete: our unreferenced keys at least 24 h old; or, when keys are
    named, exactly those. Foreign keys are listed with what holds them."""
    found = survey(ctx, email, own)
    named = list(dict.fromkeys(named))
    listed = {key.key_id: key for key in found.keys}
    for key_id in named:
        if key_id not in listed:
            raise UsageError(
                f"{email} has no user-managed key {key_id}",
                "Run `gcpfargate prune-keys --dry-run` to list its keys",
            )
        if key_id in found.referenced:
            raise UsageError(
                f"not deleting key {key_id}: it is {', '.join(found.referenced[key_id])}, so tasks "
                "read it",
                "Rotate that secret first (gcpfargate rotate-key in its region)",
            )
    now = datetime.now(UTC)
    entries = []
    for key in found.keys:
        mine, held = found.ours(key), found.referenced.get(key.key_id, [])
        if mine and held and key.key_id not in named:
            continue  # current, previous or pending: nothing to say
        age = key.age_hours(now)
        if mine:
            why = (
                "disabled by an earlier rotation"
                if found.owned[key.key_id] == RETIRED
                else f"created for {own}, held by no labelled version"
            )
            old_enough = age is not None and age >= PRUNE_MIN_AGE_H
            action = "delete" if old_enough else "keep (younger than 24 h)"
        else:
            why = f"foreign: not created for {own}, {found.holder(key.key_id)}"
            action = KEEP_FOREIGN
        if named:
            action = "delete" if key.key_id in named else "keep (not named)"
        entries.append(
            PruneEntry(key.key_id, age, _state(key, now), why, action, not mine, list(held))
        )
    return PruneResult(email, entries, preview=not ctx.plan.apply), found


def prune(
    ctx: Context,
    email: str,
    own: str,
    confirm: Callable[[list[PruneEntry]], bool] | None,
    named: Iterable[str] = (),
) -> PruneResult:
    """List, then (confirmed) delete what `plan_prune` marks for deletion. Never creates a key, so
    it works at 10 of 10. Without a confirmation it raises UsageError and deletes nothing."""
    result, found = plan_prune(ctx, email, own, named)
    doomed = [entry for entry in result.keys if entry.action == "delete"]
    if not doomed:
        return result
    # Asking belongs to applying: a preview deletes nothing, so there is nothing to confirm.
    if ctx.plan.apply and (confirm is None or not confirm(doomed)):
        raise UsageError(
            f"not deleting {len(doomed)} key(s) of {email}: not confirmed",
            "Run on a terminal to confirm, pass --yes, or --dry-run to only list them",
        )
    for entry in doomed:
        ctx.plan.change(
            planning.delete(
                "service-account key", entry.key_id, f"delete key {entry.key_id} ({entry.why})"
            ),
            partial(_delete_key, ctx, email, entry, result),
        )
    forget(ctx, found, result.deleted)
    return result


def _delete_key(ctx: Context, email: str, entry: PruneEntry, result: PruneResult) -> None:
    with ctx.reporter.step(f"Deleting key {entry.key_id[:12]}… ({entry.why})"):
        _ignore_gone(partial(ctx.iam.delete_key, email, entry.key_id))
    result.deleted.append(entry.key_id)
