"""What every doctor check module shares: the verdicts, the report, the facts earlier checks found.

`doctor/run.py` runs the checks; each credential mode brings its own (`credentials/key/doctor.py`,
`credentials/keyless/doctor.py`). They all import from here, so the imports run one way.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING, Any

from gcpfargate.clients.google.gcp import ServiceAccount

if TYPE_CHECKING:
    from gcpfargate.core.context import Context


class Status(str, Enum):
    OK = "OK"
    WARN = "WARN"
    FAIL = "FAIL"
    SKIP = "SKIP"


@dataclass(frozen=True)
class Check:
    id: str  # stable, for scripts: `secret.readable`, `role.reads_secret`, …
    name: str
    group: str
    status: Status
    detail: str
    hint: str = ""  # what to do, shown under a FAIL

    def to_json(self) -> dict[str, str | None]:
        return {
            "id": self.id,
            "name": self.name,
            "status": self.status.value,
            "detail": self.detail,
            "hint": self.hint or None,
        }


@dataclass
class DoctorReport:
    checks: list[Check]

    @property
    def failed(self) -> bool:
        return any(check.status is Status.FAIL for check in self.checks)

    @property
    def status(self) -> str:
        """The worst of the checks: FAIL, WARN, else OK (skipped checks do not count)."""
        found = {check.status for check in self.checks}
        return next(
            (each.value for each in (Status.FAIL, Status.WARN) if each in found), Status.OK.value
        )

    def to_json(self) -> dict[str, Any]:
        return {"status": self.status, "checks": [check.to_json() for check in self.checks]}


@dataclass
class Facts:
    """What earlier checks found, for later ones."""

    account: ServiceAccount | None = None
    revision: dict[str, Any] | None = None
    role_arn: str = ""
    kms_arn: str = ""
    extra: dict[str, Any] = field(default_factory=dict)  # a mode's own facts (key mode: its secret)


class Skip(Exception):
    pass


def verdict(found: tuple[str, str]) -> tuple[Status, str]:
    """A (status name, detail) pair as a verdict; "SKIP" becomes a Skip."""
    if found[0] == "SKIP":
        raise Skip(found[1])
    return Status(found[0]), found[1]


# One doctor check as a credential mode contributes it: (id, name, section, the check).
DoctorEntry = tuple[str, str, str, Callable[["Context", Facts], tuple[Status, str]]]
