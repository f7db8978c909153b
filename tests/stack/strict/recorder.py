"""Which AWS operations gcpfargate itself makes: the input of the generated least-privilege policy.

The strict layer sees every AWS request of the suite; the product's own requests carry
`gcpfargate` in their User-Agent (`AwsClients.client` sets `user_agent_extra`), the tests' own
boto3 clients (fixtures, world views) do not, so only the product's operations are kept. Each
is named by its IAM action, `<signing name>:<OperationName>`: the prefix IAM uses for every
service gcpfargate calls is the service's SigV4 signing name.

With `GCPF_STACK_RECORD=<file>` the layer appends each new action to that file, one a line (the
suite's xdist workers share the file); `scripts/aws_policy.py` turns the file into
`docs/aws-policy.json`.
"""

from __future__ import annotations

import functools
import os
import re
import threading

from tests.stack.proxybase import Call

RECORD_ENV = "GCPF_STACK_RECORD"
PRODUCT_AGENT = "gcpfargate"


@functools.cache
def _rest_routes(signing_name: str) -> tuple[tuple[str, re.Pattern[str], str, int], ...]:
    """(method, path pattern, operation, literal length) of each operation of a REST service."""
    import botocore.exceptions
    import botocore.session

    session = botocore.session.get_session()
    # The service named as it signs (true of every REST service gcpfargate calls): loading every
    # model to search takes seconds, long enough for the product's read to time out.
    try:
        model = session.get_service_model(signing_name)
    except botocore.exceptions.UnknownServiceError:
        return ()
    if model.signing_name == signing_name and model.protocol in ("rest-json", "rest-xml"):
        routes = []
        for name in model.operation_names:
            http = model.operation_model(name).http
            uri = http["requestUri"].split("?")[0]
            pattern = re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(uri))
            literal = len(re.sub(r"\{[^}]+\}", "", uri))
            routes.append((http["method"], re.compile(f"^{pattern}/?$"), name, literal))
        # The most literal route first: `/schedule-groups/{Name}` before `/{Name}`-like ones.
        return tuple(sorted(routes, key=lambda route: -route[3]))
    return ()


def iam_action(call: Call) -> str:
    """`ecs:RegisterTaskDefinition`; REST operations are found by method and path in botocore's
    model (the layer's own `rest_operation` names only the few its rules look at)."""
    service = call.service
    if call.header("X-Amz-Target") or (
        call.body and "x-www-form-urlencoded" in call.header("Content-Type")
    ):
        return f"{service}:{call.operation}"
    path = call.path.split("?")[0]
    for method, pattern, name, _ in _rest_routes(service):
        if method == call.method and pattern.match(path):
            return f"{service}:{name}"
    return f"{service}:{call.method} {path}"


class Recorder:
    def __init__(self, path: str | None = None) -> None:
        self.path = path if path is not None else os.environ.get(RECORD_ENV, "")
        self.actions: set[str] = set()
        self._lock = threading.Lock()

    def see(self, call: Call) -> None:
        if PRODUCT_AGENT not in call.header("User-Agent") or not call.header("Authorization"):
            return
        action = iam_action(call)
        with self._lock:
            if action in self.actions:
                return
            self.actions.add(action)
            if self.path:
                # One short line per write, O_APPEND: workers appending at once never interleave.
                with open(self.path, "a", encoding="utf-8") as out:
                    out.write(action + "\n")
