"""gcpfargate's own roles as plans: a preview records exactly the changes an apply makes (same
action, resource and name, in the same order) from the same starting state, and makes no write.
Checked with botocore's Stubber: every call is asserted, so a preview's stray write fails."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.stub import Stubber

from gcpfargate.config import load_settings
from gcpfargate.core.context import Context
from gcpfargate.core.plan import Change, Plan
from gcpfargate.core.report import NullReporter
from gcpfargate.iam import execution_role, policy, roles

REGION = "eu-west-1"
ACCOUNT = "123456789012"
FAMILY = "web"
ROLE = f"gcpfargate-{FAMILY}-execution"
ROLE_ARN = f"arn:aws:iam::{ACCOUNT}:role/{ROLE}"
SECRET_ARN = f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:gcpfargate/{FAMILY}-AbCdEf"
MANAGED = "arn:aws:iam::aws:policy/service-role/AmazonECSTaskExecutionRolePolicy"
CREATED = "2026-01-01T00:00:00Z"


@pytest.fixture(autouse=True)
def _aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("AWS_ENDPOINT_URL", "AWS_PROFILE", "AWS_ENDPOINT_URL_IAM", "AWS_ENDPOINT_URL_STS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")


def make_context(tmp_path: Path, apply: bool) -> Context:
    config = tmp_path / "gcpfargate.toml"
    config.write_text(f'[aws]\nregion = "{REGION}"\n\n[task]\nfamily = "{FAMILY}"\n')
    ctx = Context(
        settings=load_settings(config, environ={}),
        reporter=NullReporter(),
        plan=Plan(apply=apply),
    )
    ctx.aws._account_id = ACCOUNT  # the caller's identity is not what these tests are about
    return ctx


@pytest.fixture
def iam(tmp_path: Path) -> Iterator[Any]:
    """A factory: (apply) -> (ctx, stubber) with the IAM client stubbed."""
    stubbers: list[Stubber] = []

    def make(apply: bool) -> tuple[Context, Stubber]:
        ctx = make_context(tmp_path / ("apply" if apply else "preview"), apply)
        stubber = Stubber(ctx.aws.client("iam"))
        stubber.activate()
        stubbers.append(stubber)
        return ctx, stubber

    (tmp_path / "apply").mkdir()
    (tmp_path / "preview").mkdir()
    yield make
    for stubber in stubbers:
        stubber.assert_no_pending_responses()
        stubber.deactivate()


def role(trust: dict[str, Any]) -> dict[str, Any]:
    return {
        "Role": {
            "Path": "/",
            "RoleName": ROLE,
            "RoleId": "AROAEXAMPLEEXAMPLE12",
            "Arn": ROLE_ARN,
            "CreateDate": CREATED,
            "AssumeRolePolicyDocument": json.dumps(trust),
        }
    }


def kinds(changes: list[Change]) -> list[tuple[str, str, str]]:
    return [(change.action, change.resource, change.name) for change in changes]


def drifted_role_reads(stubber: Stubber, inline_name: str) -> None:
    """An existing role that trusts the wrong service, lacks the managed policy and holds an
    older inline policy."""
    wrong = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Service": "lambda.amazonaws.com"},
                "Action": "sts:AssumeRole",
            }
        ],
    }
    stubber.add_response("get_role", role(wrong), {"RoleName": ROLE})
    stubber.add_response(
        "list_attached_role_policies",
        {"AttachedPolicies": [], "IsTruncated": False},
        {"RoleName": ROLE},
    )
    stubber.add_response(
        "get_role_policy",
        {
            "RoleName": ROLE,
            "PolicyName": inline_name,
            "PolicyDocument": json.dumps({"Version": "2012-10-17", "Statement": []}),
        },
        {"RoleName": ROLE, "PolicyName": inline_name},
    )


def own_role(inline_name: str) -> roles.OwnRole:
    inline = policy.secret_access_policy(SECRET_ARN)
    return roles.OwnRole(
        name=ROLE,
        description="ECS task execution role managed by gcpfargate",
        summary="trusts ecs-tasks",
        trust=policy.trust_policy(),
        trusted=lambda document: policy.trusts(document, policy.ECS_TASKS_PRINCIPAL),
        inline_name=inline_name,
        inline=inline,
        inline_action="grant read access",
        managed=(MANAGED,),
    )


def test_corrections_preview_equals_apply(iam: Any) -> None:
    name = "gcpfargate-secret-x"
    preview, stub = iam(False)
    drifted_role_reads(stub, name)
    planned = roles.ensure_own(preview, own_role(name))

    applying, stub = iam(True)
    drifted_role_reads(stub, name)
    stub.add_response("update_assume_role_policy", {}, None)
    stub.add_response("attach_role_policy", {}, {"RoleName": ROLE, "PolicyArn": MANAGED})
    stub.add_response("put_role_policy", {}, None)
    applied = roles.ensure_own(applying, own_role(name))

    assert [change.text for change in planned.plan] == [
        f"update the trust policy of role {ROLE}",
        f"attach {MANAGED} to role {ROLE}",
        f"update policy {name} of role {ROLE}",
    ]
    assert kinds(planned.plan) == kinds(applied.plan) == kinds(preview.plan.changes)
    assert kinds(applying.plan.changes) == kinds(preview.plan.changes)
    assert planned.changed and applied.changed and planned.exists and applied.exists
    assert preview.plan.shown(0) == planned.plan and applying.plan.shown(0) == []


def test_creation_preview_equals_apply(iam: Any) -> None:
    name = "gcpfargate-secret-x"
    missing = {"Error": {"Code": "NoSuchEntity", "Message": f"The role with name {ROLE} ..."}}
    preview, stub = iam(False)
    stub.add_client_error("get_role", "NoSuchEntity", missing["Error"]["Message"], 404)
    planned = roles.ensure_own(preview, own_role(name))

    applying, stub = iam(True)
    stub.add_client_error("get_role", "NoSuchEntity", missing["Error"]["Message"], 404)
    stub.add_response("create_role", role(policy.trust_policy()), None)
    stub.add_response("attach_role_policy", {}, {"RoleName": ROLE, "PolicyArn": MANAGED})
    stub.add_response("put_role_policy", {}, None)
    applied = roles.ensure_own(applying, own_role(name))

    # A new role is one change: its policies come with it.
    assert kinds(planned.plan) == kinds(applied.plan) == [("create", "IAM role", ROLE)]
    assert planned.plan[0].text == f"create IAM role {ROLE} (trusts ecs-tasks)"
    assert planned.arn == applied.arn == ROLE_ARN
    assert (planned.exists, applied.exists) == (False, True)
    assert planned.created and applied.created


def test_execution_role_is_one_change_named_by_its_arn(iam: Any) -> None:
    """bootstrap names the execution role, not each of its policies; the role's tidying (another
    secret's policy whose secret is gone) is a change of its own, previewed like the rest."""
    preview, stub = iam(False)
    inline_name = execution_role.secret_policy_name(preview, SECRET_ARN)
    drifted_role_reads(stub, inline_name)
    stub.add_response(
        "list_role_policies",
        {"PolicyNames": [inline_name], "IsTruncated": False},
        {"RoleName": ROLE},
    )
    result = execution_role.ensure(preview, SECRET_ARN)
    assert result.changed and result.arn == ROLE_ARN
    assert [change.text for change in preview.plan.changes] == [
        f"create or update execution role {ROLE_ARN}"
    ]
    assert kinds(preview.plan.changes) == [("update", "IAM role", ROLE)]
