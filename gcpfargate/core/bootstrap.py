"""Steps 1–2 of the recipe: a key of the service account, stored in Secrets Manager, readable by
the task's execution role. Idempotent: a secret that already holds a live key of the account is
left alone."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from gcpfargate.clients.gcp import MAX_USER_KEYS, ServiceAccount
from gcpfargate.core import execution_role, secret
from gcpfargate.core.context import Context
from gcpfargate.errors import AwsError, GcpError, GcpfargateError, KeyLimitError
from gcpfargate.keyfile import KeyMaterial


@dataclass
class BootstrapResult:
    service_account: str
    key_id: str
    secret_arn: str
    execution_role_arn: str
    changed: bool
    plan: list[str] = field(default_factory=list)  # what a --dry-run would do
    warnings: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        if not self.plan:
            data.pop("plan")
        data.pop("warnings")
        return data


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


def bootstrap(ctx: Context, new_key: bool = False, grant: bool = False) -> BootstrapResult:
    settings = ctx.settings
    settings.require("gcp.project", "gcp.service_account", "task.family")
    plan: list[str] = []
    with ctx.reporter.step("Resolving the service account"):
        account = resolve_account(ctx, plan)
    name = settings.secret_name
    with ctx.reporter.step(f"Reading secret {name}"):
        state = secret.read(ctx, name)
        live = account.unique_id != "" and current_key_is_live(ctx, state, account)
    secret.guard_foreign(state, account.email)
    changed = bool(plan)
    if live and not new_key:
        assert state is not None and state.key is not None
        key_id, secret_arn = state.key.key_id, state.arn
    else:
        reason = ("--new-key" if new_key and live else "the secret does not exist" if state is None
                  else state.problem or "the secret's key is not a live key of this account")
        plan.append(f"create a key for {account.email} and store it in secret {name} ({reason})")
        changed = True
        if account.unique_id:
            check_key_room(ctx, account.email)
        if ctx.dry_run:
            key_id, secret_arn = "(new)", state.arn if state else f"(new secret {name})"
        else:
            key, secret_arn, _ = create_and_store(ctx, account, state)
            key_id = key.key_id
    kms_arn = secret.kms_key_arn(ctx)
    with ctx.reporter.step("Checking the execution role"):
        role = execution_role.ensure(ctx, secret_arn, kms_arn, grant=grant)
    warnings: list[str] = []
    if role.judgement is not None and not role.judgement.allowed:
        warnings.append(f"execution role {role.arn} may not read the secret ({role.judgement.reason}); "
                        "ECS tasks will fail to start. Rerun with --grant to add the permission")
        ctx.reporter.warn(warnings[-1])
    if role.changed:
        plan.append(f"create or update execution role {role.arn}")
    return BootstrapResult(service_account=account.email, key_id=key_id, secret_arn=secret_arn,
                           execution_role_arn=role.arn, changed=changed or role.changed,
                           plan=plan if ctx.dry_run else [], warnings=warnings)
