"""doctor's key checks: the secret holds a key of the account, that key in GCP (enabled, not
expired), its age, the account's key count, live keys that no labelled secret version holds (nobody
retires those), and running tasks that hold a previous key which no longer works."""

from __future__ import annotations

import posixpath
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from gcpfargate.clients.google.gcp import MAX_USER_KEYS
from gcpfargate.core.checks import (
    Facts,
    Skip,
    Status,
    verdict,
)
from gcpfargate.core.context import Context
from gcpfargate.credentials import wiring
from gcpfargate.credentials.key import lifecycle, readers, secret, service_checks
from gcpfargate.credentials.wiring import (
    is_exact_wrapper,
    is_legacy_wrapper,
    shell_startup_names,
    unwrap,
)
from gcpfargate.ecs import fargate_rules
from gcpfargate.ecs.cluster import latest_revision
from gcpfargate.errors import AwsConfigError, AwsError, GcpfargateError
from gcpfargate.iam import execution_role, policy, roles
from gcpfargate.keymaterial.keyscan import key_paths, key_text

KEY_AGE_WARN_DAYS = 90
KEY_COUNT_WARN = 8
EXPIRY_WARN = timedelta(days=7)
MAX_TASKS_SHOWN = 5

Check = Callable[[Context, Facts], tuple[Status, str]]
Entry = tuple[str, str, str, Check]


def known_secret(facts: Facts) -> secret.SecretState | None:
    """The secret an earlier check read (None when it could not)."""
    found = facts.extra.get("secret")
    return found if isinstance(found, secret.SecretState) else None


def checks(get_secret: bool) -> tuple[list[Entry], list[Entry]]:
    """Key mode's links: those before the image and log checks, and those after them."""
    before: list[Entry] = [
        (
            "secret.readable",
            "secret holds a key of the account",
            "secret",
            lambda c, f: secret_holds_key(c, f, get_secret),
        ),
        ("key.enabled", "key exists and is enabled in GCP", "key", key_state),
        ("key.age", "key age", "key", key_age),
        ("key.count", "user-managed key count", "key", key_count),
        (
            "key.referenced",
            "every live key is in a secret version",
            "key",
            lambda c, f: unreferenced_live(c, f, get_secret),
        ),
        (
            "key.foreign",
            "keys gcpfargate did not create for this secret",
            "key",
            lambda c, f: foreign_keys(c, f, get_secret),
        ),
        (
            "key.previous",
            "running tasks can still use the previous key",
            "key",
            lambda c, f: previous_key_in_use(c, f, get_secret),
        ),
        (
            "role.trust",
            "execution role trusts ecs-tasks.amazonaws.com",
            "execution role",
            _role_trust,
        ),
        ("role.reads_secret", "execution role may read the secret", "execution role", _role_access),
        ("task.wiring", "task definition delivers the key safely", "task definition", _wiring),
    ]
    after: list[Entry] = [
        (
            "service.latest",
            "ECS service runs the latest revision",
            "service",
            lambda c, f: verdict(service_checks.runs_latest(c, latest_revision(c, f), f.extra)),
        ),
        (
            "service.current_key",
            "ECS service tasks hold the current key",
            "service",
            lambda c, f: verdict(
                service_checks.tasks_hold_current_key(
                    c, str(f.extra.get("secret_arn", "")), f.extra
                )
            ),
        ),
    ]
    return before, after


def secret_holds_key(ctx: Context, facts: Facts, get_secret: bool) -> tuple[Status, str]:
    name = ctx.settings.secret_name
    if not get_secret:
        found = secret.describe(ctx, name)
        if found is None:
            return Status.FAIL, _missing(ctx, name)
        tags = {tag["Key"]: tag["Value"] for tag in found.get("Tags", [])}
        facts.extra["tag_key_id"] = tags.get(secret.TAG_KEY_ID, "")
        facts.extra["secret_arn"] = found["ARN"]
        facts.extra["kms_key_id"] = str(found.get("KmsKeyId", ""))
        return Status.SKIP, f"{name} exists; value not read (--no-get-secret)"
    state = secret.read(ctx, name)
    if state is None:
        return Status.FAIL, _missing(ctx, name)
    facts.extra["secret"] = state
    facts.extra["secret_arn"] = state.arn
    facts.extra["kms_key_id"] = state.kms_key_id  # the key that encrypts it, not the configured one
    if state.key is None:
        return Status.FAIL, f"secret {name}: {state.problem}"
    expected = facts.account.email if facts.account else ctx.settings.service_account_email
    if state.key.client_email != expected:
        return Status.FAIL, f"secret {name} holds a key of {state.key.client_email}, not {expected}"
    tagged = state.tags.get(secret.TAG_KEY_ID, "")
    if tagged != state.key.key_id:
        # The tag is what `doctor --no-get-secret` judges by: it must agree with the value.
        return Status.WARN, (
            f"{name} holds key {state.key.key_id[:12]}…, but its {secret.TAG_KEY_ID} tag names "
            f"{tagged[:12] or 'nothing'}… (the next bootstrap or rotate-key repairs the tag)"
        )
    return Status.OK, f"{name} holds key {state.key.key_id[:12]}… of {expected}"


