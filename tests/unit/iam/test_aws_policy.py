"""docs/aws-policy.json covers every AWS operation the code can call, and nothing else.

moto does not enforce IAM, so a missing action is invisible to the integration suite. The
operations are found in the source (every `ctx.aws.call/find/paginate/read_ahead/paginate_ahead`
with a literal service and operation) and mapped to IAM actions through botocore's models; the
few that cannot be found that way are listed below with the reason.
"""

from __future__ import annotations

import json

from tests.conftest import ROOT
from tests.unit.helpers import IMPLIED, called_operations


def policy_actions() -> set[str]:
    policy = json.loads((ROOT / "docs" / "aws-policy.json").read_text())
    actions: set[str] = set()
    for statement in policy["Statement"]:
        action = statement["Action"]
        actions |= {action} if isinstance(action, str) else set(action)
    return actions


def test_the_policy_allows_every_operation_the_code_calls() -> None:
    called = called_operations()
    missing = {
        action: sorted(files) for action, files in called.items() if action not in policy_actions()
    }
    assert missing == {}
    assert policy_actions() >= IMPLIED


def test_the_policy_allows_nothing_the_code_does_not_need() -> None:
    assert policy_actions() - set(called_operations()) - IMPLIED == set()
