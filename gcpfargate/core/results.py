"""What every command's result has in common: a JSON form (its fields) and an optional dry-run
plan."""

from __future__ import annotations

import copy
import dataclasses
from typing import Any

# Field metadata for a fact a result hands to the next step of `deploy` but does not show the user.
NOT_SHOWN = {"json": False}


class PlannedResult:
    """A dataclass result with a `plan` field: the JSON shows its fields (the plan only when there
    is one)."""

    plan: list[str]

    def to_json(self) -> dict[str, Any]:
        data = {
            each.name: copy.deepcopy(getattr(self, each.name))
            for each in dataclasses.fields(self)  # type: ignore[arg-type]  # subclasses are dataclasses
            if each.metadata.get("json", True)
        }
        if not self.plan:
            data.pop("plan")
        return data