def _missing(ctx: Context, name: str) -> str:
    """Why the secret is missing here: another configured environment (region) may hold it, and
    a bootstrap here would then mint a second key and secret."""
    settings, region = ctx.settings, ctx.aws.region
    for env_name, overlay in settings.environments.items():
        if env_name == settings.environment:
            continue
        there = str(overlay.get("aws.region") or "")
        secret_name = str(overlay.get("secret.name") or name)
        if not there or there == region:
            continue
        from gcpfargate.clients.aws import AwsClients

        elsewhere = AwsClients(region=there, profile=str(overlay.get("aws.profile") or ""))
        try:
            found = elsewhere.find(
                "secretsmanager",
                "describe_secret",
                "ResourceNotFoundException",
                f"read secret {secret_name} in {there}",
                SecretId=secret_name,
            )
        except AwsError:
            continue
        if found is not None:
            return (
                f"secret {name} does not exist in {region}; environment {env_name} has "
                f"{secret_name} in {there} (run with --environment {env_name}, or bootstrap here "
                "only to deploy a separate copy)"
            )
    here = f" (environment {settings.environment})" if settings.environment else ""
    return f"secret {name} does not exist in {region}{here} (run gcpfargate bootstrap)"


def _key_id(facts: Facts) -> str:
    known = known_secret(facts)
    if known is not None and known.key is not None:
        return known.key.key_id
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
            f"{count} of {MAX_USER_KEYS}: no new key can be created (run gcpfargate prune-keys; "
            "a foreign key goes only by name: prune-keys --key KEY_ID)",
        )
    if count >= KEY_COUNT_WARN:
        return (
            Status.WARN,
            f"{count} of {MAX_USER_KEYS}; delete unused keys with gcpfargate prune-keys",
        )
    return Status.OK, f"{count} of {MAX_USER_KEYS}"


def unreferenced_live(ctx: Context, facts: Facts, get_secret: bool) -> tuple[Status, str]:
    """WARN on live keys this secret's runs created that no labelled version holds any more."""
    if facts.account is None:
        raise Skip("the service account was not found")
    if not get_secret:
        raise Skip("needs the secrets' values (--no-get-secret)")
    found = lifecycle.survey(ctx, facts.account.email, ctx.settings.secret_name)
    facts.extra["key_survey"] = found
    loose = [key.key_id for key in found.unreferenced() if key.live]
    if loose:
        shown = ", ".join(f"{key_id[:12]}…" for key_id in loose)
        return Status.WARN, (
            f"{len(loose)} live key(s) created for this secret in no secret version: {shown} (the "
            "next rotate-key disables them; gcpfargate prune-keys deletes them after 24 h)"
        )
    mine = sum(1 for key in found.keys if found.ours(key))
    return Status.OK, f"all {mine} key(s) created for this secret are current, previous or retired"


def foreign_keys(ctx: Context, facts: Facts, get_secret: bool) -> tuple[Status, str]:
    """List the account's keys this secret never recorded: gcpfargate leaves them alone."""
    found = facts.extra.get("key_survey")
    if found is None:
        raise Skip("needs the key survey of the check above")
    listing = lifecycle.foreign_listing(found)
    if not listing:
        return Status.OK, "none"
    return Status.OK, (
        f"{len(listing)} foreign key(s), never touched by gcpfargate (delete one by name with "
        f"`gcpfargate prune-keys --key KEY_ID`): {'; '.join(listing)}"
    )


