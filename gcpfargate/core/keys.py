"""Service-account keys: the account they belong to, room for one more, and creating one that is
stored in the secret or not left behind at all. Shared by `bootstrap` and `rotate-key`."""

from __future__ import annotations

from datetime import UTC, datetime

from gcpfargate.clients.gcp import MAX_USER_KEYS, ServiceAccount
from gcpfargate.core import secret
from gcpfargate.core.context import Context
from gcpfargate.errors import AwsError, GcpError, GcpfargateError, KeyLimitError
from gcpfargate.keyfile import KeyMaterial


def resolve_account(ctx: Context, plan: list[str]) -> ServiceAccount:
    settings = ctx.settings
    project = settings.gcp.project
    account = ctx.iam.get_service_account(project, settings.gcp.service_account)
    if account is not None:
        if account.disabled:
            raise GcpError(f"service account {account.email} is disabled",
                           "Enable it in the GCP console or with `gcloud iam service-accounts enable`")
        return account
    email = settings.service_account_email
    if not settings.gcp.create_service_account:
        raise GcpError(f"service account {email} does not exist in project {project}",
                       "Create it, fix gcp.service_account, or set gcp.create_service_account = true")
    plan.append(f"create service account {email}")
    if ctx.dry_run:
        return ServiceAccount(email=email, unique_id="", project=project, disabled=False)
    with ctx.reporter.step(f"Creating service account {email}"):
        return ctx.iam.create_service_account(project, settings.account_id)


def current_key_is_live(ctx: Context, state: secret.SecretState | None, account: ServiceAccount) -> bool:
    """True when the secret holds a key of this account that still exists and is enabled in GCP."""
    if state is None or state.key is None or state.key.client_email != account.email:
        return False
    info = ctx.iam.get_key(account.email, state.key.key_id)
    return info is not None and not info.disabled


def check_key_room(ctx: Context, email: str) -> None:
    """Fail before creating the 11th key, listing what is there and how to prune."""
    keys = ctx.iam.list_user_keys(email)
    if len(keys) < MAX_USER_KEYS:
        return
    now = datetime.now(UTC)
    listing = ", ".join(
        f"{key.key_id} ({key.age_days(now)} days{', disabled' if key.disabled else ''})" for key in keys)
    raise KeyLimitError(f"service account {email} already holds {len(keys)} of {MAX_USER_KEYS} user-managed keys: "
                        f"{listing}",
                        "Delete keys no secret uses with `gcpfargate rotate-key --prune`, or "
                        f"`gcloud iam service-accounts keys delete KEY_ID --iam-account {email}`")


def create_and_store(ctx: Context, account: ServiceAccount, state: secret.SecretState | None) -> tuple[KeyMaterial,
                                                                                                         str, str]:
    """Create a key and store it; if storing fails, delete the new key before reporting the failure."""
    name = ctx.settings.secret_name
    with ctx.reporter.step(f"Creating a key for {account.email}"):
        key = ctx.iam.create_key(account.email)
    try:
        with ctx.reporter.step(f"Storing key {key.key_id[:12]}… in secret {name}"):
            arn, version_id = secret.store(ctx, name, key, state, account.email)
    except BaseException as exc:
        stored = _stored_anyway(ctx, name, key.key_id) if isinstance(exc, AwsError) else None
        if stored is not None:
            return key, stored.arn, stored.version_id
        _delete_orphan(ctx, account.email, key.key_id, exc)
        raise
    return key, arn, version_id


def _stored_anyway(ctx: Context, name: str, key_id: str) -> secret.SecretState | None:
    """The secret's state when its AWSCURRENT holds `key_id` although storing reported a failure.

    A lost answer (connection reset, timeout after the write) looks like a failure, but the key may
    be stored and current: deleting it then would leave the secret pointing at a deleted key.
    """
    try:
        state = secret.read(ctx, name)
    except GcpfargateError:
        return None
    if state is None or state.key is None or state.key.key_id != key_id:
        return None
    ctx.reporter.detail(f"storing key {key_id} reported a failure, but the secret holds it: keeping it")
    return state


def _delete_orphan(ctx: Context, email: str, key_id: str, cause: BaseException) -> None:
    try:
        ctx.iam.delete_key(email, key_id)
    except GcpfargateError as cleanup:
        reason = cause.message if isinstance(cause, GcpfargateError) else type(cause).__name__
        raise GcpError(f"storing the new key failed ({reason}) and deleting key {key_id} of {email} also failed: "
                       f"{cleanup.message}",
                       f"Delete it by hand: gcloud iam service-accounts keys delete {key_id} --iam-account {email}"
                       ) from None
    ctx.reporter.detail(f"deleted the unstored key {key_id} of {email}")
