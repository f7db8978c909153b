"""The Secrets Manager secret that holds the key file: read it, store a new key in it.

The value is the key's JSON exactly as Google issued it (SecretString), so ECS can inject it
unchanged. Tags record which account and key id the current version holds (for humans and
`doctor --no-get-secret`), and which task-definition families read the secret.

Writers of one secret are serialised by compare-and-set on the AWSCURRENT label: a new key is
first stored under a label of its own (`gcpf-pending-…`, so it counts as referenced while its run
is under way), then UpdateSecretVersionStage moves AWSCURRENT to it *from the version the run
read*. Secrets Manager refuses that move when another run moved AWSCURRENT meanwhile ("Version
stage AWSCURRENT not found in version …"), and the run retries on top of the new current version.
So concurrent runs each land once, in some order, and none overwrites another unseen.
"""

from __future__ import annotations

import secrets as random
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from gcpfargate.core.context import Context
from gcpfargate.errors import AwsError, ConfigError, NotAKeyError, SecretNotFound
from gcpfargate.keymaterial.keyfile import KeyMaterial

TAG_ACCOUNT = "gcpfargate:service-account"
TAG_KEY_ID = "gcpfargate:key-id"
TAG_OWNED = (
    "gcpfargate:key:"  # + key id: a key this secret's runs created (credentials/key/lifecycle)
)
TAG_FAMILIES = (
    "gcpfargate:families"  # space-separated task-definition families that read the secret
)
PENDING_PREFIX = "gcpf-pending-"
PENDING_STALE_S = 3600  # a pending label older than this belongs to a run that died


@dataclass(frozen=True)
class SecretState:
    name: str
    arn: str
    kms_key_id: str
    key: KeyMaterial | None  # the AWSCURRENT value, when it parses as a key
    problem: str = ""  # why the current value is not a usable key, in words that never quote it
    version_id: str = ""
    managed: bool = False  # tagged managed-by=gcpfargate: ours to overwrite
    tags: dict[str, str] = field(default_factory=dict, compare=False)

    @property
    def families(self) -> list[str]:
        return self.tags.get(TAG_FAMILIES, "").split()


def describe(ctx: Context, name: str) -> dict[str, Any] | None:
    found: dict[str, Any] | None = ctx.aws.find(
        "secretsmanager",
        "describe_secret",
        "ResourceNotFoundException",
        f"read secret {name}",
        SecretId=name,
    )
    if found is None:
        return None
    if found.get("DeletedDate"):
        raise AwsError(
            f"secret {name} is scheduled for deletion",
            f"Restore it (aws secretsmanager restore-secret --secret-id {name}) or set secret.name "
            "to another name",
        ).with_code("ScheduledForDeletion")
    return found


def require_arn(ctx: Context, name: str) -> str:
    """The secret's ARN, for the task definition; an error saying to bootstrap when it does not
    exist."""
    found = describe(ctx, name)
    if found is None:
        raise SecretNotFound(
            f"secret {name} does not exist, so the task cannot be given the key",
            "Run `gcpfargate bootstrap` first",
        )
    return str(found["ARN"])


def read(ctx: Context, name: str, version_stage: str = "AWSCURRENT") -> SecretState | None:
    """The secret and its current key, or None when the secret does not exist."""
    found = describe(ctx, name)
    if found is None:
        return None
    arn, kms = found["ARN"], str(found.get("KmsKeyId", ""))
    tags = tags_of(found)
    managed = tags.get("managed-by") == "gcpfargate"
    if not _has_stage(found, version_stage):
        return SecretState(
            name,
            arn,
            kms,
            None,
            f"the secret has no {version_stage} version",
            managed=managed,
            tags=tags,
        )
    value = ctx.aws.call(
        "secretsmanager",
        "get_secret_value",
        f"read the value of secret {name}",
        SecretId=arn,
        VersionStage=version_stage,
    )
    raw = value.get("SecretString")
    data = raw.encode("utf-8") if raw is not None else bytes(value.get("SecretBinary", b""))
    try:
        key = KeyMaterial.parse(data)
    except NotAKeyError as exc:
        return SecretState(
            name,
            arn,
            kms,
            None,
            f"its value is not a usable key: {exc}",
            value["VersionId"],
            managed,
            tags,
        )
    return SecretState(name, arn, kms, key, "", value["VersionId"], managed, tags)


def tags_of(described: dict[str, Any]) -> dict[str, str]:
    return {
        str(tag.get("Key")): str(tag.get("Value", "")) for tag in described.get("Tags", []) or []
    }


