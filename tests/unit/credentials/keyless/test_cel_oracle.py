"""gcpfargate's CEL (`doctor`'s local verdict) against the emulator's independent one (cel-python).

The emulator decides token exchanges with `tests/stack/iam/cel_oracle.py`, not with the product's
evaluator, so a test that passes against the emulator is not the product agreeing with itself. Here
the two are compared on what gcpfargate writes and on sessions it must refuse: wherever the product
gives a verdict, it must be the verdict a full CEL implementation gives.
"""

from __future__ import annotations

import pytest

from gcpfargate.credentials.keyless import bootstrap as keyless
from gcpfargate.credentials.keyless import cel
from tests.stack.iam import cel_oracle
from tests.stack.iam.pools import DEFAULT_AWS_MAPPING

ACCOUNT = "123456789012"
SESSIONS = [
    f"arn:aws:sts::{ACCOUNT}:assumed-role/gcpfargate-batch-task/3f2a",
    f"arn:aws:sts::{ACCOUNT}:assumed-role/gcpfargate-batch-execution/3f2a",  # not a task role
    f"arn:aws:sts::{ACCOUNT}:assumed-role/other-task/3f2a",  # not gcpfargate's
    "arn:aws:sts::999999999999:assumed-role/gcpfargate-batch-task/3f2a",  # another account
    f"arn:aws:sts::{ACCOUNT}:assumed-role/gcpfargate-x-task-task/s",
    f"arn:aws:iam::{ACCOUNT}:user/gcpfargate-batch-task",  # a user, not an assumed role
    f"arn:aws-cn:sts::{ACCOUNT}:assumed-role/gcpfargate-batch-task/3f2a",
    # the mapping keeps "gcpfargate-a"
    f"arn:aws:sts::{ACCOUNT}:assumed-role/gcpfargate-a/b-task/s",
]
CONDITIONS = [
    keyless.attribute_condition("aws", ACCOUNT),
    keyless.attribute_condition("aws-cn", ACCOUNT),
    "attribute.aws_role.contains('batch') || google.subject.endsWith('/s')",
    "!(attribute.aws_role == google.subject) && assertion.arn != ''",
    "",
]


@pytest.mark.parametrize("mapping", [DEFAULT_AWS_MAPPING, keyless.AWS_MAPPING])
@pytest.mark.parametrize("session", SESSIONS)
def test_the_mapping_agrees(session: str, mapping: dict[str, str]) -> None:
    assert cel.map_attributes(mapping, {"arn": session}) == cel_oracle.map_attributes(
        mapping, {"arn": session}
    )


@pytest.mark.parametrize("condition", CONDITIONS)
@pytest.mark.parametrize("session", SESSIONS)
def test_the_condition_agrees(condition: str, session: str) -> None:
    attributes = cel_oracle.map_attributes(DEFAULT_AWS_MAPPING, {"arn": session})
    assert cel.condition_accepts(
        condition, {"arn": session}, attributes
    ) is cel_oracle.condition_accepts(condition, {"arn": session}, attributes)


def test_gcpfargate_keeps_googles_aws_role_and_only_shortens_the_subject() -> None:
    # Google's default google.subject (the whole ARN) exceeds STS's 127 bytes for long role names
    # with ECS's 32-hex session names; attribute.aws_role, which bindings name, stays Google's.
    assert DEFAULT_AWS_MAPPING["google.subject"] == "assertion.arn"
    assert {k: v for k, v in keyless.AWS_MAPPING.items() if k != "google.subject"} == {
        k: v for k, v in DEFAULT_AWS_MAPPING.items() if k != "google.subject"
    }
    for session in SESSIONS:
        ours = cel_oracle.map_attributes(keyless.AWS_MAPPING, {"arn": session})
        default = cel_oracle.map_attributes(DEFAULT_AWS_MAPPING, {"arn": session})
        expected = session.split("assumed-role/", 1)[1] if "assumed-role/" in session else session
        assert ours == {**default, "google.subject": expected}


def test_gcpfargates_condition_admits_exactly_its_task_roles() -> None:
    condition = keyless.attribute_condition("aws", ACCOUNT)
    accepted = [
        session
        for session in SESSIONS
        if cel_oracle.condition_accepts(
            condition,
            {"arn": session},
            cel_oracle.map_attributes(DEFAULT_AWS_MAPPING, {"arn": session}),
        )
    ]
    assert accepted == [SESSIONS[0], SESSIONS[4]]  # the mapping keeps a path's first segment only


@pytest.mark.parametrize(
    ("expression", "names"),
    [
        ("assertion.arn ==", ("assertion",)),
        ("attribute.x == 'a'", ("assertion",)),
        ("nobody.arn == 'a'", ("assertion", "attribute", "google")),
    ],
)
def test_the_oracle_refuses_what_google_refuses(expression: str, names: tuple[str, ...]) -> None:
    with pytest.raises(cel_oracle.CelRefused):
        cel_oracle.check(expression, names)
