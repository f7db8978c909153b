"""The strict layer's trust-policy evaluation for AssumeRole (tests/stack/strict/sts.py), and the
trust statement gcp.local_principal adds, judged by it."""

from __future__ import annotations

from gcpfargate.credentials.keyless.bootstrap import task_role_trust
from tests.stack.strict.sts import _principal_arn, _statement_applies

ACCOUNT = "123456789012"
USER = f"arn:aws:iam::{ACCOUNT}:user/alice"


def _context(principal: str, mfa: bool = False) -> dict[str, str]:
    context = {"aws:principalarn": principal, "aws:principalaccount": ACCOUNT}
    if mfa:
        context["aws:multifactorauthpresent"] = "true"
    return context


def _admits(document: dict, caller: str) -> bool:
    principal = _principal_arn(caller)
    return any(_statement_applies(s, principal, _context(principal)) for s in document["Statement"])


def test_the_task_role_trusts_no_person_unless_one_is_named() -> None:
    assert not _admits(task_role_trust(ACCOUNT), USER)
    trust = task_role_trust(ACCOUNT, USER)
    assert _admits(trust, USER)
    assert not _admits(trust, f"arn:aws:iam::{ACCOUNT}:user/bob")
    assert not _admits(trust, "arn:aws:iam::210987654321:user/alice")


def test_a_wildcard_principal_admits_a_role_session_by_its_role() -> None:
    trust = task_role_trust(ACCOUNT, f"arn:aws:iam::{ACCOUNT}:role/*AWSReservedSSO_Admin_*")
    session = f"arn:aws:sts::{ACCOUNT}:assumed-role/AWSReservedSSO_Admin_0123/alice@example.com"
    assert _admits(trust, session)
    other = f"arn:aws:sts::{ACCOUNT}:assumed-role/AWSReservedSSO_ReadOnly_0123/alice@example.com"
    assert not _admits(trust, other)


def test_conditions_on_keys_the_request_lacks_fail_unless_if_exists() -> None:
    statement = {
        "Effect": "Allow",
        "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:root"},
        "Action": "sts:AssumeRole",
        "Condition": {"Bool": {"aws:MultiFactorAuthPresent": "true"}},
    }
    assert not _statement_applies(statement, USER, _context(USER))
    assert _statement_applies(statement, USER, _context(USER, mfa=True))
    statement["Condition"] = {"BoolIfExists": {"aws:MultiFactorAuthPresent": "true"}}
    assert _statement_applies(statement, USER, _context(USER))
    statement["Action"] = "sts:TagSession"
    assert not _statement_applies(statement, USER, _context(USER, mfa=True))
