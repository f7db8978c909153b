"""A central image account (image.registry_id) and a registry host of one's own network
(image.registry_host), against the stack and the strict layer's cross-account ECR rules
(tests/stack/strict/registries.py).

The stack's registry plays the other account's: `image.registry_host` sends requests and pushes
there (GCPFARGATE_ECR_REGISTRY is unset), while the names gcpfargate registers are ECR's for that
account, `999999999999.dkr.ecr.<region>.amazonaws.com`.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import docker
import pytest

from tests.conftest import ACCOUNT_ID, REGION, Project, assert_one_clean_line
from tests.integration.helpers import deploy, latest, prepare
from tests.stack.images import write_busybox_context

CENTRAL = "999999999999"
HOST = f"{CENTRAL}.dkr.ecr.{REGION}.amazonaws.com"
PULL_AND_PUSH = [
    "ecr:DescribeRepositories",
    "ecr:DescribeImages",
    "ecr:BatchGetImage",
    "ecr:GetDownloadUrlForLayer",
    "ecr:BatchCheckLayerAvailability",
    "ecr:InitiateLayerUpload",
    "ecr:UploadLayerPart",
    "ecr:CompleteLayerUpload",
    "ecr:PutImage",
    "ecr:GetRepositoryPolicy",
]


@pytest.fixture
def central(project: Project) -> Iterator[dict[str, list[str]]]:
    """The other account's registry as the strict layer knows it: repository -> granted actions."""
    registries = project.stack.strict.settings.foreign_registries
    repositories = registries.setdefault(CENTRAL, {})
    yield repositories
    repositories.pop(project.family, None)  # names are unique per test: only this one's


def configure(project: Project, central: dict[str, list[str]], grants: list[str] | None) -> None:
    write_busybox_context(project.dir, ('CMD ["echo", "shared"]',))
    if grants is not None:
        central[project.family] = grants
    config = project.dir / "gcpfargate.toml"
    config.write_text(
        config.read_text()
        + "\n[image]\n"
        + f'repository = "{project.family}"\ntag = "v1"\n'
        + f'registry_id = "{CENTRAL}"\nregistry_host = "{project.stack.registry}"\n'
    )


def run(project: Project, *args: str) -> object:
    return project.run(*args, env={"GCPFARGATE_ECR_REGISTRY": None})


def test_a_repository_the_other_account_lacks_is_refused_in_its_words(
    project: Project, central: dict[str, list[str]]
) -> None:
    configure(project, central, None)  # the registry is known, this repository is not in it
    result = run(project, "push-image")
    # DescribeRepositories finds nothing; CreateRepository there is refused (no registry policy).
    line = assert_one_clean_line(
        result,
        1,
        "ecr:CreateRepository",
        "because no resource-based policy allows",
        f"arn:aws:ecr:{REGION}:{CENTRAL}:repository/{project.family}",
    )
    assert f"in account {CENTRAL}" in result.stderr, line
    assert not project.exists("repository", project.family)


def test_a_repository_policy_without_the_action_is_refused_in_its_words(
    project: Project, central: dict[str, list[str]]
) -> None:
    configure(project, central, ["ecr:BatchGetImage"])
    result = run(project, "push-image")
    assert_one_clean_line(
        result,
        1,
        f"read ECR repository {project.family} in registry {CENTRAL}",
        "not authorized to perform: ecr:DescribeRepositories",
        "because no resource-based policy allows the ecr:DescribeRepositories action",
    )


def test_push_and_deploy_to_the_other_accounts_registry(
    project: Project, central: dict[str, list[str]]
) -> None:
    configure(project, central, PULL_AND_PUSH)
    # The other account made the repository (moto keeps one account: it is made in moto's own).
    project.aws("ecr").create_repository(repositoryName=project.family)
    pushed = run(project, "push-image", "--output", "json")
    assert pushed.returncode == 0, pushed.output
    image = json.loads(pushed.stdout)
    assert image["image"] == f"{HOST}/{project.family}:v1" and image["changed"] is True
    # Pushed through the registry host, under a second name the engine no longer holds.
    engine = docker.DockerClient(base_url=project.stack.docker_host)
    try:
        names = {tag for each in engine.images.list() for tag in each.tags}
    finally:
        engine.close()
    assert f"{HOST}/{project.family}:v1" in names
    assert f"{project.stack.registry}/{project.family}:v1" not in names

    again = run(project, "push-image", "--output", "json")
    assert again.returncode == 0 and json.loads(again.stdout)["changed"] is False, again.output

    prepare_template(project)
    deployed = run(project, "deploy", "--output", "json")
    assert deployed.returncode == 0, deployed.output
    registered = latest(project)["containerDefinitions"][0]["image"]
    assert registered == f"{HOST}/{project.family}@{image['digest']}"
    # No repository policy: the execution role could not pull; said in one line, deploy goes on.
    warned = [line for line in deployed.stderr.splitlines() if "repository policy" in line]
    assert len(warned) == 1 and "ecr:BatchGetImage" in warned[0], deployed.output
    project.aws("ecr").set_repository_policy(
        repositoryName=project.family,
        policyText=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Sid": "pull",
                        "Effect": "Allow",
                        "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT_ID}:root"},
                        "Action": [
                            "ecr:BatchGetImage",
                            "ecr:GetDownloadUrlForLayer",
                            "ecr:BatchCheckLayerAvailability",
                        ],
                    }
                ],
            }
        ),
    )
    allowed = run(project, "deploy", "--output", "json")
    assert allowed.returncode == 0, allowed.output
    assert "repository policy" not in allowed.stderr, allowed.output
    # run-local pulls the registered image through the registry host too.
    ran = run(project, "run-local")
    assert ran.returncode == 0 and "shared" in ran.stdout + ran.stderr, ran.output
    # --image with the other account's name is in "gcpfargate's registry": pinned by digest.
    explicit = run(
        project, "register-task", "--image", f"{HOST}/{project.family}:v1", "--output", "json"
    )
    assert explicit.returncode == 0, explicit.output


def prepare_template(project: Project) -> None:
    import shutil

    from tests.integration.helpers import ROOT

    shutil.copyfile(
        ROOT / "templates" / "task-definition.json.j2", project.dir / "task-definition.json.j2"
    )


def test_deploy_warns_when_the_service_moves_to_an_older_image(project: Project) -> None:
    from tests.integration.helpers import add_service

    prepare(project, ('CMD ["echo", "old"]',), tag="v1")
    first = deploy(project)["register-task"]["task_definition_arn"]
    add_service(project, first)

    write_busybox_context(project.dir, ('CMD ["echo", "new"]',))
    newer = project.run("deploy", "--tag", "v2")
    assert newer.returncode == 0, newer.output
    assert "older image" not in newer.output

    # The first commit deployed again (a pipeline that finished late): its image is in the
    # registry already, pushed before the one the service now runs.
    write_busybox_context(project.dir, ('CMD ["echo", "old"]',))
    older = project.run("deploy", "--tag", "v1")
    assert older.returncode == 0, older.output
    warnings = [line for line in older.stderr.splitlines() if "older image" in line]
    assert len(warnings) == 1, older.output
    assert f"service web moves to an older image: {project.family}@sha256:" in warnings[0]
    assert f"before the one it runs ({project.family}@sha256:" in warnings[0]
