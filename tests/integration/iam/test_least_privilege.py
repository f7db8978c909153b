"""gcpfargate's commands as an AWS identity that holds only docs/aws-policy.json, on a moto server
that enforces IAM.

moto checks the caller's identity-based policies on each request once more than
`INITIAL_NO_AUTH_ACTION_COUNT` requests were made (moto/core/authorization.py,
`_authenticate_and_authorize_action`); `POST /moto-api/reset-auth` sets that count on a running
server and starts counting again (moto/moto_api/_internal/responses.py). The switch is per
server, not per request, so this module has a stack of its own (its own moto, registry and IAM
emulator; the session's Docker engine): with enforcement off, the suite's "testing" identity
creates the users and their keys; then the count is set to 0 and every request after it,
whoever sends it, must be signed by a moto IAM user whose policies allow it.

moto evaluates every request against the resource "*", except IAM requests that name a role
(resource: the role's ARN) and sts:AssumeRole (moto/core/responses.py `call_action`,
moto/iam/responses.py `_determine_resource`). So the users hold the policy's actions exactly,
with the role-scoped resources for those role requests and "*" for the rest: the actions and the
`gcpfargate-*` role scoping are proven here; the other resource scopes are not (AWS's own policy
simulator would be the place for that).
"""

from __future__ import annotations

import copy
import json
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import (
    ACCOUNT_ID,
    REGION,
    ROOT,
    Project,
    assert_one_clean_line,
    new_project,
)
from tests.integration.helpers import READ_ONLY, manifest_status, prepare
from tests.stack.images import write_busybox_context
from tests.stack.local import LocalStack

POLICY = ROOT / "docs" / "aws-policy.json"
# The action the short user lacks: the last step of deploy, after every step before it succeeded.
WITHHELD = "ecs:RegisterTaskDefinition"


def _role_scoped(action: str) -> bool:
    """Whether moto authorises `action` against a role ARN (an IAM request with RoleName, or
    sts:AssumeRole) rather than "*"."""
    import botocore.session

    service, _, operation = action.partition(":")
    if action == "sts:AssumeRole":
        return True
    if service != "iam":
        return False
    model = botocore.session.get_session().get_service_model("iam")
    if operation not in model.operation_names:
        return False  # iam:PassRole: no operation of its own, never asked by moto
    shape = model.operation_model(operation).input_shape
    return shape is not None and "RoleName" in shape.members


def as_moto_evaluates(policy: dict[str, Any], without: str = "") -> dict[str, Any]:
    """docs/aws-policy.json in the form moto can evaluate (module docstring), less `without`."""
    statements = []
    for statement in copy.deepcopy(policy)["Statement"]:
        actions = statement["Action"]
        actions = [actions] if isinstance(actions, str) else actions
        actions = [action for action in actions if action != without]
        # The README's fill-in: the account and the partition (moto's is "aws").
        filled = json.dumps(statement["Resource"]).replace("ACCOUNT_ID", ACCOUNT_ID)
        resource = json.loads(filled.replace("arn:PARTITION:", "arn:aws:"))
        scoped = [action for action in actions if _role_scoped(action)]
        rest = [action for action in actions if not _role_scoped(action)]
        if scoped:
            statements.append({**statement, "Action": scoped, "Resource": resource})
        if rest:
            sid = statement["Sid"] + ("Moto" if scoped else "")
            statements.append({**statement, "Sid": sid, "Action": rest, "Resource": "*"})
    return {"Version": policy["Version"], "Statement": statements}


@dataclass
class Identity:
    key_id: str
    secret: str

    @property
    def env(self) -> dict[str, str | None]:
        return {
            "AWS_ACCESS_KEY_ID": self.key_id,
            "AWS_SECRET_ACCESS_KEY": self.secret,
            "AWS_SESSION_TOKEN": None,  # a long-term user key: moto refuses it with a token
        }


@dataclass
class Locked:
    stack: LocalStack
    deployer: Identity  # exactly the policy
    short: Identity  # the policy less WITHHELD
    admin: Identity  # everything: the tests' own reads


