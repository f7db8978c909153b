"""The checks check: each invariant, `shape()`, `snapshot()` and the write journal must report a
defect planted on purpose
(issue 14 item 5: "prove each new check fails on a planted defect once"). A check that stays quiet
here would let the fault matrix, the races and the corpus pass on a broken world.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.conftest import Project, record_figure
from tests.reliability.helpers import (
    check_invariants,
    current_key,
    differences,
    make_deployable,
    shape,
    snapshot,
    write_mark,
    writes_since,
)

FIGURES = "planted defects"


def _deployed(project: Project) -> None:
    make_deployable(project)
    result = project.run("deploy")
    assert result.returncode == 0, result.output
    assert check_invariants(project) == []


def _orphan(project: Project) -> None:
    from tests.reliability.helpers import mint

    mint(project.stack, project.email, 1)


def _tag(project: Project) -> None:
    project.aws("secretsmanager").tag_resource(
        SecretId=project.secret_name, Tags=[{"Key": "gcpfargate:key-id", "Value": "0" * 40}]
    )


def _newer_revision(project: Project) -> None:
    """A newer revision that takes its key from elsewhere; moto lists revision 1 first."""
    ecs = project.aws("ecs")
    latest = ecs.describe_task_definition(taskDefinition=project.family)["taskDefinition"]
    keep = (
        "family",
        "containerDefinitions",
        "executionRoleArn",
        "networkMode",
        "requiresCompatibilities",
        "cpu",
        "memory",
    )
    definition = {k: v for k, v in latest.items() if k in keep}
    for container in definition["containerDefinitions"]:
        for item in container.get("secrets", []):
            item["valueFrom"] = item["valueFrom"] + "-other"
    ecs.register_task_definition(**definition)


def _disabled_current(project: Project) -> None:
    import grpc
    from google.cloud import iam_admin_v1
    from google.cloud.iam_admin_v1.services.iam.transports import IAMGrpcTransport

    channel = grpc.insecure_channel(project.stack.emulator.grpc_address)
    client = iam_admin_v1.IAMClient(transport=IAMGrpcTransport(channel=channel))
    key_id = current_key(project)["private_key_id"]
    client.disable_service_account_key(
        name=f"projects/-/serviceAccounts/{project.email}/keys/{key_id}"
    )


INVARIANT_DEFECTS: dict[str, tuple[Callable[[Project], None], str]] = {
    "an enabled key no secret holds": (_orphan, "orphan keys"),
    "a key-id tag that names another key": (_tag, "tag gcpfargate:key-id"),
    "a newer revision reading another secret": (_newer_revision, "latest revision 2"),
    "an AWSCURRENT key that is disabled": (_disabled_current, "is disabled, not enabled"),
}


@pytest.mark.parametrize("defect", sorted(INVARIANT_DEFECTS))
def test_invariants_catch_planted_defects(project: Project, defect: str) -> None:
    if defect == "a newer revision reading another secret":
        _deployed(project)
    else:  # the key invariants need only the secret: bootstrap is a deploy without build and push
        booted = project.run("bootstrap")
        assert booted.returncode == 0, booted.output
        assert check_invariants(project) == []
    plant, expected = INVARIANT_DEFECTS[defect]
    plant(project)
    broken = check_invariants(project)
    assert any(expected in problem for problem in broken), broken
    record_figure(FIGURES, "invariant defects caught")


def _role_policy(project: Project) -> None:
    iam = project.aws("iam")
    role = f"gcpfargate-{project.family}-execution"
    names = iam.list_role_policies(RoleName=role)["PolicyNames"]
    document = (
        '{"Version": "2012-10-17", '
        '"Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}'
    )
    iam.put_role_policy(
        RoleName=role, PolicyName=names[0] if names else "planted", PolicyDocument=document
    )


def _retention(project: Project) -> None:
    project.aws("logs").put_retention_policy(
        logGroupName=f"/ecs/{project.family}", retentionInDays=1
    )


def _mutability(project: Project) -> None:
    project.aws("ecr").put_image_tag_mutability(
        repositoryName=project.family, imageTagMutability="IMMUTABLE"
    )


def _secret_tag(project: Project) -> None:
    project.aws("secretsmanager").tag_resource(
        SecretId=project.secret_name, Tags=[{"Key": "team", "Value": "x"}]
    )


SHAPE_DEFECTS: dict[str, Callable[[Project], None]] = {
    "a role policy document": _role_policy,
    "a log group's retention": _retention,
    "a repository's tag mutability": _mutability,
    "a secret tag": _secret_tag,
    "a key's state": _orphan,
}


def test_two_clean_deploys_have_the_same_shape(
    project: Project, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """shape() hides what differs between projects (names, ids, digests, times) and nothing else."""
    from tests.reliability.helpers import new_project

    other = new_project(project.stack, tmp_path_factory.mktemp("other"))
    _deployed(project)
    _deployed(other)
    assert differences(shape(project), shape(other)) == []


def test_shape_and_snapshot_see_content(project: Project) -> None:
    """Each planted change of content (not of counts) makes shape() and snapshot() differ.
    snapshot() reads the whole session's stack (every role of hundreds): it is taken once before and
    once after all plants, and each plant must show in its own part of it."""
    _deployed(project)
    missed: list[str] = []
    before_all = snapshot(project)
    for name, plant in SHAPE_DEFECTS.items():
        before = shape(project)
        plant(project)
        if shape(project) == before:
            missed.append(f"shape did not see {name}")
        else:
            record_figure(FIGURES, "shape changes caught")
    project.aws("scheduler").create_schedule(
        Name=f"planted-{project.family}",
        ScheduleExpression="rate(1 hour)",
        FlexibleTimeWindow={"Mode": "OFF"},
        Target={
            "Arn": "arn:aws:ecs:ap-northeast-1:123456789012:cluster/default",
            "RoleArn": "arn:aws:iam::123456789012:role/planted",
        },
    )
    after_all = snapshot(project)
    parts = {
        "a role policy document": ("roles", f"gcpfargate-{project.family}-execution"),
        "a log group's retention": ("log_groups", f"/ecs/{project.family}"),
        "a repository's tag mutability": ("repositories", project.family),
        "a secret tag": ("secrets", project.secret_name),
        "a key's state": ("keys", None),
        "a schedule": ("schedules", f"default/planted-{project.family}"),
    }
    for name, (part, item) in parts.items():
        seen = (
            (before_all[part], after_all[part])
            if item is None
            else (before_all[part].get(item), after_all[part].get(item))
        )
        if seen[0] == seen[1]:
            missed.append(f"snapshot did not see {name}")
        else:
            record_figure(FIGURES, "snapshot changes caught")
    assert missed == []


def _registry_push(project: Project) -> None:
    """An image pushed to the stack's registry by the engine (a one-file layer of its own)."""
    import io
    import tarfile

    import docker

    layer = io.BytesIO()
    with tarfile.open(fileobj=layer, mode="w") as tar:
        content = project.family.encode()
        info = tarfile.TarInfo("planted")
        info.size = len(content)
        tar.addfile(info, io.BytesIO(content))
    client = docker.APIClient(base_url=project.stack.docker_host)
    repository = f"{project.stack.registry}/planted-{project.family}"
    try:
        client.import_image_from_data(layer.getvalue(), repository=repository, tag="v1")
        for _ in client.push(repository, tag="v1", stream=True, decode=True):
            pass
    finally:
        client.close()