def previous_key_in_use(ctx: Context, facts: Facts, get_secret: bool) -> tuple[Status, str]:
    """WARN when the previous key (AWSPREVIOUS) is disabled or gone while tasks started before the
    current version still run: their file holds that key, and their next token refresh fails."""
    if facts.account is None:
        raise Skip("the service account was not found")
    if not get_secret:
        raise Skip("needs the previous version's value (--no-get-secret)")
    known = known_secret(facts)
    if known is None or known.key is None:
        raise Skip("the secret holds no key")
    previous = secret.read(ctx, known.name, "AWSPREVIOUS")
    if previous is None or previous.key is None or previous.key.key_id == known.key.key_id:
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
            f"previous key {key_id[:12]}… is enabled: tasks started before the rotation keep "
            "working",
        )
    created = secret.current_version_created(ctx, known.arn)
    if created is None:
        raise Skip("the secret has no AWSCURRENT version")
    since = f"{created.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC"
    families = readers.families(ctx, known.families)
    held = readers.tasks_started_before(ctx, families, created)
    if not held:
        return Status.OK, (
            f"previous key {key_id[:12]}… is {state}; no running task of "
            f"{', '.join(families) or '-'} started before the current version ({since})"
        )
    shown = ", ".join(
        f"{task.task_id} ({task.family}, cluster {task.cluster})" for task in held[:MAX_TASKS_SHOWN]
    )
    more = f" and {len(held) - MAX_TASKS_SHOWN} more" if len(held) > MAX_TASKS_SHOWN else ""
    fix = (
        "restart them"
        if state != "disabled"
        else f"re-enable it (gcloud iam service-accounts keys enable {key_id} --iam-account "
        f"{email}) or restart them"
    )
    return Status.WARN, (
        f"previous key {key_id[:12]}… is {state}, but {len(held)} running task(s) started before "
        f"the current version ({since}) hold it and lose access at their next "
        f"token refresh: {shown}{more}; {fix} (roll a service: aws ecs update-service "
        "--force-new-deployment; a one-off task: aws ecs stop-task, then run it again)"
    )


def _role(ctx: Context, facts: Facts) -> str:
    if not facts.role_arn:
        revision = latest_revision(ctx, facts)
        facts.role_arn = (revision or {}).get("executionRoleArn") or roles.execution_role_arn(ctx)
    return facts.role_arn


def _role_trust(ctx: Context, facts: Facts) -> tuple[Status, str]:
    arn = _role(ctx, facts)
    name = roles.role_name_from_arn(arn)
    role = roles.get_role(ctx, name)
    if role is None:
        facts.extra["role_missing"] = True
        return Status.FAIL, f"execution role {name} does not exist (run gcpfargate bootstrap)"
    if not policy.trusts(role.get("AssumeRolePolicyDocument", {}), policy.ECS_TASKS_PRINCIPAL):
        return Status.FAIL, f"{name} does not trust ecs-tasks.amazonaws.com"
    return Status.OK, name


def _role_access(ctx: Context, facts: Facts) -> tuple[Status, str]:
    if facts.extra.get("role_missing"):
        raise Skip("the execution role does not exist")
    secret_arn = facts.extra.get("secret_arn")
    if not secret_arn:
        unread = facts.extra.get("unreadable", {}).get(AwsConfigError)
        raise Skip(f"could not read: {unread}" if unread else "the secret does not exist")
    try:
        kms_arn = secret.kms_key_arn(ctx, str(facts.extra.get("kms_key_id", "")))
    except AwsError as exc:
        return Status.WARN, f"cannot resolve KMS key {facts.extra.get('kms_key_id')}: {exc.message}"
    simulated = _simulate(ctx, facts.role_arn, secret_arn, kms_arn)
    verdict = simulated or execution_role.judge_secret_access(
        ctx, facts.role_arn, secret_arn, kms_arn
    )
    how = "IAM policy simulator" if simulated else "the role's own policies"
    if verdict.allowed:
        return Status.OK, f"{verdict.reason} (judged by {how})"
    if verdict.decision is policy.Decision.CONDITIONAL:
        return Status.WARN, f"{verdict.reason} (judged by {how})"
    return (
        Status.FAIL,
        f"{verdict.reason}: tasks will fail to start (bootstrap --grant) (judged by {how})",
    )


def _simulate(
    ctx: Context, role_arn: str, secret_arn: str, kms_arn: str
) -> policy.Judgement | None:
    """IAM's own simulator when the endpoint implements it; None means "judge locally"."""
    actions = [("secretsmanager:GetSecretValue", secret_arn)] + (
        [("kms:Decrypt", kms_arn)] if kms_arn else []
    )
    try:
        for action, resource in actions:
            result = ctx.aws.call(
                "iam",
                "simulate_principal_policy",
                "simulate the execution role's policy",
                probe=True,
                PolicySourceArn=role_arn,
                ActionNames=[action],
                ResourceArns=[resource],
            )
            decision = result["EvaluationResults"][0]["EvalDecision"]
            if decision != "allowed":
                kind = (
                    policy.Decision.DENIED
                    if decision == "explicitDeny"
                    else policy.Decision.NOT_ALLOWED
                )
                return policy.Judgement(kind, f"{action} on {resource} is {decision}")
    except AwsError as exc:
        # The simulator is a nicety: an endpoint without it (moto, some partitions) or a caller
        # without iam:SimulatePrincipalPolicy falls back to the local judgement, never to a FAIL.
        ctx.reporter.detail(
            f"policy simulator unavailable ({exc.code}); judging the role's policies locally"
        )
        return None
    return policy.Judgement(policy.Decision.ALLOWED, "secretsmanager:GetSecretValue is allowed")