def guard_foreign(state: SecretState | None, account_email: str) -> None:
    """Refuse to overwrite a secret gcpfargate did not create that holds something else.

    A secret named by mistake (a typo in secret.name, a shared name) may hold another team's data:
    replacing its value silently would be destructive. Secrets gcpfargate created are tagged.
    """
    if state is None or state.managed:
        return
    if state.key is None:
        what = state.problem or "it holds no value"
    elif state.key.client_email != account_email:
        what = f"it holds a key of {state.key.client_email}, not of {account_email}"
    else:
        return
    raise ConfigError(
        f"secret {state.name} was not created by gcpfargate and {what}; refusing to overwrite it",
        "Set secret.name to another secret, or tag this one managed-by=gcpfargate to let "
        "gcpfargate replace its value",
    )


def _has_stage(described: dict[str, Any], stage: str) -> bool:
    return any(stage in stages for stages in described.get("VersionIdsToStages", {}).values())


def store(
    ctx: Context,
    name: str,
    key: KeyMaterial,
    existing: SecretState | None,
    account_email: str,
    label: str,
) -> tuple[str, str, str]:
    """Store `key` as a new version: (arn, version_id, pending label).

    A new secret is created with the key as AWSCURRENT (label ""). Into an existing secret the key
    goes under a pending label of its own; `promote` then makes it AWSCURRENT.
    """
    tags = [
        {"Key": TAG_ACCOUNT, "Value": account_email},
        {"Key": TAG_KEY_ID, "Value": key.key_id},
        {"Key": "managed-by", "Value": "gcpfargate"},
    ]
    # The key is recorded as this secret's before its value is stored: a key the secret ever held is
    # then provably ours, and its later retirement touches nothing else.
    owned = {"Key": f"{TAG_OWNED}{key.key_id}", "Value": "minted"}
    if existing is None:
        tags.append(owned)
        if ctx.settings.family:
            tags.append({"Key": TAG_FAMILIES, "Value": ctx.settings.family})
        params: dict[str, Any] = {
            "Name": name,
            "SecretString": key.text(),
            "Tags": tags,
            "Description": f"GCP service-account key of {account_email} (gcpfargate)",
        }
        kms = ctx.settings.secret.kms_key_id
        if kms:
            params["KmsKeyId"] = kms
        try:
            created = ctx.aws.call(
                "secretsmanager", "create_secret", f"create secret {name}", **params
            )
        except AwsError as exc:
            # Another gcpfargate run (two deploys at once) created it since we read: store into it
            # instead.
            existing = (
                _created_meanwhile(ctx, name) if exc.code == "ResourceExistsException" else None
            )
            if existing is None:
                raise
        else:
            return created["ARN"], created["VersionId"], ""
    _record_key(ctx, existing.arn, name, owned)
    put = ctx.aws.call(
        "secretsmanager",
        "put_secret_value",
        f"store the new key in secret {name}",
        SecretId=existing.arn,
        SecretString=key.text(),
        VersionStages=[label],
    )
    return put["ARN"], put["VersionId"], label


def _record_key(
    ctx: Context, arn: str, name: str, owned: dict[str, str], attempts: int = 4
) -> None:
    """Tag the new key as this secret's, retried with backoff: when it cannot be recorded, the
    caller deletes the key rather than store one that no later rotation could prove its own."""
    for attempt in range(attempts):
        try:
            ctx.aws.call(
                "secretsmanager",
                "tag_resource",
                f"record the new key on secret {name}",
                SecretId=arn,
                Tags=[owned],
            )
            return
        except AwsError:
            if attempt == attempts - 1:
                raise
            time.sleep(0.5 * 2**attempt)


def current_version_created(ctx: Context, arn: str) -> datetime | None:
    """When the AWSCURRENT version was created (ListSecretVersionIds' CreatedDate): a task started
    before it read the version before (its file holds the previous key)."""
    params: dict[str, Any] = {"SecretId": arn}
    while True:  # botocore has no paginator for ListSecretVersionIds: follow NextToken by hand
        page = ctx.aws.call(
            "secretsmanager", "list_secret_version_ids", "list the versions of the secret", **params
        )
        for version in page.get("Versions") or []:
            if "AWSCURRENT" in (version.get("VersionStages") or []) and version.get("CreatedDate"):
                return aware(version["CreatedDate"])
        if not page.get("NextToken"):
            return None
        params["NextToken"] = page["NextToken"]


def aware(when: Any) -> datetime:
    moment: datetime = datetime.fromisoformat(when) if isinstance(when, str) else when
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def pending_label(now: float | None = None) -> str:
    return f"{PENDING_PREFIX}{int(time.time() if now is None else now)}-{random.token_hex(3)}"


def pending_is_live(label: str, now: float | None = None) -> bool:
    """True for a pending label of a run that may still be under way (younger than an hour)."""
    try:
        started = int(label.removeprefix(PENDING_PREFIX).split("-", 1)[0])
    except ValueError:
        return False
    return (time.time() if now is None else now) - started < PENDING_STALE_S