def _engine_tag(project: Project) -> None:
    import docker

    client = docker.APIClient(base_url=project.stack.docker_host)
    try:
        client.tag(
            f"{project.stack.registry}/planted-{project.family}:v1",
            f"planted-{project.family}",
            "v2",
        )
    finally:
        client.close()


def _engine_container(project: Project) -> None:
    import docker

    client = docker.APIClient(base_url=project.stack.docker_host)
    try:
        client.create_container(
            f"planted-{project.family}:v2", command=["/planted"], network_disabled=True
        )
    finally:
        client.close()


# Each kind of write the bad-input corpus must not make, and the journal line it must leave.
JOURNAL_DEFECTS: dict[str, tuple[Callable[[Project], None], str]] = {
    "an AWS write (a secret tag)": (_secret_tag, "AWS secretsmanager.TagResource"),
    "an AWS write (a role policy)": (_role_policy, "AWS iam.PutRolePolicy"),
    "an AWS write (a log group's retention)": (_retention, "AWS logs.PutRetentionPolicy"),
    "an AWS write (a repository setting)": (_mutability, "AWS ecr.PutImageTagMutability"),
    "a key minted in the IAM emulator": (_orphan, "IAM emulator"),
    "a key disabled in the IAM emulator": (_disabled_current, "IAM emulator keys"),
    "a registry upload (and the engine's push)": (_registry_push, "registry PUT /v2/"),
    "an engine change (a tag)": (_engine_tag, "engine image tag"),
    "an engine change (a new container)": (_engine_container, "engine container create"),
}


def test_the_write_journal_sees_each_kind_of_write(project: Project) -> None:
    """The bad-input corpus judges "changed nothing" by the write journal: reading everything
    leaves it empty, and each kind of write planted leaves its own line in it."""
    if project.stack.strict is None:
        pytest.skip("the write journal is the strict layer's")
    _deployed(project)
    mark = write_mark(project)
    snapshot(project)  # reads every part of the stack (AWS, keys, registry)
    assert writes_since(project, mark) == [], "a read counted as a write"
    missed = []
    for name, (plant, line) in JOURNAL_DEFECTS.items():
        mark = write_mark(project)
        plant(project)
        seen = writes_since(project, mark)
        if not any(entry.startswith(line) for entry in seen):
            missed.append(f"{name}: {seen}")
        else:
            record_figure(FIGURES, "journal writes caught")
    assert missed == []
