"""Key rotation: new key → new secret version → verify → retire the previous key.

Order matters for safety. The new key becomes AWSCURRENT only after it exists; Secrets Manager
moves AWSPREVIOUS to the old version by itself, so running tasks (which already wrote their file)
and restarts (which read AWSCURRENT) both keep working. If verification fails, AWSCURRENT is moved
back and the new key deleted, so the secret always points at a working key and nothing is orphaned.
Previous keys are disabled by default because disabling is reversible.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from gcpfargate.core import keys, secret
from gcpfargate.core.context import Context
from gcpfargate.core.verify import key_authenticates
from gcpfargate.errors import ConfigError, GcpError, GcpfargateError


@dataclass
class RotateResult:
    key_id: str | None  # None in a dry run: the key is not created
    previous_key_ids: list[str]
    secret_version_id: str | None  # likewise
    previous_action: str  # disabled, deleted or kept
    pruned_key_ids: list[str] = field(default_factory=list)
    plan: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"key_id": self.key_id, "previous_key_ids": self.previous_key_ids,
                "secret_version_id": self.secret_version_id, "previous_action": self.previous_action}
        if self.pruned_key_ids:
            data["pruned_key_ids"] = self.pruned_key_ids
        if self.plan:
            data["plan"] = self.plan
        return data


def rotate_key(ctx: Context, verify: bool = True, previous: str = "disable", prune: bool = False,
               confirm: Callable[[list[str]], bool] | None = None) -> RotateResult:
    settings = ctx.settings
    if settings.gcp.auth == "keyless":
        what = "--prune" if prune else "rotate-key"
        raise ConfigError(f"{what} does not apply in keyless mode (gcp.auth = \"keyless\"): tasks hold no key, "
                          "only short-lived tokens", "To retire keys left from key mode, see README "
                          "\"Keyless\" (migration); gcloud iam service-accounts keys list lists them")
    settings.require("gcp.project", "gcp.service_account")
    plan: list[str] = []
    with ctx.reporter.step("Resolving the service account"):
        account = keys.resolve_account(ctx, plan)
    name = settings.secret_name
    state = secret.read(ctx, name)
    if state is None:
        raise ConfigError(f"secret {name} does not exist, so there is no key to rotate",
                          "Run `gcpfargate bootstrap` first")
    secret.guard_foreign(state, account.email)
    previous_ids = [state.key.key_id] if state.key is not None and state.key.client_email == account.email else []
    if ctx.dry_run:
        plan.append(f"create a key for {account.email} and store it as AWSCURRENT of {name}")
        plan += [f"{previous} previous key {key_id}" for key_id in previous_ids if previous != "keep"]
        return RotateResult(None, previous_ids, None, _past(previous), plan=plan)

    keys.check_key_room(ctx, account.email)
    key, _, version_id = keys.create_and_store(ctx, account, state)
    if verify:
        with ctx.reporter.step(f"Verifying key {key.key_id[:12]}… at its token endpoint"):
            try:
                key_authenticates(key)
            except GcpfargateError:
                _roll_back(ctx, state, version_id, account.email, key.key_id)
                raise
    _retire(ctx, account.email, [k for k in previous_ids if k != key.key_id], previous)
    pruned = prune_unreferenced(ctx, account.email, state.arn, confirm) if prune else []
    return RotateResult(key.key_id, previous_ids, version_id, _past(previous), pruned_key_ids=pruned)


def _past(action: str) -> str:
    return {"disable": "disabled", "delete": "deleted", "keep": "kept"}[action]


def _roll_back(ctx: Context, state: secret.SecretState, new_version: str, email: str, key_id: str) -> None:
    """Point AWSCURRENT back at the version that was current, then delete the unverified key."""
    try:
        if state.version_id:
            ctx.aws.call("secretsmanager", "update_secret_version_stage",
                         "move AWSCURRENT back to the previous key", SecretId=state.arn, VersionStage="AWSCURRENT",
                         MoveToVersionId=state.version_id, RemoveFromVersionId=new_version)
    except GcpfargateError as exc:
        # The new key stays: the secret points at it, and deleting it would break every task start.
        raise GcpError(f"the new key {key_id} did not verify, and moving AWSCURRENT back failed ({exc.message}); "
                       f"secret {state.name} now holds the unverified key",
                       f"Move it back: aws secretsmanager update-secret-version-stage --secret-id {state.arn} "
                       f"--version-stage AWSCURRENT --move-to-version-id {state.version_id} "
                       f"--remove-from-version-id {new_version}; then gcloud iam service-accounts keys delete "
                       f"{key_id} --iam-account {email}") from None
    ctx.iam.delete_key(email, key_id)
    ctx.reporter.warn(f"the new key {key_id} did not verify; the secret is back on the previous key")


def _retire(ctx: Context, email: str, key_ids: list[str], action: str) -> None:
    failures: list[str] = []
    for key_id in key_ids:
        if action == "keep":
            continue
        try:
            if action == "delete":
                ctx.iam.delete_key(email, key_id)
            elif (info := ctx.iam.get_key(email, key_id)) is not None and not info.disabled:
                ctx.iam.disable_key(email, key_id)
        except GcpError as exc:
            if exc.code == "NOT_FOUND":
                continue  # already gone: nothing to retire
            failures.append(f"{key_id}: {exc.message}")
    if failures:
        raise GcpError(f"rotated to the new key, but could not {action} the previous key ({'; '.join(failures)})",
                       "The secret is on the new, verified key; rerun `gcpfargate rotate-key --prune` later")


def prune_unreferenced(ctx: Context, email: str, secret_arn: str,
                       confirm: Callable[[list[str]], bool] | None) -> list[str]:
    """Delete user-managed keys of the account that no staged secret version references.

    Other secrets may hold keys of the same account (another family, another team): every secret
    tagged with this account counts, not only ours, so pruning never breaks someone else's task.
    """
    referenced = secret.referenced_key_ids(ctx, secret_arn)
    tagged = ctx.aws.paginate("secretsmanager", "list_secrets", "SecretList", "list secrets of the account",
                              Filters=[{"Key": "tag-value", "Values": [email]}])
    for other in tagged:
        if other["ARN"] != secret_arn:
            referenced.update(secret.referenced_key_ids(ctx, other["ARN"]))
    candidates = [key.key_id for key in ctx.iam.list_user_keys(email) if key.key_id not in referenced]
    if not candidates:
        return []
    if confirm is None or not confirm(candidates):
        ctx.reporter.info(f"not pruning {len(candidates)} unreferenced key(s): not confirmed (use --yes)")
        return []
    for key_id in candidates:
        ctx.iam.delete_key(email, key_id)
    return candidates