def stages(ctx: Context, arn: str) -> dict[str, list[str]]:
    """version id -> labels, fresh from DescribeSecret."""
    described = ctx.aws.call(
        "secretsmanager", "describe_secret", "read the versions of the secret", SecretId=arn
    )
    return {
        str(v): list(labels) for v, labels in (described.get("VersionIdsToStages") or {}).items()
    }


def current_version(versions: dict[str, list[str]]) -> str:
    return next((v for v, labels in versions.items() if "AWSCURRENT" in labels), "")


def promote(
    ctx: Context, arn: str, name: str, version_id: str, base: str, attempts: int = 20
) -> str:
    """Move AWSCURRENT to `version_id` from `base` (compare-and-set); returns the version it moved
    from.

    When another writer moved AWSCURRENT since `base` was read, the move is refused and retried
    from the new current version; a move whose answer was lost shows as AWSCURRENT already there.
    """
    for _ in range(attempts):
        try:
            params: dict[str, Any] = {"RemoveFromVersionId": base} if base else {}
            ctx.aws.call(
                "secretsmanager",
                "update_secret_version_stage",
                f"make the new key current in {name}",
                SecretId=arn,
                VersionStage="AWSCURRENT",
                MoveToVersionId=version_id,
                **params,
            )
            return base
        except AwsError as exc:
            if exc.code not in ("InvalidParameterException", "InvalidRequestException"):
                raise
            now = current_version(stages(ctx, arn))
            if now == version_id:
                return base  # our move landed; its answer was lost
            if now == base:
                raise
            ctx.reporter.detail(
                f"another run moved AWSCURRENT of {name} meanwhile; placing the new key on top"
            )
            base = now
    raise AwsError(
        f"could not make the new key current in {name}: other runs kept moving AWSCURRENT",
        "Rerun gcpfargate rotate-key when the other rotations have finished",
    )


def drop_label(ctx: Context, arn: str, label: str, version_id: str) -> None:
    """Remove a run's pending label (best effort: a stale one is ignored after an hour anyway)."""
    if not label:
        return
    try:
        ctx.aws.call(
            "secretsmanager",
            "update_secret_version_stage",
            "remove the pending label",
            SecretId=arn,
            VersionStage=label,
            RemoveFromVersionId=version_id,
        )
    except AwsError as exc:
        ctx.reporter.detail(
            f"could not remove label {label} ({exc.message}); it is ignored after an hour"
        )


def repair_key_tag(ctx: Context, state: SecretState, name: str, account_email: str) -> None:
    """Record (and, applying, make) the key-id tag of a secret whose tag does not name the key it
    holds: an earlier run could not tag it."""
    from functools import partial

    from gcpfargate.core import plan as planning

    held = state.key.key_id if state.key is not None else None
    if held is None or state.tags.get(TAG_KEY_ID) == held:
        return
    ctx.plan.change(
        planning.update(
            "secret",
            name,
            f"tag secret {name} with the id of the key it holds",
            before=state.tags.get(TAG_KEY_ID),
            after=held,
        ),
        partial(tag_current, ctx, state.arn, name, account_email),
    )


def tag_current(ctx: Context, arn: str, name: str, account_email: str, attempts: int = 4) -> None:
    """Make the key-id tag name the key AWSCURRENT holds (the tag must agree with the value).

    Retried with backoff, and read back after writing: a concurrent rotation may move AWSCURRENT
    between the read and the write. What still disagrees is repaired by the next run.
    """
    problem = ""
    for attempt in range(attempts):
        state = read(ctx, name)
        if state is None or state.key is None:
            return
        wanted = {
            TAG_ACCOUNT: account_email,
            TAG_KEY_ID: state.key.key_id,
            "managed-by": "gcpfargate",
        }
        if all(state.tags.get(k) == v for k, v in wanted.items()):
            return
        try:
            ctx.aws.call(
                "secretsmanager",
                "tag_resource",
                f"tag secret {name}",
                SecretId=arn,
                Tags=[{"Key": k, "Value": v} for k, v in wanted.items()],
            )
        except AwsError as exc:
            problem = exc.message
            time.sleep(0.5 * 2**attempt)
    if problem:
        ctx.reporter.warn(
            f"could not update the tags of {name} ({problem}); the next gcpfargate run repairs them"
        )