def _reset_auth(stack: LocalStack, count: str) -> None:
    request = urllib.request.Request(
        f"{stack.moto_direct_url}/moto-api/reset-auth",
        data=count.encode(),
        method="POST",
        # Not a form: moto reads the raw body, which a form content type would leave empty.
        headers={"Content-Type": "text/plain"},
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        assert answer.status == 200


def _user(iam: Any, name: str, policy: dict[str, Any]) -> Identity:
    iam.create_user(UserName=name)
    iam.put_user_policy(UserName=name, PolicyName="gcpfargate", PolicyDocument=json.dumps(policy))
    key = iam.create_access_key(UserName=name)["AccessKey"]
    return Identity(key["AccessKeyId"], key["SecretAccessKey"])


@pytest.fixture(scope="module")
def locked(stack: LocalStack) -> Iterator[Locked]:
    import boto3

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DOCKER_HOST", stack.docker_host)  # the session's engine, not a second one
        local = LocalStack(strict=False, enforce_iam=True).start()
    try:
        iam = boto3.client(
            "iam",
            region_name=REGION,
            endpoint_url=local.moto_direct_url,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )
        policy = json.loads(POLICY.read_text())
        everything = {
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}],
        }
        users = Locked(
            local,
            deployer=_user(iam, "gcpfargate-deployer", as_moto_evaluates(policy)),
            short=_user(iam, "gcpfargate-short", as_moto_evaluates(policy, without=WITHHELD)),
            admin=_user(iam, "suite-admin", everything),
        )
        _reset_auth(local, "0")  # from here on, every request is authenticated and authorised
        yield users
    finally:
        local.stop()


def _project(locked: Locked, directory: Path, who: Identity) -> Project:
    project = new_project(locked.stack, directory)
    project.extra_env.update({k: v for k, v in who.env.items() if v is not None})
    return project


def _run(project: Project, who: Identity, *args: str) -> Any:
    return project.run(*args, env={"AWS_SESSION_TOKEN": None, **who.env})


def _admin(locked: Locked, service: str) -> Any:
    import boto3

    return boto3.client(
        service,
        region_name=REGION,
        endpoint_url=locked.stack.moto_direct_url,
        aws_access_key_id=locked.admin.key_id,
        aws_secret_access_key=locked.admin.secret,
    )


def _network(locked: Locked, project: Project) -> None:
    """A VPC, subnet, security group and cluster for `run` and `schedule` (made by the admin: the
    user runs gcpfargate, it does not build networks), and the [run] section naming them."""
    ec2 = _admin(locked, "ec2")
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    ec2.modify_vpc_attribute(VpcId=vpc, EnableDnsHostnames={"Value": True})
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.1.0/24")["Subnet"]["SubnetId"]
    group = ec2.create_security_group(GroupName=f"sg-{project.family}", Description="t", VpcId=vpc)[
        "GroupId"
    ]
    cluster = f"cluster-{project.family}"
    _admin(locked, "ecs").create_cluster(clusterName=cluster)
    config = project.dir / "gcpfargate.toml"
    config.write_text(
        config.read_text()
        + f'\n[run]\ncluster = "{cluster}"\nsubnets = ["{subnet}"]\n'
        + f'security_groups = ["{group}"]\n'
    )


def _moto_can_run(locked: Locked, project: Project) -> None:
    """moto's RunTask fails (HTTP 500) on a container without a memory of its own
    (moto/ecs/models.py `_calculate_task_resource_requirements`), which ECS allows when the task
    has one: the admin registers the deployed definition again with it, for `run` to start."""
    ecs = _admin(locked, "ecs")
    definition = ecs.describe_task_definition(taskDefinition=project.family)["taskDefinition"]
    for field in READ_ONLY:
        definition.pop(field, None)
    for container in definition["containerDefinitions"]:
        container.setdefault("memory", 256)
    ecs.register_task_definition(**definition)


