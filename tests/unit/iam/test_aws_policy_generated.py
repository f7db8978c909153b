"""docs/aws-policy.json is generated: exactly what scripts/aws_policy.py writes from the recorded
operations (docs/aws-operations.txt), so an edit by hand, or a recording not turned into the
policy, fails here. tests/unit/iam/test_aws_policy.py checks both against the source's calls."""

from __future__ import annotations

import importlib.util
import sys
from types import ModuleType

import pytest

from tests.conftest import ROOT


def generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("aws_policy", ROOT / "scripts" / "aws_policy.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("aws_policy", module)
    spec.loader.exec_module(module)
    return module


def test_the_policy_is_what_the_recording_generates() -> None:
    aws_policy = generator()
    assert (ROOT / "docs" / "aws-policy.json").read_text() == aws_policy.render(
        aws_policy.read_recording()
    ), "docs/aws-policy.json is stale or edited by hand: run `make policy`"


def test_the_recording_holds_only_what_the_source_can_call() -> None:
    from tests.unit.helpers import IMPLIED, called_operations

    recorded = generator().read_recording()
    assert recorded and recorded <= set(called_operations()) | IMPLIED


def test_what_is_not_recorded_is_named_and_called_by_the_source() -> None:
    from tests.unit.helpers import called_operations

    aws_policy = generator()
    assert set(aws_policy.UNRECORDED) <= set(called_operations())
    assert not set(aws_policy.UNRECORDED) & aws_policy.read_recording()


def test_an_action_no_rule_places_is_an_error() -> None:
    with pytest.raises(SystemExit, match="no resource rule for sqs:SendMessage"):
        generator().render({"sqs:SendMessage"})


def test_resources_are_scoped_to_gcpfargate_names_where_aws_allows() -> None:
    import json

    policy = json.loads(generator().render({"secretsmanager:GetSecretValue", "iam:CreateRole"}))
    by_sid = {statement["Sid"]: statement for statement in policy["Statement"]}
    assert by_sid["SecretsOfGcpfargate"]["Resource"].endswith(":secret:gcpfargate/*")
    assert "arn:PARTITION:iam::ACCOUNT_ID:role/gcpfargate-*" in by_sid["ExecutionRoles"]["Resource"]
