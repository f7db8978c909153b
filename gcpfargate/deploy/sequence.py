"""`deploy`: bootstrap → push-image → register-task (→ service), each idempotent, stopping at the
first failure.

Each step is the same function its own command runs, so `deploy` can never drift from them. A
failure is reported with the step's name; what earlier steps made stays consistent on its own
(a stored key with its role, a pushed image), so a rerun resumes where it stopped. Every step
records its changes on `ctx.plan`; a preview runs the same steps and makes none of them.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from gcpfargate.core.context import Context
from gcpfargate.credentials.mode import mode_for
from gcpfargate.ecs import service
from gcpfargate.errors import GcpfargateError, StepError

if TYPE_CHECKING:
    from gcpfargate.image.scan_ahead import ScanAhead


@dataclass
class DeployResult:
    steps: dict[str, Any]  # step name -> that step's result object

    @property
    def plan(self) -> list[Any]:
        """A preview's changes, step by step."""
        return [change for result in self.steps.values() for change in result.plan]

    def to_json(self) -> dict[str, Any]:
        return {name: result.to_json() for name, result in self.steps.items()}


def deploy(
    ctx: Context,
    allow_embedded_credentials: bool = False,
    new_key: bool = False,
    grant: bool = False,
    tag: str | None = None,
    retire: Callable[[Any], bool] | None = None,
) -> DeployResult:
    """`retire` (keyless mode): whether to retire key mode's keys, asked once the keyless revision
    is registered and the service rolled to it (keyless_retire)."""
    ctx.settings.require("gcp.project", "gcp.service_account", "task.family")
    # First, before anything imports an SDK or starts a thread, two forked children on the other
    # core, one after the other: the context's key search, then bootstrap's GCP reads (importing
    # Google's client library there, asking once the local checks pass).
    ahead = _scan_ahead(ctx)
    reads = (
        mode_for(ctx.settings).reads_ahead(ctx, ahead.child if ahead is not None else None)
        if ctx.plan.apply
        else None
    )
    try:
        return _deploy(ctx, ahead, reads, allow_embedded_credentials, new_key, grant, tag, retire)
    finally:
        for child in (ahead, reads):
            if child is not None:
                child.close()


def _scan_ahead(ctx: Context) -> ScanAhead | None:
    """The build context's key search started in a forked child (image/scan_ahead.py), for an
    apply only (a preview builds nothing, so nothing waits for its search)."""
    from gcpfargate.image.push import build_inputs
    from gcpfargate.image.scan_ahead import ScanAhead

    if not ctx.plan.apply:
        return None
    try:
        inputs = build_inputs(ctx.settings)
    except GcpfargateError:  # reported by push-image's local checks, in order
        return None
    return ScanAhead.start(inputs.context, inputs.dockerfile)


def _deploy(
    ctx: Context,
    ahead: ScanAhead | None,
    reads: Any,
    allow_embedded_credentials: bool,
    new_key: bool,
    grant: bool,
    tag: str | None,
    retire: Callable[[Any], bool] | None,
) -> DeployResult:
    from gcpfargate.taskdef.register import register_task

    mode = mode_for(ctx.settings)
    rendered, region = _local_checks(ctx)
    # The reads sent ahead are the ones an apply makes whatever it finds (a preview reads less).
    if ctx.plan.apply:
        if reads is not None:
            reads.go()
        _read_ahead(ctx, rendered, region, mode.execution_role_policy(ctx))
    # A service ECS will not move by UpdateService (CODE_DEPLOY, EXTERNAL) is refused before
    # anything is created or registered.
    with _step("service"):
        described = service.preflight(ctx)
    results: dict[str, Any] = {}
    # A preview builds nothing (a build is work, not a change), so nothing builds ahead either.
    building = (
        _BackgroundBuild(ctx, allow_embedded_credentials, tag, ahead) if ctx.plan.apply else None
    )
    try:
        with _step("bootstrap"):
            # Retiring key mode's leftovers waits until the new revision runs (after_rollout).
            booted = mode.bootstrap(ctx, new_key=new_key, grant=grant, retire=None)
            results["bootstrap"] = booted
        with _step("push-image"):
            built = building.result() if building is not None else None
            pushed = push_images(ctx, allow_embedded_credentials, tag, built)
            results["push-image"] = pushed
    finally:
        if building is not None:
            building.close()
    if pushed.digest and ctx.settings.image.registry_id:  # an image tasks are to pull
        from gcpfargate.image.repository import check_cross_account_pull

        with _step("push-image"):
            check_cross_account_pull(
                ctx, ctx.settings.repository, str(booted.execution_role_arn or "")
            )
    with _step("register-task"):
        # A preview knows the digest only of an image the registry already holds (then it pins it
        # too).
        digest = pushed.digest if ctx.settings.image.pin_digest else None
        image = _pinned(pushed.image, digest) if digest else pushed.image
        # The secret's and the role's ARNs and the latest revision travel on from the steps that
        # read them.
        results["register-task"] = register_task(
            ctx,
            image=image,
            secret_arn=getattr(booted, "secret_arn", None),
            latest=pushed.latest,
            pushed=image,
            role_arn=booted.execution_role_arn,
        )
    if service.configured(ctx) is not None:  # [service]: roll it to the latest revision and wait
        with _step("service"):
            _warn_if_older(ctx, described, pushed, results["register-task"].task_definition_arn)
            results["service"] = service.roll_out(
                ctx, results["register-task"].task_definition_arn, described=described
            )
    _run_history(ctx, results, results["register-task"].task_definition_arn)
    with _step("bootstrap"):
        mode.after_rollout(ctx, booted, retire)
    return DeployResult(results)


