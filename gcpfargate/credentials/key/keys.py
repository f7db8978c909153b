"""Service-account keys: the account they belong to, room for one more, and creating one that is
stored in the secret or not left behind at all. Shared by `bootstrap` and `rotate-key`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from gcpfargate.clients.google.gcp import MAX_USER_KEYS, PRUNE_HINT, ServiceAccount
from gcpfargate.core import plan as planning
from gcpfargate.core.context import Context
from gcpfargate.credentials.key import lifecycle, secret
from gcpfargate.errors import GcpError, GcpfargateError, KeyLimitError
from gcpfargate.keymaterial.keyfile import KeyMaterial


def resolve_account(ctx: Context) -> ServiceAccount:
    """The configured service account; created when missing and gcp.create_service_account allows
    it (in a preview, a stand-in without a unique id: known after apply)."""
    settings = ctx.settings
    project = settings.gcp.project
    account = ctx.iam.get_service_account(project, settings.gcp.service_account)
    if account is not None:
        if account.disabled:
            raise GcpError(
                f"service account {account.email} is disabled",
                "Enable it in the GCP console or with `gcloud iam service-accounts enable`",
            )
        return account
    email = settings.service_account_email
    if not settings.gcp.create_service_account:
        raise GcpError(
            f"service account {email} does not exist in project {project}",
            "Create it, fix gcp.service_account, or set gcp.create_service_account = true",
        )

    def create() -> ServiceAccount:
        with ctx.reporter.step(f"Creating service account {email}"):
            return ctx.iam.create_service_account(project, settings.account_id)

    created = ctx.plan.change(
        planning.create("service account", email, f"create service account {email}"), create
    )
    if created is None:
        return ServiceAccount(email=email, unique_id="", project=project, disabled=False)
    return created


def current_key_is_live(
    ctx: Context, state: secret.SecretState | None, account: ServiceAccount
) -> bool:
    """True when the secret holds a key of this account that exists, is enabled and has not
    expired."""
    if state is None or state.key is None or state.key.client_email != account.email:
        return False
    info = ctx.iam.get_key(account.email, state.key.key_id)
    return info is not None and info.live


def liveness(ctx: Context, email: str, key_id: str) -> Callable[[], bool]:
    """Whether the key still exists and is enabled in GCP, asked when called: a "not yet" answer of
    the token endpoint means "wait" only while this holds."""

    def still_live() -> bool:
        info = ctx.iam.get_key(email, key_id)
        return info is not None and not info.disabled

    return still_live


def check_key_room(ctx: Context, email: str, own: str) -> set[str]:
    """Fail before creating the 11th key, listing what is there, whose it is, and how to prune.
    Returns the ids there are now: a key minted later is told apart from them."""
    keys = ctx.iam.list_user_keys(email)
    if len(keys) < MAX_USER_KEYS:
        return {key.key_id for key in keys}
    raise key_limit(ctx, email, own, len(keys))


def key_limit(ctx: Context, email: str, own: str, count: int | None = None) -> KeyLimitError:
    """The key-limit error: our keys and the foreign ones (which only `prune-keys --key`
    removes)."""
    found = lifecycle.survey(ctx, email, own)
    count = len(found.keys) if count is None else count
    now = datetime.now(UTC)
    ours = ", ".join(
        f"{key.key_id} ({key.age_days(now)} days{', disabled' if key.disabled else ''})"
        for key in found.keys
        if found.ours(key)
    )
    foreign = lifecycle.foreign_listing(found, now)
    listing = f"{ours or 'none'} created for {own}"
    hint = PRUNE_HINT.replace("EMAIL", email)
    if foreign:
        listing += f"; foreign (gcpfargate never deletes them on its own): {', '.join(foreign)}"
        hint = (
            "Delete unreferenced keys of this secret with `gcpfargate prune-keys`; a foreign key "
            "only by name, if you know it is unused: `gcpfargate prune-keys --key KEY_ID` (then "
            "rerun)"
        )
    return KeyLimitError(
        f"service account {email} already holds {count} of {MAX_USER_KEYS} user-managed keys: "
        f"{listing}",
        hint,
    )


@dataclass(frozen=True)
class Stored:
    key: KeyMaterial
    arn: str
    version_id: str
    previous_version: str  # the version AWSCURRENT moved from ("" for a new secret)
    label: str  # the run's pending label, removed by `finish` ("" when none)


def create_and_store(
    ctx: Context,
    account: ServiceAccount,
    state: secret.SecretState | None,
    known: set[str] | None = None,
) -> Stored:
    """Create a key, store it and make it AWSCURRENT; or leave nothing behind.

    Whatever stops the run after the key exists — an AWS error, a lost answer, Ctrl-C, SIGTERM —
    first finds out what landed: a key that is AWSCURRENT is kept (deleting it would break every
    task start); one that is not is deleted, with its pending version's label removed.
    """
    name = ctx.settings.secret_name
    if known is None:
        known = {k.key_id for k in ctx.iam.list_user_keys(account.email)}
    asked = datetime.now(UTC)
    with ctx.reporter.step(f"Creating a key for {account.email}"):
        try:
            key = ctx.iam.create_key(account.email)
        except KeyLimitError as exc:
            # Google's own answer at the limit: name the keys and whose they are, as the room check
            # does.
            raise key_limit(ctx, account.email, name).with_code(exc.code) from None
        except GcpError as exc:
            if exc.code in LOST_ANSWER:
                _delete_unanswered(ctx, account.email, known, asked)
            raise
        except BaseException:
            # Ctrl-C, SIGTERM, SIGHUP while Google's answer is in flight: the key may exist.
            _delete_unanswered(ctx, account.email, known, asked)
            raise
    arn, version_id = state.arn if state else "", ""
    label = secret.pending_label()  # chosen before the call, so a lost answer can still be found
    try:
        with ctx.reporter.step(f"Storing key {key.key_id[:12]}… in secret {name}"):
            arn, version_id, label = secret.store(ctx, name, key, state, account.email, label)
        base = state.version_id if state is not None else ""
        if label:
            with ctx.reporter.step(f"Making key {key.key_id[:12]}… AWSCURRENT of {name}"):
                base = secret.promote(ctx, arn, name, version_id, base)
    except BaseException as exc:
        landed = _stored_anyway(ctx, name, key.key_id)
        if landed is not None:
            secret.tag_current(ctx, landed.arn, name, account.email)
            if not isinstance(exc, GcpfargateError):
                raise  # interrupted after the key became current: keep it, stop as asked
            return Stored(key, landed.arn, landed.version_id, "", label)
        _delete_orphan(ctx, account.email, key.key_id, exc, arn, label)
        raise
    if label:  # a new secret was created with its tags; a new version needs them updated
        secret.tag_current(ctx, arn, name, account.email)
    return Stored(key, arn, version_id, base, label)


LOST_ANSWER = ("INTERNAL", "UNAVAILABLE", "DEADLINE_EXCEEDED", "UNKNOWN")
CLOCK_SKEW = timedelta(minutes=2)


def _delete_unanswered(ctx: Context, email: str, known: set[str], asked: datetime) -> None:
    """Find the key a CreateServiceAccountKey whose answer never arrived minted, and delete it.

    It is a key not listed before the call and created since (allowing for clock skew). Exactly one
    such key is this run's and is deleted; several (another run minting at the same moment) are
    only named, as is one that cannot be deleted, with the exact command.
    """
    try:
        listed = ctx.iam.list_user_keys(email)
    except (GcpfargateError, KeyboardInterrupt):
        ctx.reporter.warn(
            f"the answer to creating a key for {email} did not arrive, and its keys could not be "
            f"listed: a key created at {asked:%Y-%m-%d %H:%M:%S} UTC may exist; find it with "
            f"`gcloud iam service-accounts keys list --iam-account {email} --managed-by user` and "
            f"delete it with `gcloud iam service-accounts keys delete KEY_ID --iam-account {email}`"
        )
        return
    minted = [
        key
        for key in listed
        if key.key_id not in known and (key.created is None or key.created >= asked - CLOCK_SKEW)
    ]
    if len(minted) == 1:
        key_id = minted[0].key_id
        try:
            ctx.iam.delete_key(email, key_id)
        except (GcpfargateError, KeyboardInterrupt) as exc:
            why = exc.message if isinstance(exc, GcpfargateError) else "interrupted again"
            ctx.reporter.warn(
                f"key {key_id} was created, but its answer did not arrive and deleting it failed "
                f"({why}): gcloud iam service-accounts keys delete {key_id} --iam-account {email}"
            )
            return
        ctx.reporter.warn(f"deleted key {key_id}, created while the run was stopped")
    elif minted:
        commands = "; ".join(
            f"gcloud iam service-accounts keys delete {key.key_id} --iam-account {email}"
            for key in minted
        )
        ctx.reporter.warn(
            f"the answer to creating a key did not arrive; {len(minted)} keys appeared meanwhile "
            f"(another run may have made one), so none was deleted. Delete this run's: {commands}"
        )


def finish(ctx: Context, stored: Stored) -> None:
    """Remove the run's pending label once nothing can go wrong with the new key any more."""
    secret.drop_label(ctx, stored.arn, stored.label, stored.version_id)


