"""IAM reads that bootstrap makes whatever it finds, made by a forked child (core/forked.py) while
this process imports the other SDKs and asks AWS: the service account, and the key its secret held
when this machine last looked.

The Google client library is the largest import of a deploy (gRPC, protobuf, api_core: about a
third of a second); a deploy that changes nothing in GCP needs nothing from it but these two reads.
The child imports it at once, on the other core, and makes the reads only once the parent says go
(its local checks passed): a deploy stopped by them asks Google nothing.

The child runs the adapter's own calls (`IamAdmin`: the same requests, retries, call log line and
error wording) and answers with each call's outcome: the response's fields, or the error as the
adapter words it. Only non-secret fields cross the pipe (no key material is ever read here: a key's
public data is not asked for). The parent's adapter takes an answer for exactly the request it is
about to send, once, and only while it has written nothing to IAM; otherwise it asks itself.
"""

from __future__ import annotations

from datetime import datetime
from types import SimpleNamespace
from typing import Any

from gcpfargate.core.forked import Forked
from gcpfargate.errors import GcpConfigError, GcpError, KeyLimitError

# The fields the adapter reads of each answer, and so the only ones the child sends.
FIELDS = {
    "GetServiceAccount": ("email", "unique_id", "project_id", "disabled"),
    "GetServiceAccountKey": ("name", "valid_after_time", "valid_before_time", "disabled"),
}
_TIMES = ("valid_after_time", "valid_before_time")
_ERRORS: dict[str, type[GcpError]] = {
    kind.__name__: kind for kind in (GcpError, GcpConfigError, KeyLimitError)
}


class IamAhead:
    """The reads running in a child; `take` hands each answer over once."""

    def __init__(self, child: Forked) -> None:
        self._child = child
        self._answers: dict[tuple[str, str], Any] | None = None

    @classmethod
    def start(
        cls,
        transport: str,
        universe: str,
        project: str,
        account: str,
        key: dict[str, str] | None,
        after: Forked | None = None,
    ) -> IamAhead | None:
        """`key` ({"email", "key_id"}): the key to read when the account is that email (the one
        its secret held last time); None reads the account only. `after`: a child to let finish
        first (core/forked.py)."""
        child = Forked.start(
            _read, transport, universe, project, account, key, gated=True, after=after
        )
        return cls(child) if child is not None else None

    def go(self) -> None:
        """The local checks passed: the child may ask Google."""
        self._child.go()

    def take(self, method: str, name: str) -> SimpleNamespace | GcpError | None:
        """The child's outcome of `method` on resource `name` (a response with the adapter's
        fields, or the error it met), or None: ask Google here."""
        if self._answers is None:
            self._answers = {}
            for each in self._child.answer() or []:
                if isinstance(each, list) and len(each) == 3 and each[0] in FIELDS:
                    self._answers[(str(each[0]), str(each[1]))] = each[2]
        outcome = self._answers.pop((method, name), None)
        return _decode(method, outcome) if outcome is not None else None

    def close(self) -> None:
        self._child.close()


def _read(
    go: Any,
    transport: str,
    universe: str,
    project: str,
    account: str,
    key: dict[str, str] | None,
) -> list[list[Any]]:
    """The child: import, wait for go, read through the adapter, answer its outcomes."""
    from gcpfargate.clients.google.gcp import IamAdmin, import_client

    outcomes: list[list[Any]] = []
    iam = IamAdmin(transport=transport, universe=universe)
    iam.recorder = lambda method, name, outcome: outcomes.append(
        [method, name, _encode(method, outcome)]
    )
    import_client(transport)  # the slow part, before the parent's checks end
    if not go():
        return []
    try:
        found = iam.get_service_account(project, account)
        if found is not None and not found.disabled and key and key.get("email") == found.email:
            iam.get_key(found.email, str(key.get("key_id", "")))
    except GcpError:
        pass  # recorded: the parent raises it where it asks
    return outcomes


def _encode(method: str, outcome: Any) -> dict[str, Any]:
    if isinstance(outcome, GcpError):
        return {
            "error": type(outcome).__name__,
            "message": outcome.message,
            "hint": outcome.hint,
            "code": outcome.code,
        }
    fields: dict[str, Any] = {}
    for name in FIELDS[method]:
        value = getattr(outcome, name)
        if name in _TIMES:
            from gcpfargate.clients.google.gcp import timestamp

            moment = timestamp(value)
            value = moment.isoformat() if moment is not None else None
        fields[name] = value if isinstance(value, (str, bool, type(None))) else str(value)
    return {"response": fields}


def _decode(method: str, outcome: Any) -> SimpleNamespace | GcpError | None:
    if not isinstance(outcome, dict):
        return None
    if "error" in outcome:
        kind = _ERRORS.get(str(outcome["error"]))
        if kind is None:
            return None
        return kind(str(outcome["message"]), str(outcome["hint"])).with_code(str(outcome["code"]))
    fields = outcome.get("response")
    if not isinstance(fields, dict) or set(fields) != set(FIELDS[method]):
        return None
    try:
        for name in _TIMES:
            if fields.get(name) is not None:
                fields[name] = datetime.fromisoformat(str(fields[name]))
    except ValueError:
        return None
    return SimpleNamespace(**fields)