def _warn_if_older(
    ctx: Context, described: dict[str, Any] | None, pushed: Any, target_arn: str
) -> None:
    """The one-line warning when the service is about to move to an image pushed before the one
    it runs (deploy/older_image.py). The running revision is the one push-image read when the
    service runs the family's latest, else one more read."""
    from gcpfargate.deploy.older_image import warn_if_older
    from gcpfargate.ecs import cluster as ecs

    current = str((described or {}).get("taskDefinition") or "")
    if not pushed.digest or not current or not target_arn:  # known after apply
        return
    if service.same_revision(current, target_arn):
        return
    latest = pushed.latest.definition if pushed.latest is not None else None
    if latest is None or latest.get("taskDefinitionArn") != current:
        try:
            latest = ecs.describe_task_definition(ctx, current)
        except GcpfargateError as exc:  # only a warning depends on it
            ctx.reporter.detail(f"image ages not compared: {exc.message}")
            return
    ref = service.require_configured(ctx)
    warn_if_older(ctx, ref.name, latest, pushed.digest)


def _run_history(ctx: Context, results: dict[str, Any], definition_arn: str | None) -> None:
    """The run-history rule and group (every deploy), and the failure alerts when [notify] asks.
    Both name the family's task definitions by an ARN prefix, so a preview that would register the
    family's first revision plans them with the family's ARN (the revision is known after apply)."""
    from gcpfargate.ecs import alerts, history

    arn = definition_arn or _family_arn(ctx)
    with _step("run-history"):
        results["run-history"] = history.ensure(ctx, arn)
    if not alerts.configured(ctx):
        return
    with _step("alerts"):
        results["alerts"] = alerts.ensure(ctx, arn)


def _family_arn(ctx: Context) -> str:
    """The ARN the family's next revision has, but for the revision number (0 stands in for it)."""
    aws = ctx.aws
    family = ctx.settings.family
    return f"arn:{aws.partition()}:ecs:{aws.region}:{aws.account_id}:task-definition/{family}:0"


def push_images(
    ctx: Context,
    allow_embedded_credentials: bool = False,
    tag: str | None = None,
    built: Any = None,
) -> Any:
    """push-image: the job's image, then the images the credential mode needs beside it; its plan
    lists the changes of both."""
    from gcpfargate.image.push import push_image

    mark = ctx.plan.mark()
    pushed = push_image(
        ctx, allow_embedded_credentials=allow_embedded_credentials, tag=tag, built=built
    )
    mode_for(ctx.settings).extra_images(ctx, pushed)
    pushed.plan = ctx.plan.shown(mark)
    return pushed


def _local_checks(ctx: Context) -> tuple[dict[str, Any], str]:
    """What can fail without the cloud fails first: a missing Dockerfile, an engine that does not
    answer, a template that does not render. Otherwise bootstrap would create an account, key,
    secret or role first."""
    from gcpfargate.image.push import build_inputs
    from gcpfargate.taskdef.register import check_named_images, check_renders

    with _step("push-image"):
        build_inputs(ctx.settings)
        if ctx.plan.apply:  # a preview builds nothing, so it needs no engine
            ctx.docker.ping()
    with _step("register-task"):
        rendered, region = check_renders(ctx)
        check_named_images(ctx, rendered)
        return rendered, region


def bootstrap_checks(ctx: Context) -> None:
    """`bootstrap` on its own: the template, when there is one, is rendered and checked (export
    rules, what Fargate cannot run) before any key, secret or role exists; a definition that would
    be refused later must not leave a key made for nothing."""
    from gcpfargate.taskdef.register import check_named_images, check_renders, template_path

    if not ctx.settings.family or not template_path(ctx).is_file():
        return
    with _step("register-task"):
        check_named_images(ctx, check_renders(ctx)[0])


