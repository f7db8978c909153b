"""The CEL subset used by workload identity mappings and conditions
(gcpfargate.credentials.keyless.cel)."""

from __future__ import annotations

import pytest

from gcpfargate.credentials.keyless import cel

DEFAULT_AWS_ROLE = (
    "assertion.arn.contains('assumed-role') ? assertion.arn.extract('{account_arn}assumed-role/') "
    "+ 'assumed-role/' + assertion.arn.extract('assumed-role/{role_name}/') : assertion.arn"
)
SESSION = "arn:aws:sts::123456789012:assumed-role/gcpfargate-batch-task/3f2a"


def test_googles_default_aws_mapping_gives_the_role_without_the_session() -> None:
    attributes = cel.map_attributes(
        {"google.subject": "assertion.arn", "attribute.aws_role": DEFAULT_AWS_ROLE},
        {"arn": SESSION},
    )
    assert attributes == {
        "google.subject": SESSION,
        "attribute.aws_role": "arn:aws:sts::123456789012:assumed-role/gcpfargate-batch-task",
    }
    user = "arn:aws:iam::123456789012:user/alice"
    assert cel.map_attributes({"a": DEFAULT_AWS_ROLE}, {"arn": user}) == {"a": user}


@pytest.mark.parametrize(
    ("condition", "accepted"),
    [
        (
            "attribute.aws_role.startsWith('arn:aws:sts::123456789012:assumed-role/gcpfargate-')",
            True,
        ),
        ("attribute.aws_role.endsWith('-task') && !(google.subject == 'x')", True),
        ("attribute.aws_role.startsWith('arn:aws:sts::999999999999:') || false", False),
        ('assertion.arn != "" && (true ? false : true)', False),
        ("", True),
    ],
)
def test_conditions(condition: str, accepted: bool) -> None:
    attributes = {"google.subject": SESSION, "attribute.aws_role": SESSION.rsplit("/", 1)[0]}
    assert cel.condition_accepts(condition, {"arn": SESSION}, attributes) is accepted


@pytest.mark.parametrize(
    "expression",
    [
        "assertion.arn.matches('x')",
        "assertion.arn +",
        "1 == 1",
        "assertion.arn.extract('no placeholder')",
        "size(assertion.arn)",
    ],
)
def test_outside_the_subset_is_an_error_not_a_guess(expression: str) -> None:
    with pytest.raises(cel.CelError):
        cel.evaluate(expression, {"assertion": {"arn": SESSION}})


def test_extract() -> None:
    assert cel.extract(SESSION, "assumed-role/{role}/") == "gcpfargate-batch-task"
    assert cel.extract(SESSION, "{account}assumed-role/") == "arn:aws:sts::123456789012:"
    assert cel.extract(SESSION, "user/{name}") == ""