def add_family(ctx: Context, name: str, arn: str, tags: dict[str, str], family: str) -> None:
    """Record that `family` reads the secret (rotate-key lists and rolls what reads it); no write
    when it is recorded already. A failure only warns: the tag informs, it does not deliver the
    key."""
    families = tags.get(TAG_FAMILIES, "").split()
    if not family or family in families:
        return
    value = " ".join(sorted({*families, family}))
    if len(value) > 256:  # a tag value's limit: keep the newest families that fit
        value = value[-256:].split(" ", 1)[-1]
    try:
        ctx.aws.call(
            "secretsmanager",
            "tag_resource",
            f"tag secret {name} with its families",
            SecretId=arn,
            Tags=[{"Key": TAG_FAMILIES, "Value": value}],
        )
    except AwsError as exc:
        ctx.reporter.warn(f"could not record family {family} on secret {name}: {exc.message}")


def note_family(ctx: Context, arn: str, family: str) -> None:
    """add_family for a secret known by ARN only (register-task)."""
    found = ctx.aws.find(
        "secretsmanager",
        "describe_secret",
        "ResourceNotFoundException",
        "read the secret's tags",
        SecretId=arn,
    )
    if found is not None and tags_of(found).get("managed-by") == "gcpfargate":
        add_family(ctx, str(found["Name"]), arn, tags_of(found), family)


def _created_meanwhile(ctx: Context, name: str) -> SecretState | None:
    """The secret another gcpfargate run just created (tagged as ours), or None."""
    found = describe(ctx, name)
    if found is None or tags_of(found).get("managed-by") != "gcpfargate":
        return None
    versions = {
        str(v): list(labels) for v, labels in (found.get("VersionIdsToStages") or {}).items()
    }
    return SecretState(
        name,
        found["ARN"],
        str(found.get("KmsKeyId", "")),
        None,
        version_id=current_version(versions),
        managed=True,
        tags=tags_of(found),
    )


def keys_by_label(ctx: Context, described: dict[str, Any]) -> dict[str, list[str]]:
    """key id -> labels, for every labelled version of a described secret (stale pending labels left
    out).

    A secret scheduled for deletion cannot be read; its tagged key id counts, so a secret that may
    be restored keeps its key.
    """
    arn = described["ARN"]
    if described.get("DeletedDate"):
        tagged = tags_of(described).get(TAG_KEY_ID)
        return {tagged: ["(scheduled for deletion)"]} if tagged else {}
    found: dict[str, list[str]] = {}
    for version_id, labels in (described.get("VersionIdsToStages") or {}).items():
        labels = [
            label
            for label in labels
            if not label.startswith(PENDING_PREFIX) or pending_is_live(label)
        ]
        if not labels:
            continue
        value = ctx.aws.call(
            "secretsmanager",
            "get_secret_value",
            "read a version of the secret",
            SecretId=arn,
            VersionId=version_id,
        )
        raw = value.get("SecretString")
        try:
            key = KeyMaterial.parse(
                raw if raw is not None else bytes(value.get("SecretBinary", b""))
            )
        except NotAKeyError:
            continue
        found.setdefault(key.key_id, []).extend(labels)
    return found


def account_secrets(ctx: Context, account_email: str, own: str) -> list[dict[str, Any]]:
    """Every gcpfargate secret that may hold keys of the account, described now.

    ListSecrets finds them by the account tag (those scheduled for deletion too), but it may lag a
    few minutes behind a new secret and its copy of the stages may be stale: each is described
    afresh, and `own` is always included.
    """
    listed = ctx.aws.paginate(
        "secretsmanager",
        "list_secrets",
        "SecretList",
        "list the secrets of the account",
        Filters=[
            {"Key": "tag-key", "Values": [TAG_ACCOUNT]},
            {"Key": "tag-value", "Values": [account_email]},
        ],
        IncludePlannedDeletion=True,
    )
    names = [own] + [
        str(item["ARN"])
        for item in listed
        if tags_of(item).get(TAG_ACCOUNT) == account_email and item.get("Name") != own
    ]
    described = []
    for name in names:
        found = ctx.aws.find(
            "secretsmanager",
            "describe_secret",
            "ResourceNotFoundException",
            f"read secret {name}",
            SecretId=name,
        )
        if found is not None:
            described.append(found)
    return described


def kms_key_arn(ctx: Context, key_id: str | None = None) -> str:
    """The ARN of KMS key `key_id` (an id, alias or ARN; default secret.kms_key_id), for policies;
    "" for none.

    Pass the secret's own KmsKeyId (DescribeSecret) when it exists: an adopted secret may be
    encrypted with another key than the configured one, and "" there means the AWS managed key,
    which needs no grant."""
    key_id = ctx.settings.secret.kms_key_id if key_id is None else key_id
    if not key_id:
        return ""
    if key_id.startswith("arn:") and ":key/" in key_id:
        return key_id
    described = ctx.aws.call("kms", "describe_key", f"read KMS key {key_id}", KeyId=key_id)
    return str(described["KeyMetadata"]["Arn"])
