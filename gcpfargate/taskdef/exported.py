"""Task definitions as users export them: `aws ecs describe-task-definition` output, console JSON.

What users already run arrives in the shape ECS answers, not the shape RegisterTaskDefinition takes.
aws-actions/amazon-ecs-deploy-task-definition accepts these and so does gcpfargate:

- `{"taskDefinition": {...}, "tags": [...]}` (describe-task-definition's whole answer) is unwrapped,
  the `tags` beside it becoming the task definition's tags.
- The fields only DescribeTaskDefinition answers (`taskDefinitionArn`, `revision`, `status`, ...)
  are dropped; the caller warns once, naming them.
- `null` means absent (old console exports write `"ulimits": null`), and so does `""` in a field
  whose values are an enumeration (`"pidMode": ""`): ECS would refuse both. An `environment` value
  `""` is kept: it is no enumeration, and a user may mean it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# Fields DescribeTaskDefinition returns that RegisterTaskDefinition does not take.
DESCRIBE_ONLY = (
    "taskDefinitionArn",
    "revision",
    "status",
    "requiresAttributes",
    "compatibilities",
    "registeredAt",
    "registeredBy",
    "deregisteredAt",
    "deleteRequestedAt",
)
_WRAPPER_KEYS = {"taskDefinition", "tags", "ResponseMetadata"}


@dataclass
class Accepted:
    definition: dict[str, Any]
    dropped: list[str] = field(default_factory=list)  # the Describe-only fields removed
    unwrapped: bool = False

    def warning(self) -> str:
        """One line naming what was dropped; "" when nothing was."""
        if not self.dropped:
            return ""
        return (
            f"dropped {', '.join(self.dropped)}: DescribeTaskDefinition answers "
            f"{'it' if len(self.dropped) == 1 else 'them'}, RegisterTaskDefinition does not take "
            f"{'it' if len(self.dropped) == 1 else 'them'} (an export?); remove "
            f"{'it' if len(self.dropped) == 1 else 'them'} from the template to silence this"
        )


def accept(data: dict[str, Any], shape: Any) -> Accepted:
    """The definition `data` stands for, as RegisterTaskDefinition takes it (`shape`: that
    operation's input shape from botocore's model, which says which fields are enumerations)."""
    definition, unwrapped = _unwrap(data)
    dropped = [name for name in DESCRIBE_ONLY if name in definition]
    definition = {k: v for k, v in definition.items() if k not in dropped}
    cleaned = _absent_removed(definition, shape)
    return Accepted(cleaned if isinstance(cleaned, dict) else definition, dropped, unwrapped)


def _unwrap(data: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    inner = data.get("taskDefinition")
    if not isinstance(inner, dict) or not set(data) <= _WRAPPER_KEYS:
        return data, False
    definition = dict(inner)
    tags = data.get("tags")
    if tags and not definition.get("tags"):
        definition["tags"] = tags
    return definition, True


def _absent_removed(value: Any, shape: Any) -> Any:
    """`value` without the object members that mean "absent": null anywhere, "" where `shape`
    says the member is an enumeration."""
    kind = getattr(shape, "type_name", None)
    if isinstance(value, dict):
        members = getattr(shape, "members", None) if kind == "structure" else None
        result: dict[str, Any] = {}
        for key, item in value.items():
            if item is None:
                continue
            if kind == "map":
                member = getattr(shape, "value", None)
            else:
                member = members.get(key) if members is not None else None
            if item == "" and member is not None and getattr(member, "enum", None):
                continue
            result[key] = _absent_removed(item, member)
        return result
    if isinstance(value, list):
        member = getattr(shape, "member", None) if kind == "list" else None
        return [_absent_removed(item, member) for item in value]
    return value
