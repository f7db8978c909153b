"""What every command's result has in common: a JSON form (its fields) and an optional dry-run plan."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any


class PlannedResult:
    """A dataclass result with a `plan` field: the JSON shows the plan only when there is one."""

    plan: list[str]

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)  # type: ignore[call-overload]  # subclasses are dataclasses
        if not self.plan:
            data.pop("plan")
        return dict(data)
