"""The job's ECR repository and what the registry holds under a tag: shared by the job's image push
(`push.py`) and the credential shim's (`shim_push.py`)."""

from __future__ import annotations

from typing import Any

from gcpfargate.core import plan as planning
from gcpfargate.core.context import Context
from gcpfargate.errors import AwsError, DockerError
from gcpfargate.image import images


def describe_repository(ctx: Context, repository: str) -> dict[str, Any] | None:
    data = ctx.aws.find(
        "ecr",
        "describe_repositories",
        "RepositoryNotFoundException",
        f"read ECR repository {repository}{_in(ctx)}",
        repositoryNames=[repository],
        **ctx.registry.ecr_params,
    )
    return None if data is None else dict(data["repositories"][0])


def _in(ctx: Context) -> str:
    """The words naming the registry in a message when it is another account's (registry_id)."""
    return f" in registry {ctx.registry.registry_id}" if ctx.registry.registry_id else ""


def ensure_repository(ctx: Context, repository: str) -> bool:
    """Create the repository (scan on push) when missing; True when it was created."""
    found = describe_repository(ctx, repository)
    if found is not None:
        if not found.get("imageScanningConfiguration", {}).get("scanOnPush"):
            ctx.reporter.warn(
                f"ECR repository {repository} does not scan images on push; turn it on with "
                f"`aws ecr put-image-scanning-configuration --repository-name {repository} "
                "--image-scanning-configuration scanOnPush=true` or registry-level scanning"
            )
        return False
    return create_repository(ctx, repository)


def create_repository(ctx: Context, repository: str) -> bool:
    """The change that creates the repository with scan on push: True unless another run created
    it meanwhile (a preview: True, it would be created)."""

    def create() -> bool:
        with ctx.reporter.step(f"Creating ECR repository {repository}"):
            try:
                ctx.aws.call(
                    "ecr",
                    "create_repository",
                    f"create ECR repository {repository}{_in(ctx)}",
                    repositoryName=repository,
                    imageScanningConfiguration={"scanOnPush": True},
                    **ctx.registry.ecr_params,
                )
            except AwsError as exc:
                if exc.code == "RepositoryAlreadyExistsException":
                    return False  # created meanwhile by another run (two deploys at once): fine
                if exc.code in ("AccessDenied", "AccessDeniedException"):
                    hint = (
                        f"Create the repository {repository} in account "
                        f"{ctx.registry.registry_id} with a repository policy that lets this "
                        "account push, or allow ecr:CreateRepository in that registry's permissions"
                        if ctx.registry.registry_id
                        else "Allow ecr:CreateRepository for this identity, or create the "
                        f"repository {repository} yourself"
                    )
                    raise AwsError(exc.message, hint).with_code(exc.code) from None
                raise
        return True

    change = planning.create(
        "ECR repository",
        repository,
        f"create ECR repository {repository} (scan on push)",
        after={"scanOnPush": True},
    )
    return ctx.plan.change(change, create) is not False


# What the execution role needs from the repository to pull an image when a task starts (ECR user
# guide, "Private repository policy examples": cross-account pull).
PULL_ACTIONS = (
    "ecr:BatchGetImage",
    "ecr:GetDownloadUrlForLayer",
    "ecr:BatchCheckLayerAvailability",
)


def check_cross_account_pull(ctx: Context, repository: str, role_arn: str) -> None:
    """In another account's registry (image.registry_id), the execution role pulls only what that
    repository's policy lets this account or the role pull: warn, in one line, when it does not
    (tasks would fail to start with CannotPullContainerError). A policy this identity may not
    read only leaves the check out."""
    registry = ctx.registry.registry_id
    if not registry:
        return
    from gcpfargate.iam.policy import resource_policy_allows

    account = ctx.aws.account_id
    try:
        answer = ctx.aws.find(
            "ecr",
            "get_repository_policy",
            "RepositoryPolicyNotFoundException",
            f"read the repository policy of {repository} in registry {registry}",
            repositoryName=repository,
            registryId=registry,
        )
    except AwsError as exc:
        ctx.reporter.detail(f"pull permissions not checked: {exc.message}")
        return
    principals = [account, f"arn:{ctx.aws.partition()}:iam::{account}:root", role_arn]
    text = (answer or {}).get("policyText") or '{"Statement": []}'
    missing = [
        action
        for action in PULL_ACTIONS
        if not resource_policy_allows(text, action, [each for each in principals if each])
    ]
    if missing:
        ctx.reporter.warn(
            f"the repository policy of {repository} in account {registry} does not let account "
            f"{account} (or role {role_arn or 'the execution role'}) {', '.join(missing)}: tasks "
            "would fail to pull the image; add a statement allowing them to "
            f"arn:{ctx.aws.partition()}:iam::{account}:root"
        )


def held_digest(
    ctx: Context,
    repository: str,
    tag: str,
    platform: str,
    image_id: str,
    repo_digests: tuple[str, ...] = (),
) -> str:
    """The manifest digest when the registry holds this very image (images.same_image) under
    `tag`."""
    held = ctx.registry.resolve(repository, tag, platform)
    name = ctx.registry.image_name(repository)
    return (
        held.digest
        if held is not None
        and images.same_image(held.digest, held.config_digest, image_id, repo_digests, name)
        else ""
    )


def push_tag(ctx: Context, repository: str, tag: str) -> str:
    """Push `repository:tag` from the engine to the registry; the manifest digest it now holds.

    Docker's classic store reports the digest in the push stream; its containerd store only in a
    status line, and Podman's Docker-compatible socket not at all, so then the registry is asked
    (a HEAD of the tag's manifest): the image is there by the time the stream ends."""
    name = ctx.registry.image_name(repository)
    credentials = ctx.registry.credentials()
    endpoint = ctx.registry.endpoint
    if endpoint == ctx.registry.host:
        outcome = ctx.docker.push(name, tag, credentials, on_progress=ctx.reporter.progress)
    else:
        # The engine pushes to the host an image's name holds: a second name on the endpoint, the
        # same image (so the same digest), dropped once pushed.
        ctx.docker.tag(f"{name}:{tag}", f"{endpoint}/{repository}", tag)
        try:
            outcome = ctx.docker.push(
                f"{endpoint}/{repository}", tag, credentials, on_progress=ctx.reporter.progress
            )
        finally:
            ctx.docker.untag(f"{endpoint}/{repository}:{tag}")
    digest = outcome.digest or ctx.registry.manifest_digest(repository, tag)
    if not digest:
        raise DockerError(
            f"failed to push {name}:{tag}: the engine reported success, but registry "
            f"{ctx.registry.host} holds no manifest under that tag",
            "Retry; check that the engine pushes to the same registry gcpfargate reads",
        )
    return digest