def test_auth_is_enforced_on_this_stack(locked: Locked) -> None:
    """The precondition: the suite's usual identity is refused here, the users are not."""
    import boto3
    from botocore.exceptions import ClientError

    anonymous = boto3.client(
        "ecs",
        region_name=REGION,
        endpoint_url=locked.stack.moto_direct_url,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    with pytest.raises(ClientError) as refused:
        anonymous.list_clusters()
    assert refused.value.response["Error"]["Code"] == "UnrecognizedClientException"
    _admin(locked, "ecs").list_clusters()


def test_the_commands_succeed_as_a_user_holding_only_the_policy(
    locked: Locked, tmp_path: Path
) -> None:
    who = locked.deployer
    project = _project(locked, tmp_path, who)
    prepare(project)
    _network(locked, project)
    steps = [
        ("deploy", "--output", "json"),
        ("doctor", "--output", "json"),
        ("run-local",),
        ("run", "--no-wait", "--output", "json"),
        ("rotate-key", "--output", "json"),
        ("schedule", "--cron", "0 3 * * ? *", "--output", "json"),
        ("schedule", "--show"),
        ("doctor", "--output", "json"),
    ]
    for step in steps:
        if step[0] == "run":
            _moto_can_run(locked, project)
        result = _run(project, who, *step)
        assert result.returncode == 0, f"{' '.join(step)}:\n{result.output}"
        assert "AccessDenied" not in result.output, result.output
    definition = _admin(locked, "ecs").describe_task_definition(taskDefinition=project.family)
    assert definition["taskDefinition"]["family"] == project.family
    schedules = _admin(locked, "scheduler").list_schedules()["Schedules"]
    assert any(project.family in each["Name"] for each in schedules)


def test_an_action_outside_the_policy_is_refused_with_awss_text(
    locked: Locked, tmp_path: Path
) -> None:
    who = locked.short
    project = _project(locked, tmp_path, who)
    prepare(project)
    result = _run(project, who, "deploy")
    line = assert_one_clean_line(
        result,
        1,
        "AccessDenied",
        f"User: arn:aws:iam::{ACCOUNT_ID}:user/gcpfargate-short is not authorized to perform: "
        + WITHHELD,
    )
    assert "register" in line
    assert "Check the IAM permissions" in result.stderr
    families = _admin(locked, "ecs").list_task_definition_families(familyPrefix=project.family)
    assert families["families"] == []


def _service(locked: Locked, project: Project, task_definition_arn: str) -> str:
    """tests/integration/helpers.py `add_service`, made by the admin (the policy creates no
    services: the user's deploy and rollback update one that exists)."""
    ecs = _admin(locked, "ecs")
    cluster = project.family
    ecs.create_cluster(clusterName=cluster)
    # desiredCount 0: moto starts no tasks, so every deployment is COMPLETED at once.
    ecs.create_service(
        cluster=cluster,
        serviceName="web",
        taskDefinition=task_definition_arn,
        desiredCount=0,
        launchType="FARGATE",
    )
    config = project.dir / "gcpfargate.toml"
    config.write_text(config.read_text() + f'\n[service]\nname = "web"\ncluster = "{cluster}"\n')
    return cluster


def test_rollback_and_deregister_succeed_as_a_user_holding_only_the_policy(
    locked: Locked, tmp_path: Path
) -> None:
    who = locked.deployer
    project = _project(locked, tmp_path, who)
    family = project.family
    ecs = _admin(locked, "ecs")

    def as_user(*args: str) -> dict[str, Any]:
        result = _run(project, who, *args, "--output", "json")
        assert result.returncode == 0, f"{' '.join(args)}:\n{result.output}"
        assert "AccessDenied" not in result.output, result.output
        return dict(result.json)

    def running(cluster: str) -> str:
        service = ecs.describe_services(cluster=cluster, services=["web"])["services"][0]
        return str(service["taskDefinition"]).rsplit("/", 1)[-1]

    def active() -> list[int]:
        arns = ecs.list_task_definitions(familyPrefix=family, status="ACTIVE")
        return sorted(int(arn.rsplit(":", 1)[-1]) for arn in arns["taskDefinitionArns"])

    def register(revision: int, edit: str) -> None:
        """A hand-edited copy of `revision` (same image), registered by the admin."""
        definition = ecs.describe_task_definition(taskDefinition=f"{family}:{revision}")
        body = {k: v for k, v in definition["taskDefinition"].items() if k not in READ_ONLY}
        body["containerDefinitions"][0].setdefault("environment", []).append(
            {"name": "EDIT", "value": edit}
        )
        ecs.register_task_definition(**body)

    prepare(project)
    first = as_user("deploy")
    image_a = first["push-image"]["digest"]
    cluster = _service(locked, project, first["register-task"]["task_definition_arn"])
    write_busybox_context(project.dir, ('CMD ["echo", "job v2"]',))  # a new image: revision 2
    second = as_user("deploy")
    image_b = second["push-image"]["digest"]
    assert (second["register-task"]["revision"], second["service"]["status"]) == (2, "COMPLETED")
    assert running(cluster) == f"{family}:2" and image_a != image_b

    back = as_user("rollback")
    assert (back["status"], back["task_definition_arn"], back["previous_task_definition_arn"]) == (
        "COMPLETED",
        first["register-task"]["task_definition_arn"],
        second["register-task"]["task_definition_arn"],
    )
    assert running(cluster) == f"{family}:1"

    # Revisions 1 (image A, the service's), 2 (image B), 3 (image A, the latest): revision 2 goes,
    # and without --images its image stays.
    register(1, "3")
    plain = as_user("deregister", "--keep-last", "1", "--yes")
    assert (plain["deregistered"], plain["images"], plain["changed"]) == ([2], [], True)
    assert active() == [1, 3]
    assert manifest_status(project, image_b) == 200

    # Revisions 4 (image B again) and 5 (image A, the latest): with --images, revisions 3 and 4
    # go, and image B with them (nothing else names it); image A stays (revisions 1 and 5 use it).
    # The local registry deletes through the Registry API, so ECR's BatchDeleteImage (IMPLIED in
    # scripts/aws_policy.py) is not proven here; the pin search's ECS and Scheduler reads are.
    register(2, "4")
    register(1, "5")
    pruned = as_user("deregister", "--keep-last", "1", "--images", "--yes")
    assert (pruned["deregistered"], pruned["images"]) == ([4, 3], [f"{family}@{image_b}"])
    assert active() == [1, 5]
    assert (manifest_status(project, image_a), manifest_status(project, image_b)) == (200, 404)
