"""doctor's key checks: the secret's key in GCP (enabled, not expired), its age, the account's key
count, and live keys that no labelled secret version holds (nobody retires those)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from gcpfargate.clients.gcp import MAX_USER_KEYS
from gcpfargate.core import lifecycle
from gcpfargate.core.context import Context
from gcpfargate.core.doctor import Status, _Facts, _Skip

KEY_AGE_WARN_DAYS = 90
KEY_COUNT_WARN = 8
EXPIRY_WARN = timedelta(days=7)


def _key_id(facts: _Facts) -> str:
    if facts.secret is not None and facts.secret.key is not None:
        return facts.secret.key.key_id
    if facts.extra.get("tag_key_id"):
        return str(facts.extra["tag_key_id"])
    raise _Skip("no key to look at")


def key_state(ctx: Context, facts: _Facts) -> tuple[Status, str]:
    if facts.account is None:
        raise _Skip("the service account was not found")
    key_id = _key_id(facts)
    info = ctx.iam.get_key(facts.account.email, key_id)
    facts.extra["key_info"] = info
    if info is None:
        return Status.FAIL, f"key {key_id[:12]}… was deleted in GCP (run gcpfargate rotate-key)"
    if info.disabled:
        return Status.FAIL, f"key {key_id[:12]}… is disabled in GCP (run gcpfargate rotate-key)"
    now = datetime.now(UTC)
    # An org policy (iam.serviceAccountKeyExpiryHours) gives keys a valid_before_time.
    if info.expires is not None and info.expired(now):
        return Status.FAIL, f"key {key_id[:12]}… expired on {info.expires:%Y-%m-%d %H:%M} UTC (run gcpfargate " \
                            "rotate-key)"
    if info.expires is not None and info.expires - now < EXPIRY_WARN:
        return Status.WARN, f"key {key_id[:12]}… expires on {info.expires:%Y-%m-%d %H:%M} UTC, within 7 days " \
                            "(run gcpfargate rotate-key)"
    return Status.OK, f"key {key_id[:12]}… is enabled"


def key_age(ctx: Context, facts: _Facts) -> tuple[Status, str]:
    info = facts.extra.get("key_info")
    if info is None or info.created is None:
        raise _Skip("key not found")
    age = info.age_days(datetime.now(UTC))
    if age > KEY_AGE_WARN_DAYS:
        return Status.WARN, f"{age} days old (over {KEY_AGE_WARN_DAYS}); run gcpfargate rotate-key"
    return Status.OK, f"{age} days old"


def key_count(ctx: Context, facts: _Facts) -> tuple[Status, str]:
    if facts.account is None:
        raise _Skip("the service account was not found")
    count = len(ctx.iam.list_user_keys(facts.account.email))
    if count >= MAX_USER_KEYS:
        return Status.FAIL, f"{count} of {MAX_USER_KEYS}: no new key can be created (run gcpfargate prune-keys)"
    if count >= KEY_COUNT_WARN:
        return Status.WARN, f"{count} of {MAX_USER_KEYS}; delete unused keys with gcpfargate prune-keys"
    return Status.OK, f"{count} of {MAX_USER_KEYS}"


def unreferenced_live(ctx: Context, facts: _Facts, get_secret: bool) -> tuple[Status, str]:
    """WARN on live keys of the account that no labelled version of any gcpfargate secret holds."""
    if facts.account is None:
        raise _Skip("the service account was not found")
    if not get_secret:
        raise _Skip("needs the secrets' values (--no-get-secret)")
    found = lifecycle.survey(ctx, facts.account.email, ctx.settings.secret_name)
    loose = [key.key_id for key in found.unreferenced() if key.live]
    if loose:
        shown = ", ".join(f"{key_id[:12]}…" for key_id in loose)
        return Status.WARN, (f"{len(loose)} live key(s) in no secret version: {shown} (the next rotate-key "
                             "disables them; gcpfargate prune-keys deletes them after 24 h)")
    return Status.OK, f"all {len(found.keys)} user-managed key(s) are current, previous or retired"
