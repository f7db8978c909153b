"""Contract fixtures: DescribeTaskDefinition answers shaped as real ECS sends them.

Each file under tests/fixtures/ecs/ holds what was registered and what ECS describes back (defaults
filled in, empty environment values dropped). They are the reference for the product's
normalisation (a no-op redeploy must see `described` as equal to `registered`), so they must be
real: every key must exist in botocore's model at that place, every value must have the model's
type, and botocore's own JSON parser must read `described` as a DescribeTaskDefinition answer.
The strict layer must turn `registered` into the same filled-in definition.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

botocore_session = pytest.importorskip("botocore.session")
from botocore.model import Shape  # noqa: E402
from botocore.parsers import create_parser  # noqa: E402
from botocore.validate import ParamValidator  # noqa: E402

from tests.conftest import ROOT  # noqa: E402

FIXTURES = sorted((ROOT / "tests" / "fixtures" / "ecs").glob("*.json"))


def ecs_model() -> Any:
    return botocore_session.get_session().get_service_model("ecs")


def unknown_members(value: Any, shape: Shape, where: str = "") -> Iterator[str]:
    """Paths in `value` that the shape does not have (botocore's parser drops them silently)."""
    if shape.type_name == "structure":
        assert isinstance(value, dict), where
        for key, item in value.items():
            if key not in shape.members:
                yield f"{where}.{key}"
            else:
                yield from unknown_members(item, shape.members[key], f"{where}.{key}")
    elif shape.type_name == "list":
        for index, item in enumerate(value):
            yield from unknown_members(item, shape.member, f"{where}[{index}]")
    elif shape.type_name == "map":
        for key, item in value.items():
            yield from unknown_members(item, shape.value, f"{where}.{key}")


@pytest.fixture(params=FIXTURES, ids=[path.stem for path in FIXTURES])
def fixture(request: pytest.FixtureRequest) -> dict[str, Any]:
    return json.loads(request.param.read_text())


def test_there_are_fixtures() -> None:
    assert {path.stem for path in FIXTURES} >= {"health_check_and_empty_environment", "efs_volume"}


def test_registered_is_a_valid_register_task_definition_request(fixture: dict[str, Any]) -> None:
    shape = ecs_model().operation_model("RegisterTaskDefinition").input_shape
    report = ParamValidator().validate(fixture["registered"], shape)
    assert not report.has_errors(), report.generate_report()


def test_described_matches_botocores_describe_task_definition_output(
    fixture: dict[str, Any],
) -> None:
    shape = ecs_model().operation_model("DescribeTaskDefinition").output_shape
    assert list(unknown_members(fixture["described"], shape)) == []
    parsed = create_parser("json").parse(
        {"body": json.dumps(fixture["described"]).encode(), "headers": {}, "status_code": 200},
        shape,
    )
    parsed.pop("ResponseMetadata", None)
    # Types per the model (timestamps come back as datetimes, integers stay integers...).
    report = ParamValidator().validate(parsed, shape)
    assert not report.has_errors(), report.generate_report()
    assert parsed["taskDefinition"]["family"] == fixture["registered"]["family"]


def test_described_differs_from_registered_only_by_what_ecs_fills_in(
    fixture: dict[str, Any],
) -> None:
    """The fixture is a real round trip: everything sent comes back, unless ECS drops or fills
    it."""
    registered, described = fixture["registered"], fixture["described"]["taskDefinition"]
    for key, value in registered.items():
        if key not in ("containerDefinitions", "volumes"):
            assert described[key] == value, key
    for sent, got in zip(
        registered["containerDefinitions"], described["containerDefinitions"], strict=True
    ):
        for key, value in sent.items():
            if key == "environment":
                assert got[key] == [entry for entry in value if entry["value"] != ""]
            elif key in ("healthCheck", "portMappings", "logConfiguration"):
                assert _contains(got[key], value), key
            else:
                assert got[key] == value, key
    for sent, got in zip(registered.get("volumes", []), described["volumes"], strict=True):
        assert _contains(got, sent)


def _contains(whole: Any, part: Any) -> bool:
    if isinstance(part, dict):
        return isinstance(whole, dict) and all(
            k in whole and _contains(whole[k], v) for k, v in part.items()
        )
    if isinstance(part, list):
        return (
            isinstance(whole, list) and len(whole) == len(part) and all(map(_contains, whole, part))
        )
    return bool(whole == part)