def _stored_anyway(ctx: Context, name: str, key_id: str) -> secret.SecretState | None:
    """The secret's state when its AWSCURRENT holds `key_id` although storing did not finish.

    A lost answer (connection reset, timeout after the write) or an interrupt while the answer was
    pending looks like a failure, but the key may be current: deleting it then would leave the
    secret pointing at a deleted key.
    """
    try:
        state = secret.read(ctx, name)
    except (GcpfargateError, KeyboardInterrupt):
        return None
    if state is None or state.key is None or state.key.key_id != key_id:
        return None
    ctx.reporter.detail(
        f"storing key {key_id} did not finish, but the secret holds it as AWSCURRENT: keeping it"
    )
    return state


def _delete_orphan(
    ctx: Context, email: str, key_id: str, cause: BaseException, arn: str, label: str
) -> None:
    if arn:
        try:
            versions = secret.stages(ctx, arn)
            for version, labels in versions.items():
                if label in labels:
                    secret.drop_label(ctx, arn, label, version)
        except GcpfargateError:
            pass  # a left-over pending label is ignored after an hour
    try:
        ctx.iam.delete_key(email, key_id)
    except GcpfargateError as cleanup:
        reason = cause.message if isinstance(cause, GcpfargateError) else type(cause).__name__
        raise GcpError(
            f"storing the new key failed ({reason}) and deleting key {key_id} of {email} also "
            f"failed: {cleanup.message}",
            f"Delete it by hand: gcloud iam service-accounts keys delete {key_id} --iam-account "
            f"{email}",
        ) from None
    ctx.reporter.detail(f"deleted the unstored key {key_id} of {email}")