def _read_ahead(
    ctx: Context, rendered: dict[str, Any], region: str, role_policy: str | None
) -> None:
    """Send ahead the AWS reads the steps below make whatever they find: each waits on the
    network while this thread imports the SDKs and bootstraps, instead of one after another.
    Each is taken by the very call it stands for, or made again when a write to its service came
    between; a read nobody takes would be an extra request, so only sure ones are sent."""
    from gcpfargate.ecs import cluster as ecs
    from gcpfargate.ecs import history, logs
    from gcpfargate.iam import roles

    # In the order they are taken (two threads take them off the queue in that order). First what
    # the background build waits for before it can start (the build is the longest thing a changed
    # deploy waits for): the ECR token when the registry's host comes from it, and the family's
    # latest revision (its image is BuildKit's --cache-from; push-image compares with it too).
    # On a first deploy, with botocore's models not yet cached, the role's reads before it kept the
    # build waiting for IAM's model as well as ECS's. The token otherwise goes last, as push-image
    # takes it.
    first_token = ctx.registry.host_needs_token
    if first_token:
        ctx.aws.read_ahead("ecr", "get_authorization_token", **ctx.registry.token_params)
    ecs.read_latest_ahead(ctx, ctx.settings.family)
    if not ctx.settings.task.execution_role_arn:  # bootstrap checks gcpfargate's own execution role
        roles.read_ahead(ctx, ctx.settings.execution_role_name, role_policy)
    if not first_token:
        ctx.aws.read_ahead(  # push-image signs in to the registry
            "ecr", "get_authorization_token", **ctx.registry.token_params
        )
    logs.read_ahead(ctx, rendered, region)  # register-task makes sure the log groups exist
    history.read_ahead(ctx)  # every deploy checks the run history, last


class _BackgroundBuild:
    """push-image's build, run in a thread while bootstrap runs: the engine builds while we wait on
    IAM and Secrets Manager (about a third off an image-only deploy, see bench/). It touches no AWS
    client (the registry host is resolved first, here) and reports into a buffer that the push-image
    step replays, so the terminal shows the same steps in the same order as before. Any failure
    surfaces in the push-image step, after bootstrap, exactly as without the thread."""

    def __init__(
        self,
        ctx: Context,
        allow_embedded_credentials: bool,
        tag: str | None,
        ahead: ScanAhead | None = None,
    ) -> None:
        from concurrent.futures import ThreadPoolExecutor

        from gcpfargate.core.report import DeferredReporter
        from gcpfargate.image.push import build_image, read_latest, wants_cache_from

        self._ctx = ctx
        self._prescan: threading.Thread | None = None
        self._report = DeferredReporter()
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="gcpfargate-build")
        try:
            ctx.registry.host  # noqa: B018 - may ask ECR (GetAuthorizationToken): here, not in the thread
        except GcpfargateError:
            # Reported by the step that needs it, in order; build nothing ahead.
            self._future = None
        else:
            # BuildKit's --cache-from is the image the family's latest revision runs: read here
            # (the read sent ahead), not in the thread, and handed on to push and register-task.
            latest = None
            if wants_cache_from(ctx):
                latest = read_latest(ctx)
            self._future = self._pool.submit(
                build_image,
                ctx,
                allow_embedded_credentials,
                tag,
                self._report,
                latest=latest,
                ahead=ahead,
            )
            self._prescan = _prescan_base(ctx)

    def result(self) -> Any:
        if self._future is None:
            return None
        try:
            built = self._future.result()
        finally:
            self._report.replay(self._ctx.reporter)
        if self._prescan is not None:
            # The layer search after the build would read what the base's search is still reading.
            self._prescan.join()
        return built

    def close(self) -> None:
        # After a bootstrap failure the error is reported at once; the build (which an engine cannot
        # cancel mid-way) finishes before the process exits, and its report is dropped.
        self._pool.shutdown(wait=False)


def _prescan_base(ctx: Context) -> threading.Thread:
    """The base image's layers searched while the engine builds (image/base_scan.py)."""
    from gcpfargate.image.base_scan import prescan_base
    from gcpfargate.image.push import build_inputs

    inputs = build_inputs(ctx.settings)
    thread = threading.Thread(
        target=prescan_base,
        args=(ctx, inputs.context, inputs.dockerfile),
        name="gcpfargate-base-scan",
        daemon=True,  # never holds the process open after a failed step
    )
    thread.start()
    return thread


def _pinned(image: str, digest: str) -> str:
    """`host/repo:tag` → `host/repo@sha256:…`: register exactly what was pushed, with no second
    lookup."""
    if "@" in image:
        return image
    name, _, _ = image.rpartition(":") if image.rfind(":") > image.rfind("/") else (image, "", "")
    return f"{name}@{digest}"


class _step:
    """Name the failing step in front of the error, keeping its exit code."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __enter__(self) -> None:
        return None

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: object
    ) -> None:
        if isinstance(exc, GcpfargateError) and not isinstance(exc, StepError):
            raise StepError(self.name, exc) from None
