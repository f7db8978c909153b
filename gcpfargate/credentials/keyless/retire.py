"""Retiring what key mode left behind, after a switch to keyless: offered, never silent.

When `bootstrap` (or `deploy`, after the keyless revision is registered) runs in keyless mode and
the configured secret still holds user-managed keys of the account, those keys are long-lived
credentials nothing needs any more. Retiring them is irreversible, so it happens only when the user
agrees: on a terminal they are asked; with `--retire-keys` they agreed up front; otherwise one line
says what is left and how to retire it, and nothing is touched.

Retiring schedules the secret's deletion first (restorable for RECOVERY_DAYS, and no task can start
with the key after it), then deletes each key. A rerun after a partial failure finds the keys again
through the deleted secret's key-id tag. It is refused while a family's latest ACTIVE revision still
takes its credentials from the secret (it would stop authenticating): the line names the families.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

from gcpfargate.core import plan as planning
from gcpfargate.core.context import Context
from gcpfargate.credentials.key import secret
from gcpfargate.ecs import cluster as ecs
from gcpfargate.errors import GcpError

RECOVERY_DAYS = 7  # the shortest window Secrets Manager allows: restorable for a week
RETIRE_FLAG = "gcpfargate bootstrap --retire-keys"


@dataclass(frozen=True)
class Leftovers:
    service_account: str
    secret_name: str
    secret_arn: str
    key_ids: list[
        str
    ]  # keys of the account that labelled versions of the secret hold, and that exist
    secret_scheduled: bool  # an earlier retirement already scheduled the secret's deletion
    readers: list[str]  # families whose latest ACTIVE revision still reads the secret (key mode)

    def describe(self) -> str:
        return (
            f"{len(self.key_ids)} key(s) of {self.service_account} ({', '.join(self.key_ids)}) "
            f"held by secret {self.secret_name}"
        )


def find(ctx: Context, email: str) -> Leftovers | None:
    """The key-mode keys the configured secret holds, or None when there are none left."""
    name = ctx.settings.secret_name
    described: dict[str, Any] | None = ctx.aws.find(
        "secretsmanager",
        "describe_secret",
        "ResourceNotFoundException",
        f"read secret {name}",
        SecretId=name,
    )
    if described is None or secret.tags_of(described).get(secret.TAG_ACCOUNT, email) != email:
        return None  # no secret, or one that holds another account's keys: none of ours to retire
    held = secret.keys_by_label(ctx, described)  # a deleted secret: its tagged key id
    existing = {key.key_id for key in ctx.iam.list_user_keys(email)}
    key_ids = [key_id for key_id in held if key_id in existing]
    if not key_ids:
        return None
    arn = str(described["ARN"])
    families = dict.fromkeys(
        [*secret.tags_of(described).get(secret.TAG_FAMILIES, "").split(), ctx.settings.family]
    )
    readers = [family for family in families if family and _reads(ctx, family, arn)]
    return Leftovers(email, name, arn, key_ids, bool(described.get("DeletedDate")), readers)


def _reads(ctx: Context, family: str, secret_arn: str) -> bool:
    definition = ecs.describe_task_definition(ctx, family) or {}
    return any(
        str(item.get("valueFrom", "")).startswith(secret_arn)
        for container in definition.get("containerDefinitions") or []
        for item in container.get("secrets") or []
    )


def offer(ctx: Context, email: str, confirm: Callable[[Leftovers], bool]) -> list[str]:
    """Find what key mode left and retire it if `confirm` agrees; the ids of the deleted keys."""
    found = find(ctx, email)
    if found is None:
        return []
    if found.readers:
        ctx.reporter.info(
            f"note: key mode left {found.describe()}; not retiring them while "
            f"{', '.join(found.readers)} still take the key from the secret (their latest revision "
            f"is key mode): switch them to keyless, then run `{RETIRE_FLAG}`"
        )
        return []
    # Asking belongs to applying: a preview retires nothing, so there is nothing to confirm.
    if ctx.plan.apply and not confirm(found):
        ctx.reporter.info(
            f"note: key mode left {found.describe()}; nothing was done to them. Run "
            f"`{RETIRE_FLAG}` to delete them and schedule the secret's deletion"
        )
        return []
    retired = ctx.plan.change(
        planning.delete(
            "service-account keys",
            found.secret_name,
            f"retire {found.describe()} when confirmed (or --retire-keys): schedule the secret's "
            "deletion, delete the keys",
            before=found.key_ids,
        ),
        partial(retire, ctx, found),
    )
    return retired or []


def retire(ctx: Context, found: Leftovers) -> list[str]:
    if not found.secret_scheduled:
        with ctx.reporter.step(
            f"Scheduling deletion of secret {found.secret_name} ({RECOVERY_DAYS}-day recovery)"
        ):
            ctx.aws.call(
                "secretsmanager",
                "delete_secret",
                f"schedule deletion of secret {found.secret_name}",
                SecretId=found.secret_arn,
                RecoveryWindowInDays=RECOVERY_DAYS,
            )
    deleted = []
    for key_id in found.key_ids:
        with ctx.reporter.step(f"Deleting key {key_id[:12]}… of {found.service_account}"):
            try:
                ctx.iam.delete_key(found.service_account, key_id)
            except GcpError as exc:
                if exc.code != "NOT_FOUND":  # gone already: what retiring wants
                    raise GcpError(
                        f"retiring key mode's keys stopped: {exc.message}",
                        f"Rerun `{RETIRE_FLAG}` to delete the rest (the secret stays scheduled for "
                        "deletion)",
                    ).with_code(exc.code) from None
        deleted.append(key_id)
    return deleted
