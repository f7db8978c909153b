"""Plans as data: the changes a command makes, as typed records, and the one place that decides
whether they are made.

A command's core logic reads what exists, decides each change and hands it to `Plan.change` with
the write that makes it. It never asks whether this is a dry run: the executor is chosen once, at
the CLI's plan/apply boundary (`Plan(apply=not dry_run)`). Applying runs each write as its change
is recorded; previewing records the same changes and runs none. So a dry run lists exactly the
changes an apply makes, by construction, and the rendering (text and JSON alike) is the same
list.

A write's result that later steps need (a new key, the ARN of a new secret) is `None` in a preview:
it is known only after apply, as in Terraform's plans, and the code that needs it says what it
shows instead.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

T = TypeVar("T")

Action = Literal["create", "update", "delete"]


@dataclass(frozen=True)
class Change:
    """One change to one resource: what is done to it, and its state before and after (where they
    are worth showing; None when they are not, or not known before apply)."""

    action: Action
    resource: str  # the kind: "IAM role", "secret", "schedule", "ECR repository", ...
    name: str
    text: str  # the plan line a person reads
    before: Any = None
    after: Any = None

    def __str__(self) -> str:
        return self.text

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "action": self.action,
            "resource": self.resource,
            "name": self.name,
            "text": self.text,
        }
        if self.before is not None:
            data["before"] = self.before
        if self.after is not None:
            data["after"] = self.after
        return data


def create(resource: str, name: str, text: str = "", after: Any = None) -> Change:
    return Change("create", resource, name, text or f"create {resource} {name}", after=after)


def update(resource: str, name: str, text: str, before: Any = None, after: Any = None) -> Change:
    return Change("update", resource, name, text, before, after)


def delete(resource: str, name: str, text: str = "", before: Any = None) -> Change:
    return Change("delete", resource, name, text or f"delete {resource} {name}", before=before)


@dataclass
class Plan:
    """The changes of one command, in the order they are made (or would be)."""

    apply: bool = True
    changes: list[Change] = field(default_factory=list)

    def change(self, change: Change, write: Callable[[], T]) -> T | None:
        """Record `change`; when applying, make it with `write` and return what that returns (None
        in a preview: known only after apply)."""
        self.changes.append(change)
        return write() if self.apply else None

    def mark(self) -> int:
        """Where the changes of a step begin (see `since`)."""
        return len(self.changes)

    def since(self, mark: int) -> list[Change]:
        """The changes recorded since `mark`."""
        return self.changes[mark:]

    def shown(self, mark: int) -> list[Change]:
        """What a step's result lists: its changes in a preview; an apply's result lists none (it
        says what it did in its own fields)."""
        return [] if self.apply else self.since(mark)


def lines(changes: list[Change] | list[str]) -> list[str]:
    """The plan lines a person reads."""
    return [str(each) for each in changes]
