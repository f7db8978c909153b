"""Steps 1–2 of the recipe: a key of the service account, stored in Secrets Manager, readable by
the task's execution role. Idempotent: a secret that already holds a live key of the account is
left alone."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any, TypeVar

from gcpfargate.clients.google.gcp import ServiceAccount
from gcpfargate.core import plan as planning
from gcpfargate.core.context import Context
from gcpfargate.core.plan import Change
from gcpfargate.core.results import PlannedResult
from gcpfargate.credentials.key import ahead, keys, lifecycle, secret
from gcpfargate.iam import execution_role
from gcpfargate.keymaterial.keyfile import KeyMaterial

if TYPE_CHECKING:
    from concurrent.futures import Future

T = TypeVar("T")


@dataclass
class BootstrapResult(PlannedResult):
    service_account: str
    key_id: str | None  # None: a preview that would create a key
    secret_arn: str | None  # None: a preview that would create the secret
    execution_role_arn: str
    changed: bool
    plan: list[Change] = field(default_factory=list)  # what a preview would do

    def identity(self) -> str:
        """What tasks authenticate with, for the deploy summary (None: a preview would create
        it)."""
        return f"key {self.key_id or '(new)'} in {self.secret_arn or '(new secret)'}"


def bootstrap(ctx: Context, new_key: bool = False, grant: bool = False) -> BootstrapResult:
    settings = ctx.settings
    settings.require("gcp.project", "gcp.service_account", "task.family")
    mark = ctx.plan.mark()
    name = settings.secret_name
    # The secret (AWS) is read while GCP answers for the account: neither needs the other, and the
    # two SDKs share nothing. A failure of either surfaces in its own step, in the same order as
    # before.
    reading = _in_background(secret.read, ctx, name)
    with ctx.reporter.step("Resolving the service account"):
        account = keys.resolve_account(ctx)
    with ctx.reporter.step(f"Reading secret {name}"):
        state = reading.result()
        live = account.unique_id != "" and keys.current_key_is_live(ctx, state, account)
    if ctx.iam.answered_ahead:
        ctx.reporter.detail(
            f"{ctx.iam.answered_ahead} GCP read(s) made by a second process while the SDKs loaded"
        )
    secret.guard_foreign(state, account.email)
    changed = bool(ctx.plan.since(mark))
    key_id: str | None
    secret_arn: str | None
    if live and not new_key:
        assert state is not None and state.key is not None
        key_id, secret_arn = state.key.key_id, state.arn
        secret.repair_key_tag(ctx, state, name, account.email)
        if ctx.plan.apply:
            ahead.remember(ctx, account.email, key_id)
    else:
        reason = (
            "--new-key"
            if new_key and live
            else "the secret does not exist"
            if state is None
            else state.problem or "the secret's key is not a live key of this account"
        )
        changed = True
        stored = ctx.plan.change(
            planning.create(
                "service-account key",
                account.email,
                f"create a key for {account.email} and store it in secret {name} ({reason})",
            ),
            partial(_new_key, ctx, account, state),
        )
        if stored is None:
            # Known after apply; a preview still checks there is room for the key (the apply
            # checks once it has deleted the keys the last rotation retired).
            if account.unique_id:
                keys.check_key_room(ctx, account.email, name)
            key_id, secret_arn = None, state.arn if state else None
        else:
            key_id, secret_arn = stored.key.key_id, stored.arn
            ahead.remember(ctx, account.email, key_id)
    if state is not None and settings.family and settings.family not in state.families:
        ctx.plan.change(
            planning.update("secret", name, f"record family {settings.family} on secret {name}"),
            partial(secret.add_family, ctx, name, state.arn, state.tags, settings.family),
        )
    # The key that really encrypts the secret; a secret created just now uses the configured one.
    kms_arn = secret.kms_key_arn(ctx, state.kms_key_id if state is not None else None)
    with ctx.reporter.step("Checking the execution role"):
        # A preview before the secret exists judges the role against a stand-in for its ARN.
        role = execution_role.ensure(
            ctx, secret_arn or f"(new secret {name})", kms_arn, grant=grant
        )
    if role.judgement is not None and not role.judgement.allowed:
        ctx.reporter.warn(
            f"ECS tasks will fail to start: execution role {role.arn} (task.execution_role_arn) "
            f"may not read the secret {name} ({role.judgement.reason}). Run "
            "`gcpfargate bootstrap --grant` (or `deploy --grant`) to give it read access, or fix "
            "the role's policy"
        )
    return BootstrapResult(
        service_account=account.email,
        key_id=key_id,
        secret_arn=secret_arn,
        execution_role_arn=role.arn,
        changed=changed or role.changed,
        plan=ctx.plan.shown(mark),
    )


def _new_key(
    ctx: Context, account: ServiceAccount, state: secret.SecretState | None
) -> keys.Stored:
    """Create a key, store it as the secret's AWSCURRENT and wait until Google accepts it; a key it
    replaces takes rotate-key's path (room first, then the replaced key becomes AWSPREVIOUS)."""
    name = ctx.settings.secret_name
    replacing = state is not None and account.unique_id != ""
    if replacing:
        lifecycle.delete_retired(ctx, account.email, name)  # room first, as rotate-key does
    known = keys.check_key_room(ctx, account.email, name) if account.unique_id else None
    stored = keys.create_and_store(ctx, account, state, known)
    keys.finish(ctx, stored)
    _await_usable(ctx, stored.key, account.email)
    if replacing:
        # The same lifecycle as rotate-key: the replaced key becomes
        # AWSPREVIOUS and stays enabled; older unreferenced keys are disabled.
        lifecycle.disable_superseded(ctx, account.email, name)
    return stored


def _await_usable(ctx: Context, key: KeyMaterial, email: str) -> None:
    """Wait, as rotate-key does, until Google accepts the new key: a new key "can take 60 seconds or
    more" to work, and a task or run-local started right after the deploy would fail meanwhile. The
    key is stored either way; running out of time or a refusal is a warning that names what to
    check, as the key is already where tasks read it."""
    from gcpfargate.credentials.key.verify import key_authenticates
    from gcpfargate.errors import GcpfargateError

    with ctx.reporter.step(
        f"Waiting until Google accepts key {key.key_id[:12]}… (new keys can take minutes)"
    ):
        try:
            verdict = key_authenticates(key, keys.liveness(ctx, email, key.key_id))
        except GcpfargateError as refused:
            ctx.reporter.warn(f"{refused.message}; check it with `gcpfargate doctor`")
            return
    if not verdict.verified:
        ctx.reporter.warn(
            f'key {key.key_id} is stored but Google still answered "{verdict.last_refusal}" after '
            f"{verdict.waited_s:.0f} s (new keys can take minutes): tasks started now may fail to "
            "authenticate. Check later with `gcpfargate doctor`"
        )


def _in_background(function: Callable[..., T], *args: Any) -> Future[T]:
    """Run a read in a thread; the pool lets it finish on its own if the caller fails first."""
    from concurrent.futures import ThreadPoolExecutor

    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="gcpfargate-read")
    try:
        return pool.submit(function, *args)
    finally:
        pool.shutdown(wait=False)
