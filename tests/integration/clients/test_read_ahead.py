"""Reads sent ahead (`AwsClients.read_ahead`, issue 18), against moto through the strict layer.

deploy sends the AWS reads its steps are sure to make ahead, on one background thread, so their
network waits overlap with the work that keeps the interpreter busy. What has to hold: a read sent
ahead replaces exactly one identical call (GCPFARGATE_CALL_LOG counts what was sent), a write to
the service in between makes the call ask again, an error is worded by the call that takes it, and
reads sent by `then` are already registered when the first answer is handed over.
"""

from __future__ import annotations

import json
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from gcpfargate.clients.aws import AwsClients
from gcpfargate.errors import AwsError
from tests.stack.local import LocalStack

TRUST = json.dumps(
    {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Service": "ecs-tasks.amazonaws.com"},
                "Action": "sts:AssumeRole",
            }
        ],
    }
)


def _document(action: str) -> dict[str, object]:
    return {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": action, "Resource": "*"}],
    }


@pytest.fixture
def aws(stack: LocalStack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[AwsClients]:
    for name, value in stack.env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("GCPFARGATE_CALL_LOG", str(tmp_path / "calls.log"))
    yield AwsClients()


def sent(tmp_path: Path) -> Counter[str]:
    log = tmp_path / "calls.log"
    return (
        Counter(" ".join(line.split()[1:3]) for line in log.read_text().splitlines())
        if log.exists()
        else Counter()
    )


def role(aws: AwsClients) -> str:
    name = f"ahead-{uuid.uuid4().hex[:10]}"
    aws.call("iam", "create_role", RoleName=name, AssumeRolePolicyDocument=TRUST)
    return name


def test_a_read_sent_ahead_replaces_exactly_one_identical_call(
    aws: AwsClients, tmp_path: Path
) -> None:
    name = role(aws)
    aws.read_ahead("iam", "get_role", RoleName=name)
    first = aws.call("iam", "get_role", "read the role", RoleName=name)
    assert first["Role"]["RoleName"] == name
    assert sent(tmp_path)["iam GetRole"] == 1
    # Taken once: the next call asks AWS itself.
    aws.call("iam", "get_role", "read the role", RoleName=name)
    assert sent(tmp_path)["iam GetRole"] == 2


def test_a_call_with_other_parameters_does_not_take_it(aws: AwsClients, tmp_path: Path) -> None:
    one, other = role(aws), role(aws)
    aws.read_ahead("iam", "get_role", RoleName=one)
    assert aws.call("iam", "get_role", RoleName=other)["Role"]["RoleName"] == other
    assert aws.call("iam", "get_role", RoleName=one)["Role"]["RoleName"] == one
    assert sent(tmp_path)["iam GetRole"] == 2


def test_a_write_to_the_service_in_between_makes_the_call_ask_again(
    aws: AwsClients, tmp_path: Path
) -> None:
    name = role(aws)
    aws.call(
        "iam",
        "put_role_policy",
        RoleName=name,
        PolicyName="p",
        PolicyDocument=json.dumps(_document("s3:Get*")),
    )
    aws.paginate_ahead("iam", "list_role_policies", "PolicyNames", RoleName=name)
    aws.read_ahead("iam", "get_role_policy", RoleName=name, PolicyName="p")
    aws.call(
        "iam",
        "put_role_policy",
        RoleName=name,
        PolicyName="p",
        PolicyDocument=json.dumps(_document("ecr:*")),
    )
    # The answer sent ahead predates the write: not taken, asked again, and the new document is what
    # counts.
    document = aws.call("iam", "get_role_policy", RoleName=name, PolicyName="p")["PolicyDocument"]
    assert document["Statement"][0]["Action"] == "ecr:*"
    assert aws.paginate("iam", "list_role_policies", "PolicyNames", RoleName=name) == ["p"]
    assert sent(tmp_path)["iam GetRolePolicy"] == 2
    assert sent(tmp_path)["iam ListRolePolicies"] == 2


def test_a_write_to_another_service_leaves_the_answer_good(aws: AwsClients, tmp_path: Path) -> None:
    name = role(aws)
    aws.read_ahead("iam", "get_role", RoleName=name)
    group = f"/ahead/{uuid.uuid4().hex[:8]}"
    aws.call("logs", "create_log_group", logGroupName=group)
    aws.call("iam", "get_role", RoleName=name)
    assert sent(tmp_path)["iam GetRole"] == 1


def test_an_error_is_worded_by_the_call_that_takes_it(aws: AwsClients, tmp_path: Path) -> None:
    missing = f"ahead-missing-{uuid.uuid4().hex[:8]}"
    aws.read_ahead("iam", "get_role", RoleName=missing)
    assert aws.find("iam", "get_role", "NoSuchEntity", "read IAM role", RoleName=missing) is None
    aws.read_ahead("iam", "get_role", RoleName=missing)
    with pytest.raises(AwsError) as raised:
        aws.call("iam", "get_role", f"read IAM role {missing}", RoleName=missing)
    assert raised.value.code == "NoSuchEntity"
    assert str(raised.value.message).startswith(f"failed to read IAM role {missing}: NoSuchEntity")
    assert sent(tmp_path)["iam GetRole"] == 2


def test_reads_sent_by_then_are_there_before_the_first_answer(
    aws: AwsClients, tmp_path: Path
) -> None:
    name = role(aws)
    aws.call(
        "iam",
        "put_role_policy",
        RoleName=name,
        PolicyName="p",
        PolicyDocument=json.dumps(_document("s3:Get*")),
    )
    seen: list[str] = []

    def dependent(answer: dict[str, dict[str, str]]) -> None:
        seen.append(answer["Role"]["RoleName"])
        aws.paginate_ahead("iam", "list_role_policies", "PolicyNames", RoleName=name)
        aws.read_ahead("iam", "get_role_policy", RoleName=name, PolicyName="p")

    aws.read_ahead("iam", "get_role", then=dependent, RoleName=name)
    aws.call("iam", "get_role", RoleName=name)
    assert seen == [name]
    # Taken straight after the first answer, with no time for the worker to have sent them: each
    # was registered before that answer was handed over, so none is asked twice.
    assert aws.paginate("iam", "list_role_policies", "PolicyNames", RoleName=name) == ["p"]
    assert aws.call("iam", "get_role_policy", RoleName=name, PolicyName="p")["PolicyName"] == "p"
    calls = sent(tmp_path)
    assert (calls["iam GetRole"], calls["iam ListRolePolicies"], calls["iam GetRolePolicy"]) == (
        1,
        1,
        1,
    )
