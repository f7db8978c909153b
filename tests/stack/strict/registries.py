"""Another account's ECR registry (`registryId`): moto keeps one account and serves any registryId
from it, while ECR decides by the other account's repository policy.

`settings.foreign_registries` maps a registry (account) id to its repositories, each with the ECR
actions its repository policy grants the caller's account. For a call naming such a registry:
- a repository it does not list → RepositoryNotFoundException, as ECR answers for a repository
  that is not in that registry;
- a listed repository whose policy lacks the action, and every CreateRepository (no registry
  policy lets the caller create there) → AccessDeniedException with IAM's "no resource-based policy"
  text;
- otherwise moto serves it from its own store (the registryId dropped) and the answer names the
  other registry (registryId, ARNs, URIs), as ECR's would.
GetAuthorizationToken names every requested registry's host in `proxyEndpoint` (moto answers
with the caller's own registry whatever `registryIds` asks). A registryId that is the caller's own,
or not in the map, is left to moto.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.stack.proxybase import Answer, Call, aws_error
from tests.stack.strict.layer import StrictLayer, StrictRule

_REPOSITORY_OPERATIONS = (
    "DescribeRepositories",
    "CreateRepository",
    "DescribeImages",
    "BatchDeleteImage",
    "BatchGetImage",
    "ListImages",
    "GetRepositoryPolicy",
)
_CALLER = "arn:aws:iam::{account}:user/moto"  # moto's caller for the stack's test credentials


def _region(call: Call) -> str:
    scope = call.header("Authorization").split("Credential=", 1)[-1].split("/")
    return scope[2] if len(scope) > 2 else "us-east-1"


def foreign_registry(layer: StrictLayer, call: Call) -> Answer | None:
    body = call.json()
    registry = str(body.get("registryId") or "")
    own = layer.settings.account_id
    repositories = layer.settings.foreign_registries.get(registry)
    if not registry or registry == own or repositories is None:
        return None
    names = (
        [str(body["repositoryName"])]
        if "repositoryName" in body
        else [str(each) for each in body.get("repositoryNames") or []]
    )
    action = f"ecr:{call.operation}"
    for name in names:
        arn = f"arn:aws:ecr:{_region(call)}:{registry}:repository/{name}"
        if call.operation != "CreateRepository" and name not in repositories:
            # Source: ECR's RepositoryNotFoundException text, as docker push and the CLI report
            # it (e.g. "The repository with name 'oresvc' does not exist in the registry with id
            # '904734893309'"); moto's own exception carries the same template.
            return aws_error(
                call,
                400,
                "RepositoryNotFoundException",
                f"The repository with name '{name}' does not exist in the registry with id "
                f"'{registry}'",
            )
        if call.operation == "CreateRepository" or action not in repositories[name]:
            # Source: hashicorp/terraform-provider-aws#35303 (DescribeRepositories across
            # accounts) and ministryofjustice/modernisation-platform#4454 (DescribeImages):
            # "User: <arn> is not authorized to perform: ecr:<Action> on resource: <repository
            # arn> because no resource-based policy allows the ecr:<Action> action".
            return aws_error(
                call,
                400,
                "AccessDeniedException",
                f"User: {_CALLER.format(account=own)} is not authorized to perform: {action} on "
                f"resource: {arn} because no resource-based policy allows the {action} action",
            )
    body.pop("registryId")
    served = layer.forward(Call(call.method, call.path, call.headers, json.dumps(body).encode()))
    if served.status >= 300:
        return served
    return served.with_json(_named(served.json(), own, registry))


def _named(value: Any, own: str, registry: str) -> Any:
    """moto's answer with the other registry's id in the fields that name the registry (a policy
    text keeps the principals it names)."""
    if isinstance(value, list):
        return [_named(each, own, registry) for each in value]
    if not isinstance(value, dict):
        return value
    return {
        key: (
            str(each).replace(own, registry)
            if key in ("registryId", "repositoryArn", "repositoryUri")
            else _named(each, own, registry)
        )
        for key, each in value.items()
    }


def authorization_per_registry(layer: StrictLayer, call: Call, answer: Answer) -> Answer:
    # Source: ECR API reference, GetAuthorizationToken: one authorizationData per registryIds
    # entry, whose proxyEndpoint is https://<registry id>.dkr.ecr.<region>.amazonaws.com.
    wanted = [str(each) for each in call.json().get("registryIds") or []]
    own = layer.settings.account_id
    if not wanted or wanted == [own]:
        return answer
    data = answer.json()
    first = (data.get("authorizationData") or [{}])[0]
    endpoint = str(first.get("proxyEndpoint") or "")
    data["authorizationData"] = [
        {**first, "proxyEndpoint": endpoint.replace(f"//{own}.", f"//{each}.")} for each in wanted
    ]
    return answer.with_json(data)


def images_from_registry(layer: StrictLayer, call: Call) -> Answer | None:
    """A stand-in, not an AWS rule: the stack's images are in its registry, not in moto, so
    DescribeImages by imageIds is answered from the registry's storage: `imagePushedAt` is when
    the registry stored the manifest (the mtime of its revision link), as ECR's is when the image
    was pushed (ECR API reference, ImageDetail). An image it lacks is a failure entry
    (ImageNotFound), as ECR reports it."""
    root = layer.settings.registry_root
    body = call.json()
    if not root or not body.get("imageIds"):
        return None
    repository = str(body.get("repositoryName") or "")
    base = Path(root) / "docker/registry/v2/repositories" / repository / "_manifests"
    details, failures = [], []
    for image_id in body["imageIds"]:
        digest = str(image_id.get("imageDigest") or "")
        tag = str(image_id.get("imageTag") or "")
        if tag and not digest:
            link = base / "tags" / tag / "current" / "link"
            digest = link.read_text().strip() if link.is_file() else ""
        revision = base / "revisions" / "sha256" / digest.removeprefix("sha256:") / "link"
        if not digest or not revision.is_file():
            failures.append(
                {
                    "imageId": image_id,
                    "failureCode": "ImageNotFound",
                    "failureReason": "Requested image not found",
                }
            )
            continue
        details.append(
            {
                "registryId": str(body.get("registryId") or layer.settings.account_id),
                "repositoryName": repository,
                "imageDigest": digest,
                **({"imageTags": [tag]} if tag else {}),
                "imagePushedAt": revision.stat().st_mtime,
            }
        )
    if not details and failures:
        # Source: ECR API reference, DescribeImages errors: ImageNotFoundException "The image
        # requested does not exist in the specified repository."
        return aws_error(
            call,
            400,
            "ImageNotFoundException",
            f"The image with imageId {json.dumps(failures[0]['imageId'])} does not exist within "
            f"the repository with name '{repository}' in the registry with id "
            f"'{body.get('registryId') or layer.settings.account_id}'",
        )
    return Answer(
        200,
        json.dumps({"imageDetails": details}).encode(),
        [("Content-Type", "application/x-amz-json-1.1")],
    )


RULES = [
    StrictRule(
        "ecr.foreign_registry",
        "ecr",
        _REPOSITORY_OPERATIONS,
        before=foreign_registry,
    ),
    StrictRule(
        "ecr.images_from_registry",
        "ecr",
        ("DescribeImages",),
        before=images_from_registry,
    ),
    StrictRule(
        "ecr.authorization_per_registry",
        "ecr",
        ("GetAuthorizationToken",),
        after=authorization_per_registry,
    ),
]