def _wiring(ctx: Context, facts: Facts) -> tuple[Status, str]:
    revision = latest_revision(ctx, facts)
    if revision is None:
        return (
            Status.FAIL,
            f"no ACTIVE revision of family {ctx.settings.family} (run gcpfargate register-task)",
        )
    settings = ctx.settings
    env_name, path = settings.task.credentials_env, settings.task.credentials_path
    try:
        wanted = wiring.target_names(revision, settings.task.containers or None, _built_image(ctx))
    except GcpfargateError:  # names no container of the revision: nothing is wired as configured
        wanted = list(settings.task.containers)
    secret_arn = str(facts.extra.get("secret_arn", ""))
    # Key text anywhere in the revision (command, labels, log options, …), not only in environment.
    found = key_paths(revision, is_key=key_text)
    problems: list[str] = [f"key text at {', '.join(found[:5])}"] if found else []
    if why := fargate_rules.missing_execution_role(revision, lambda: ctx.registry.host):
        problems.append(
            f"revision {revision.get('revision')} has no executionRoleArn, but {why}: ECS cannot "
            "start it (register-task adds the execution role)"
        )
    for container in revision.get("containerDefinitions", []):
        name = container.get("name", "?")
        if name not in wanted:
            continue
        secrets = {s.get("name"): s.get("valueFrom", "") for s in container.get("secrets", [])}
        if env_name not in secrets:
            problems.append(f"{name}: no secrets entry {env_name}")
        elif secret_arn and not _same_secret(secrets[env_name], secret_arn):
            problems.append(f"{name}: {env_name} comes from {secrets[env_name]}, not {secret_arn}")
        environment = {e.get("name"): e.get("value") for e in container.get("environment", [])}
        google_path = environment.get("GOOGLE_APPLICATION_CREDENTIALS")
        wrapped = unwrap(container)
        if wrapped is not None:
            if is_legacy_wrapper(container):
                problems.append(
                    f"{name}: the entryPoint's wrapper is an older gcpfargate's, which does not "
                    "turn off bash's xtrace before writing the key; run gcpfargate register-task"
                )
            elif not is_exact_wrapper(container):
                problems.append(
                    f"{name}: the entryPoint's wrapper is not the script gcpfargate writes (edited "
                    "by hand?); run gcpfargate register-task"
                )
            for variable in shell_startup_names(container.get("environment")):
                problems.append(
                    f"{name}: environment sets {variable}, which can make the start-up shell "
                    "print the key"
                )
            # gcpfargate's own wrapper: it must write the variable ECS fills to the path the app
            # reads.
            if wrapped.credentials_env != env_name:
                problems.append(
                    f"{name}: the wrapper writes ${wrapped.credentials_env}, but the key arrives "
                    f"in {env_name}"
                )
            if google_path != wrapped.credentials_path:
                problems.append(
                    f"{name}: GOOGLE_APPLICATION_CREDENTIALS is {google_path!r}, but the wrapper "
                    f"writes {wrapped.credentials_path!r}"
                )
            directory = posixpath.dirname(wrapped.credentials_path) or "/"
            if not wiring.needs_credentials_tmpfs(container, directory):
                pass
            elif container.get("readonlyRootFilesystem"):
                problems.append(
                    f"{name}: readonlyRootFilesystem, but no tmpfs or writable mount at "
                    f"{directory}: the wrapper cannot write the key; run gcpfargate register-task"
                )
            else:
                problems.append(
                    f"{name}: no tmpfs at {directory}, so the key is written to the container's "
                    "writable layer, on disk; run gcpfargate register-task (it adds one)"
                )
        else:
            # wire_credentials = false: the template wires it; at least the file must be written
            # somewhere.
            start = (
                " ".join(container.get("entryPoint") or [])
                + " "
                + " ".join(container.get("command") or [])
            )
            if google_path != path:
                problems.append(
                    f"{name}: GOOGLE_APPLICATION_CREDENTIALS is {google_path!r}, not {path!r}"
                )
            elif path not in start:
                problems.append(f"{name}: no start-up step writes {path}")
    if problems:
        return Status.FAIL, "; ".join(problems)
    return (
        Status.OK,
        f"revision {revision.get('revision')} delivers {env_name} → {path} (mode 0600)",
    )


def _same_secret(value_from: str, secret_arn: str) -> bool:
    # valueFrom may carry the `:json-key:version-stage:version-id` suffix.
    return value_from == secret_arn or value_from.startswith(secret_arn + ":")


def _built_image(ctx: Context) -> str | None:
    """The name of the image gcpfargate builds (its containers get the key); None when unknown."""
    try:
        return (
            str(ctx.registry.image_name(ctx.settings.repository))
            if ctx.settings.repository
            else None
        )
    except GcpfargateError:
        return None
