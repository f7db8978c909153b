"""The Secrets Manager secret that holds the key file: read it, store a new key in it.

The value is the key's JSON exactly as Google issued it (SecretString), so ECS can inject it
unchanged. Tags record which account and key id the current version holds, for humans and doctor.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gcpfargate.core.context import Context
from gcpfargate.errors import AwsError, ConfigError, NotAKeyError, SecretNotFound
from gcpfargate.keyfile import KeyMaterial

TAG_ACCOUNT = "gcpfargate:service-account"
TAG_KEY_ID = "gcpfargate:key-id"


@dataclass(frozen=True)
class SecretState:
    name: str
    arn: str
    kms_key_id: str
    key: KeyMaterial | None  # the AWSCURRENT value, when it parses as a key
    problem: str = ""  # why the current value is not a usable key, in words that never quote it
    version_id: str = ""
    managed: bool = False  # tagged managed-by=gcpfargate: ours to overwrite


def describe(ctx: Context, name: str) -> dict[str, Any] | None:
    found: dict[str, Any] | None = ctx.aws.find(
        "secretsmanager", "describe_secret", "ResourceNotFoundException", f"read secret {name}", SecretId=name)
    if found is None:
        return None
    if found.get("DeletedDate"):
        raise AwsError(f"secret {name} is scheduled for deletion",
                       f"Restore it (aws secretsmanager restore-secret --secret-id {name}) or set secret.name "
                       "to another name").with_code("ScheduledForDeletion")
    return found


def require_arn(ctx: Context, name: str) -> str:
    """The secret's ARN, for the task definition; an error saying to bootstrap when it does not exist."""
    found = describe(ctx, name)
    if found is None:
        raise SecretNotFound(f"secret {name} does not exist, so the task cannot be given the key",
                             "Run `gcpfargate bootstrap` first")
    return str(found["ARN"])


def read(ctx: Context, name: str, version_stage: str = "AWSCURRENT") -> SecretState | None:
    """The secret and its current key, or None when the secret does not exist."""
    found = describe(ctx, name)
    if found is None:
        return None
    arn, kms = found["ARN"], str(found.get("KmsKeyId", ""))
    managed = any(tag.get("Key") == "managed-by" and tag.get("Value") == "gcpfargate" for tag in found.get("Tags", []))
    if not _has_stage(found, version_stage):
        return SecretState(name, arn, kms, None, f"the secret has no {version_stage} version", managed=managed)
    value = ctx.aws.call("secretsmanager", "get_secret_value", f"read the value of secret {name}", SecretId=arn,
                         VersionStage=version_stage)
    raw = value.get("SecretString")
    data = raw.encode("utf-8") if raw is not None else bytes(value.get("SecretBinary", b""))
    try:
        key = KeyMaterial.parse(data)
    except NotAKeyError as exc:
        return SecretState(name, arn, kms, None, f"its value is not a usable key: {exc}", value["VersionId"], managed)
    return SecretState(name, arn, kms, key, "", value["VersionId"], managed)


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
    raise ConfigError(f"secret {state.name} was not created by gcpfargate and {what}; refusing to overwrite it",
                      "Set secret.name to another secret, or tag this one managed-by=gcpfargate to let gcpfargate "
                      "replace its value")


def _has_stage(described: dict[str, Any], stage: str) -> bool:
    return any(stage in stages for stages in described.get("VersionIdsToStages", {}).values())


def store(
    ctx: Context, name: str, key: KeyMaterial, existing: SecretState | None, account_email: str
) -> tuple[str, str]:
    """Store `key` as the new AWSCURRENT version (creating the secret when missing): (arn, version_id)."""
    tags = [{"Key": TAG_ACCOUNT, "Value": account_email}, {"Key": TAG_KEY_ID, "Value": key.key_id},
            {"Key": "managed-by", "Value": "gcpfargate"}]
    if existing is None:
        params: dict[str, Any] = {"Name": name, "SecretString": key.text(), "Tags": tags,
                                  "Description": f"GCP service-account key of {account_email} (gcpfargate)"}
        kms = ctx.settings.secret.kms_key_id
        if kms:
            params["KmsKeyId"] = kms
        try:
            created = ctx.aws.call("secretsmanager", "create_secret", f"create secret {name}", **params)
        except AwsError as exc:
            # Another gcpfargate run (two deploys at once) created it since we read: store into it instead.
            existing = _created_meanwhile(ctx, name) if exc.code == "ResourceExistsException" else None
            if existing is None:
                raise
        else:
            return created["ARN"], created["VersionId"]
    put = ctx.aws.call("secretsmanager", "put_secret_value", f"store the new key in secret {name}",
                       SecretId=existing.arn, SecretString=key.text())
    try:
        ctx.aws.call("secretsmanager", "tag_resource", f"tag secret {name}", SecretId=existing.arn, Tags=tags)
    except AwsError as exc:
        # The key is stored and referenced: a missing tag is cosmetic, not worth failing for.
        ctx.reporter.warn(f"stored the key but could not update the tags of {name}: {exc.message}")
    return put["ARN"], put["VersionId"]


def _created_meanwhile(ctx: Context, name: str) -> SecretState | None:
    """The secret another gcpfargate run just created (tagged as ours), or None."""
    found = describe(ctx, name)
    if found is None or not any(tag.get("Key") == "managed-by" and tag.get("Value") == "gcpfargate"
                                for tag in found.get("Tags", [])):
        return None
    return SecretState(name, found["ARN"], str(found.get("KmsKeyId", "")), None, managed=True)


def referenced_key_ids(ctx: Context, arn: str) -> dict[str, list[str]]:
    """key id -> stages, for every version of the secret that still has a stage (AWSCURRENT, AWSPREVIOUS…)."""
    # DescribeSecret lists exactly the versions that have a stage (ListSecretVersionIds has no paginator).
    described = ctx.aws.call("secretsmanager", "describe_secret", "read the versions of the secret", SecretId=arn)
    found: dict[str, list[str]] = {}
    for version_id, stages in (described.get("VersionIdsToStages") or {}).items():
        if not stages:
            continue
        value = ctx.aws.call("secretsmanager", "get_secret_value", "read a version of the secret", SecretId=arn,
                             VersionId=version_id)
        raw = value.get("SecretString")
        try:
            key = KeyMaterial.parse(raw if raw is not None else bytes(value.get("SecretBinary", b"")))
        except NotAKeyError:
            continue
        found.setdefault(key.key_id, []).extend(stages)
    return found


def kms_key_arn(ctx: Context, key_id: str | None = None) -> str:
    """The ARN of KMS key `key_id` (an id, alias or ARN; default secret.kms_key_id), for policies; "" for none.

    Pass the secret's own KmsKeyId (DescribeSecret) when it exists: an adopted secret may be encrypted
    with another key than the configured one, and "" there means the AWS managed key, which needs no
    grant (issue 12 item 6)."""
    key_id = ctx.settings.secret.kms_key_id if key_id is None else key_id
    if not key_id:
        return ""
    if key_id.startswith("arn:") and ":key/" in key_id:
        return key_id
    described = ctx.aws.call("kms", "describe_key", f"read KMS key {key_id}", KeyId=key_id)
    return str(described["KeyMetadata"]["Arn"])
