"""Key rotation: new key → new secret version → verify → roll the services → retire old keys.

The rule (README, `rotate-key --help`): a task started before rotation N keeps working until
rotation N+1. The new version becomes AWSCURRENT and the old one AWSPREVIOUS; the previous key
stays enabled, so a running task (whose file holds it) keeps refreshing tokens. What this rotation
retires is older: the key two rotations old is disabled, and the one the last rotation disabled is
deleted (core/lifecycle.py). `--revoke-previous` is the incident path: the previous key is disabled
now, after the services rolled, naming the running tasks that lose access.

If verification is refused for good, AWSCURRENT is moved back and the new key deleted. A key that is
only "not yet" accepted when the backoff runs out stays current: Google can take minutes to
propagate a key, and deleting it on a timeout alone would undo a rotation that worked.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from typing import Any

from gcpfargate.clients.google.gcp import ServiceAccount
from gcpfargate.core import plan as planning
from gcpfargate.core.context import Context
from gcpfargate.core.plan import Change
from gcpfargate.core.results import plan_json
from gcpfargate.credentials.key import keys, lifecycle, readers, secret
from gcpfargate.credentials.key.verify import BACKOFF, key_authenticates
from gcpfargate.credentials.mode import mode_for
from gcpfargate.errors import AwsError, ConfigError, GcpError, GcpfargateError

PREVIOUS = {"keep": "kept", "revoke": "disabled", "delete": "deleted"}


@dataclass
class RotateResult:
    key_id: str | None  # None in a dry run: the key is not created
    previous_key_ids: list[str]
    secret_version_id: str | None  # likewise
    previous_action: (
        str  # kept (the default), disabled or deleted (--revoke-previous / --delete-previous)
    )
    verified: bool | None = (
        None  # False: not accepted yet when the backoff ran out (kept, not retired)
    )
    disabled_key_ids: list[str] = field(default_factory=list)
    deleted_key_ids: list[str] = field(default_factory=list)
    pruned_key_ids: list[str] = field(default_factory=list)
    readers: list[str] = field(default_factory=list)
    rolled: list[str] = field(default_factory=list)
    not_rolled: list[str] = field(default_factory=list)
    tasks_losing_access: list[str] = field(default_factory=list)
    plan: list[Change] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        data = {
            name: plan_json(value) if name == "plan" else value
            for name, value in self.__dict__.items()
            if value not in ([], None)
            or name in ("key_id", "secret_version_id", "previous_key_ids")
        }
        return data


def rotate_key(
    ctx: Context,
    verify: bool = True,
    previous: str = "keep",
    prune: bool = False,
    confirm: Callable[[list[lifecycle.PruneEntry]], bool] | None = None,
    verify_schedule: Sequence[float] = BACKOFF,
) -> RotateResult:
    settings = ctx.settings
    mode_for(settings).require_keys("--prune" if prune else "rotate-key")
    settings.require("gcp.project", "gcp.service_account")
    mark = ctx.plan.mark()
    with ctx.reporter.step("Resolving the service account"):
        account = keys.resolve_account(ctx)
    name = settings.secret_name
    state = secret.read(ctx, name)
    if state is None:
        raise ConfigError(
            f"secret {name} does not exist, so there is no key to rotate",
            "Run `gcpfargate bootstrap` first",
        )
    secret.guard_foreign(state, account.email)
    previous_ids = (
        [state.key.key_id]
        if state.key is not None and state.key.client_email == account.email
        else []
    )
    result = RotateResult(None, previous_ids, None, PREVIOUS[previous])
    who = readers.readers(ctx, readers.families(ctx, state.families))
    result.readers = [reader.label() for reader in who]
    for line in result.readers:
        ctx.reporter.info(f"reads {name}: {line}")
    secret.repair_key_tag(ctx, state, name, account.email)
    if prune:
        result.pruned_key_ids = lifecycle.prune(ctx, account.email, name, confirm).deleted
    # Room first: the keys the last rotation disabled are deleted before the new key is created
    # (the plan's last change names them).
    stored = ctx.plan.change(
        planning.create(
            "service-account key",
            account.email,
            f"create a key for {account.email} and store it as AWSCURRENT of {name}",
        ),
        partial(_new_key, ctx, account, state, result),
    )
    promoted_at = datetime.now(UTC)
    if stored is not None:  # None in a preview: there is no key to verify or roll onto yet
        result.key_id, result.secret_version_id = stored.key.key_id, stored.version_id
        try:
            result.verified = (
                _verify(ctx, stored, state, account.email, verify_schedule) if verify else None
            )
        finally:
            # The pending label protected the new key while it was under way; from here
            # AWSCURRENT does. It goes before the retiring below, so the survey there judges this
            # run's key like any other.
            keys.finish(ctx, stored)
        if result.verified is False:
            return result  # nothing is retired until the new key is known to work
    services = [reader for reader in who if reader.service]
    if services:
        labels = [reader.label() for reader in services]
        rolled = ctx.plan.change(
            planning.update(
                "ECS services",
                ", ".join(labels),
                f"roll {len(services)} service(s) onto the new key: {', '.join(labels)}",
            ),
            partial(_roll, ctx, services),
        )
        if rolled is not None:
            result.rolled, result.not_rolled = rolled
    if previous != "keep":
        result.tasks_losing_access = _revoke(
            ctx,
            account.email,
            previous_ids,
            previous,
            state,
            promoted_at if stored is not None else None,
            result.not_rolled,
        )
    disabled = ctx.plan.change(
        planning.update(
            "service-account keys",
            account.email,
            "disable keys held by no labelled version; delete keys the last rotation disabled",
        ),
        partial(lifecycle.disable_superseded, ctx, account.email, name),
    )
    result.disabled_key_ids = disabled or []
    result.plan = ctx.plan.shown(mark)
    return result


def _new_key(
    ctx: Context, account: ServiceAccount, state: secret.SecretState, result: RotateResult
) -> keys.Stored:
    """Room first (the keys the last rotation disabled go), then the new key, stored as
    AWSCURRENT."""
    name = ctx.settings.secret_name
    result.deleted_key_ids = lifecycle.delete_retired(ctx, account.email, name)
    known = keys.check_key_room(ctx, account.email, name)
    return keys.create_and_store(ctx, account, state, known)


def _roll(ctx: Context, services: list[readers.Reader]) -> tuple[list[str], list[str]]:
    with ctx.reporter.step(f"Rolling {len(services)} service(s) onto the new key"):
        rolled, not_rolled = readers.roll(ctx, services)
    for line in not_rolled:
        ctx.reporter.warn(f"not rolled: {line}")
    return rolled, not_rolled


def _verify(
    ctx: Context,
    stored: keys.Stored,
    state: secret.SecretState,
    email: str,
    schedule: Sequence[float],
) -> bool:
    key = stored.key
    still_live = keys.liveness(ctx, email, key.key_id)
    with ctx.reporter.step(
        f"Verifying key {key.key_id[:12]}… at its token endpoint (new keys can take minutes)"
    ):
        try:
            verdict = key_authenticates(key, still_live, schedule)
        except GcpfargateError as refused:
            _roll_back(ctx, state, stored, refused)
            raise
    if not verdict.verified:
        ctx.reporter.warn(
            f"key {key.key_id} is AWSCURRENT but not verified yet: Google still answered "
            f'"{verdict.last_refusal}" after {verdict.waited_s:.0f} s (new keys can take minutes). '
            "It was kept and nothing was retired; the previous key stays enabled. Check later with "
            "`gcpfargate doctor`, and retire old keys with the next `gcpfargate rotate-key`"
        )
    return verdict.verified


def _revoke(
    ctx: Context,
    email: str,
    key_ids: list[str],
    action: str,
    state: secret.SecretState,
    promoted_at: datetime | None,
    not_rolled: list[str],
) -> list[str]:
    """The incident path: disable (or delete) the previous key now, naming who loses access
    (`promoted_at` None: a preview, before the new key exists)."""
    losing: list[str] = []
    if promoted_at is not None:
        families = readers.families(ctx, state.families)
        started = readers.tasks_started_before(ctx, families, promoted_at)
        losing = [task.label() for task in started]
    for task in losing:
        ctx.reporter.warn(f"running task {task} holds the previous key and loses access now")
    for line in not_rolled:
        ctx.reporter.warn(f"{line} was not rolled: its tasks lose access now")
    failures: list[str] = []
    for key_id in key_ids:
        record = planning.delete if action == "delete" else planning.update
        ctx.plan.change(
            record("service-account key", key_id, f"{action} previous key {key_id}"),
            partial(_revoke_one, ctx, email, key_id, action, failures),
        )
    if failures:
        raise GcpError(
            f"rotated to the new key, but could not {action} the previous key "
            f"({'; '.join(failures)})",
            f"The secret is on the new key; rerun `gcpfargate rotate-key --{action}-previous`, or "
            f"gcloud iam service-accounts keys disable KEY_ID --iam-account {email}",
        )
    return losing


def _revoke_one(ctx: Context, email: str, key_id: str, action: str, failures: list[str]) -> None:
    verb = "Deleting" if action == "delete" else "Disabling"
    with ctx.reporter.step(f"{verb} previous key {key_id[:12]}… (--{action}-previous)"):
        try:
            if action == "delete":
                ctx.iam.delete_key(email, key_id)
            else:
                ctx.iam.disable_key(email, key_id)
        except GcpError as exc:
            if exc.code != "NOT_FOUND":
                failures.append(f"{key_id}: {exc.message}")


def _roll_back(
    ctx: Context, state: secret.SecretState, stored: keys.Stored, refused: GcpfargateError
) -> None:
    """Point AWSCURRENT back at the version that was current, then delete the refused key."""
    email, key_id, new_version = stored.key.client_email, stored.key.key_id, stored.version_id
    back_to = stored.previous_version or state.version_id
    try:
        if back_to:
            ctx.aws.call(
                "secretsmanager",
                "update_secret_version_stage",
                "move AWSCURRENT back to the previous key",
                SecretId=state.arn,
                VersionStage="AWSCURRENT",
                MoveToVersionId=back_to,
                RemoveFromVersionId=new_version,
            )
    except AwsError as exc:
        # The new key stays: the secret points at it, and deleting it would break every task start.
        raise GcpError(
            f"the new key {key_id} was refused, and moving AWSCURRENT back failed ({exc.message}); "
            f"secret {state.name} now holds the refused key",
            f"Move it back: aws secretsmanager update-secret-version-stage --secret-id {state.arn} "
            f"--version-stage AWSCURRENT --move-to-version-id {back_to} "
            f"--remove-from-version-id {new_version}; then gcloud iam service-accounts keys delete "
            f"{key_id} --iam-account {email}",
        ) from None
    # The promotion tagged the refused key; the tag must name what AWSCURRENT holds again, or doctor
    # --no-get-secret judges a deleted key. Best effort: the next run repairs it too.
    secret.tag_current(ctx, state.arn, state.name, email)
    try:
        ctx.iam.delete_key(email, key_id)
    except GcpError as exc:
        if exc.code != "NOT_FOUND":  # already gone is what the rollback wanted
            # Without this the line was the adapter's bare "failed to delete key": no word of the
            # rollback, and no way out (the refused key stays enabled as AWSPREVIOUS).
            raise GcpError(
                f"{refused.message}; the secret is back on the previous key, but deleting the "
                f"refused key {key_id} failed ({exc.message})",
                f"Delete it by hand: gcloud iam service-accounts keys delete {key_id} "
                f"--iam-account {email}",
            ) from None
    ctx.reporter.warn(f"the new key {key_id} was refused; the secret is back on the previous key")
