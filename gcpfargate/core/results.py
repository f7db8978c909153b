"""What every command's result has in common: a JSON form (its fields) and an optional dry-run
plan."""

from __future__ import annotations

import copy
import dataclasses
from typing import Any

from gcpfargate.core.plan import Change

# Field metadata for a fact a result hands to the next step of `deploy` but does not show the user.
NOT_SHOWN = {"json": False}


class PlannedResult:
    """A dataclass result with a `plan` field: the JSON shows its fields (the plan only when there
    is one)."""

    plan: list[Change]

    def to_json(self) -> dict[str, Any]:
        data = {
            each.name: copy.deepcopy(getattr(self, each.name))
            for each in dataclasses.fields(self)  # type: ignore[arg-type]  # subclasses are dataclasses
            if each.metadata.get("json", True) and each.name != "plan"
        }
        if self.plan:
            data["plan"] = plan_json(self.plan)
        return data


def plan_json(changes: list[Change]) -> list[dict[str, Any]]:
    """A plan as JSON: one object per change (action, resource, name, text, before, after)."""
    return [each.to_json() for each in changes]
