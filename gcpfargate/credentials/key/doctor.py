"""doctor's key checks: the secret holds a key of the account, that key in GCP (enabled, not
expired), its age, the account's key count, live keys that no labelled secret version holds (nobody
retires those), and running tasks that hold a previous key which no longer works."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from gcpfargate.clients.gcp import MAX_USER_KEYS
from gcpfargate.core.checks import Facts, Skip, Status
from gcpfargate.core.context import Context
from gcpfargate.credentials.key import lifecycle, readers, secret

KEY_AGE_WARN_DAYS = 90
KEY_COUNT_WARN = 8
EXPIRY_WARN = timedelta(days=7)
MAX_TASKS_SHOWN = 5


def secret_holds_key(ctx: Context, facts: Facts, get_secret: bool) -> tuple[Status, str]:
    name = ctx.settings.secret_name
    if not get_secret:
        found = secret.describe(ctx, name)
        if found is None:
            return Status.FAIL, f"secret {name} does not exist (run gcpfargate bootstrap)"
        tags = {tag["Key"]: tag["Value"] for tag in found.get("Tags", [])}
        facts.extra["tag_key_id"] = tags.get(secret.TAG_KEY_ID, "")
        facts.extra["secret_arn"] = found["ARN"]
        facts.extra["kms_key_id"] = str(found.get("KmsKeyId", ""))
        return Status.SKIP, f"{name} exists; value not read (--no-get-secret)"
    state = secret.read(ctx, name)
    if state is None:
        return Status.FAIL, f"secret {name} does not exist (run gcpfargate bootstrap)"
    facts.secret = state
    facts.extra["secret_arn"] = state.arn
    facts.extra["kms_key_id"] = state.kms_key_id  # the key that encrypts it, not the configured one
    if state.key is None:
        return Status.FAIL, f"secret {name}: {state.problem}"
    expected = facts.account.email if facts.account else ctx.settings.service_account_email
    if state.key.client_email != expected:
        return Status.FAIL, f"secret {name} holds a key of {state.key.client_email}, not {expected}"
    tagged = state.tags.get(secret.TAG_KEY_ID, "")
    if tagged != state.key.key_id:
        # The tag is what `doctor --no-get-secret` judges by: it must agree with the value (issue 14).
        return Status.WARN, (
            f"{name} holds key {state.key.key_id[:12]}…, but its {secret.TAG_KEY_ID} tag names "
            f"{tagged[:12] or 'nothing'}… (the next bootstrap or rotate-key repairs the tag)"
        )
    return Status.OK, f"{name} holds key {state.key.key_id[:12]}… of {expected}"


def _key_id(facts: Facts) -> str:
    if facts.secret is not None and facts.secret.key is not None:
        return facts.secret.key.key_id
    if facts.extra.get("tag_key_id"):
        return str(facts.extra["tag_key_id"])
    raise Skip("no key to look at")


def key_state(ctx: Context, facts: Facts) -> tuple[Status, str]:
    if facts.account is None:
        raise Skip("the service account was not found")
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
        return (
            Status.FAIL,
            f"key {key_id[:12]}… expired on {info.expires:%Y-%m-%d %H:%M} UTC (run gcpfargate "
            "rotate-key)",
        )
    if info.expires is not None and info.expires - now < EXPIRY_WARN:
        return (
            Status.WARN,
            f"key {key_id[:12]}… expires on {info.expires:%Y-%m-%d %H:%M} UTC, within 7 days "
            "(run gcpfargate rotate-key)",
        )
    return Status.OK, f"key {key_id[:12]}… is enabled"


def key_age(ctx: Context, facts: Facts) -> tuple[Status, str]:
    info = facts.extra.get("key_info")
    if info is None or info.created is None:
        raise Skip("key not found")
    age = info.age_days(datetime.now(UTC))
    if age > KEY_AGE_WARN_DAYS:
        return Status.WARN, f"{age} days old (over {KEY_AGE_WARN_DAYS}); run gcpfargate rotate-key"
    return Status.OK, f"{age} days old"


def key_count(ctx: Context, facts: Facts) -> tuple[Status, str]:
    if facts.account is None:
        raise Skip("the service account was not found")
    count = len(ctx.iam.list_user_keys(facts.account.email))
    if count >= MAX_USER_KEYS:
        return (
            Status.FAIL,
            f"{count} of {MAX_USER_KEYS}: no new key can be created (run gcpfargate prune-keys)",
        )
    if count >= KEY_COUNT_WARN:
        return (
            Status.WARN,
            f"{count} of {MAX_USER_KEYS}; delete unused keys with gcpfargate prune-keys",
        )
    return Status.OK, f"{count} of {MAX_USER_KEYS}"


def unreferenced_live(ctx: Context, facts: Facts, get_secret: bool) -> tuple[Status, str]:
    """WARN on live keys of the account that no labelled version of any gcpfargate secret holds."""
    if facts.account is None:
        raise Skip("the service account was not found")
    if not get_secret:
        raise Skip("needs the secrets' values (--no-get-secret)")
    found = lifecycle.survey(ctx, facts.account.email, ctx.settings.secret_name)
    loose = [key.key_id for key in found.unreferenced() if key.live]
    if loose:
        shown = ", ".join(f"{key_id[:12]}…" for key_id in loose)
        return Status.WARN, (
            f"{len(loose)} live key(s) in no secret version: {shown} (the next rotate-key "
            "disables them; gcpfargate prune-keys deletes them after 24 h)"
        )
    return Status.OK, f"all {len(found.keys)} user-managed key(s) are current, previous or retired"


def previous_key_in_use(ctx: Context, facts: Facts, get_secret: bool) -> tuple[Status, str]:
    """WARN when the previous key (AWSPREVIOUS) is disabled or gone while tasks started before the
    current version still run: their file holds that key, and their next token refresh fails."""
    if facts.account is None:
        raise Skip("the service account was not found")
    if not get_secret:
        raise Skip("needs the previous version's value (--no-get-secret)")
    if facts.secret is None or facts.secret.key is None:
        raise Skip("the secret holds no key")
    previous = secret.read(ctx, facts.secret.name, "AWSPREVIOUS")
    if previous is None or previous.key is None or previous.key.key_id == facts.secret.key.key_id:
        return Status.OK, "the secret holds no previous key (never rotated)"
    email, key_id = facts.account.email, previous.key.key_id
    info = ctx.iam.get_key(email, key_id)
    state = (
        "deleted"
        if info is None
        else "disabled"
        if info.disabled
        else "expired"
        if info.expired(datetime.now(UTC))
        else ""
    )
    if not state:
        return (
            Status.OK,
            f"previous key {key_id[:12]}… is enabled: tasks started before the rotation keep working",
        )
    created = secret.current_version_created(ctx, facts.secret.arn)
    if created is None:
        raise Skip("the secret has no AWSCURRENT version")
    since = f"{created.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC"
    families = readers.families(ctx, facts.secret.families)
    held = readers.tasks_started_before(ctx, families, created)
    if not held:
        return Status.OK, (
            f"previous key {key_id[:12]}… is {state}; no running task of {', '.join(families) or '-'} "
            f"started before the current version ({since})"
        )
    shown = ", ".join(
        f"{task.task_id} ({task.family}, cluster {task.cluster})" for task in held[:MAX_TASKS_SHOWN]
    )
    more = f" and {len(held) - MAX_TASKS_SHOWN} more" if len(held) > MAX_TASKS_SHOWN else ""
    fix = (
        "restart them"
        if state != "disabled"
        else f"re-enable it (gcloud iam service-accounts keys enable {key_id} --iam-account {email}) or restart them"
    )
    return Status.WARN, (
        f"previous key {key_id[:12]}… is {state}, but {len(held)} running task(s) started before the "
        f"current version ({since}) hold it and lose access at their next "
        f"token refresh: {shown}{more}; {fix} (roll a service: aws ecs update-service "
        "--force-new-deployment; a one-off task: aws ecs stop-task, then run it again)"
    )
