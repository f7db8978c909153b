"""Keyless names against the real services' limits: IAM's 64-character role names and Google STS's
127-byte google.subject, for any family and the session names ECS gives tasks (32 hex)."""

from __future__ import annotations

import pytest

from gcpfargate.credentials.keyless import bootstrap as keyless
from gcpfargate.credentials.keyless import cel
from gcpfargate.settings import own_role_name
from tests.stack.iam import cel_oracle

ACCOUNT = "123456789012"
ECS_SESSION = "3f9c2d1e8b7a4c6d9e0f1a2b3c4d5e6f"  # a Fargate task id


def family(length: int, fill: str = "f") -> str:
    return ("batch-" + fill * length)[:length]


def session_arn(role: str, session: str = ECS_SESSION) -> str:
    return f"arn:aws:sts::{ACCOUNT}:assumed-role/{role}/{session}"


def test_short_families_keep_the_plain_task_role_name() -> None:
    assert keyless.task_role_name("batch") == "gcpfargate-batch-task"
    assert keyless.task_role_name(family(44)) == f"gcpfargate-{family(44)}-task"


@pytest.mark.parametrize("length", [44, 47, 48, 49, 55, 64, 255])
def test_task_role_names_stay_within_the_limit_and_keep_the_prefix_and_suffix(length: int) -> None:
    name = keyless.task_role_name(family(length))
    assert len(name) <= keyless.TASK_ROLE_NAME_MAX <= 64
    assert name.startswith("gcpfargate-") and name.endswith("-task")
    assert keyless.task_role_name(family(length)) == name  # stable


def test_long_families_sharing_a_prefix_get_different_task_roles() -> None:
    first, second = family(55, "a") + "x", family(55, "a") + "y"
    assert keyless.task_role_name(first) != keyless.task_role_name(second)


def test_the_execution_role_shortening_is_unchanged() -> None:
    assert own_role_name(family(55), "execution") == own_role_name(family(55), "execution", 64)
    assert len(own_role_name(family(55), "execution")) == 64


@pytest.mark.parametrize("length", [1, 44, 55, 255])
@pytest.mark.parametrize("session", [ECS_SESSION, "gcpfargate-run-local", "s" * 64])
def test_the_mapped_subject_fits_google_sts_for_any_family_and_session(
    length: int, session: str
) -> None:
    role = keyless.task_role_name(family(length))
    arn = session_arn(role, session)
    for evaluate in (cel.map_attributes, cel_oracle.map_attributes):
        mapped = evaluate(keyless.AWS_MAPPING, {"arn": arn})
        assert mapped["google.subject"] == f"{role}/{session}"
        assert len(mapped["google.subject"].encode()) <= keyless.SUBJECT_MAX_BYTES
        assert mapped["attribute.aws_role"] == f"arn:aws:sts::{ACCOUNT}:assumed-role/{role}"


@pytest.mark.parametrize("length", [44, 55])
def test_the_condition_admits_long_families_and_the_old_mapping_was_too_long(length: int) -> None:
    role = keyless.task_role_name(family(length))
    assertion = {"arn": session_arn(role)}
    attributes = cel_oracle.map_attributes(keyless.AWS_MAPPING, assertion)
    condition = keyless.attribute_condition("aws", ACCOUNT)
    assert cel_oracle.condition_accepts(condition, assertion, attributes)
    # Google's default (google.subject = assertion.arn) is over the limit for both.
    assert len(assertion["arn"].encode()) > keyless.SUBJECT_MAX_BYTES


def test_a_non_session_arn_maps_to_itself() -> None:
    arn = f"arn:aws:iam::{ACCOUNT}:user/someone"
    assert cel.map_attributes(keyless.AWS_MAPPING, {"arn": arn})["google.subject"] == arn
