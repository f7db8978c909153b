"""A small HTTP proxy in front of moto that fails chosen AWS calls on the real HTTP path.

Point `AWS_ENDPOINT_URL` (or `AWS_ENDPOINT_URL_<SERVICE>`) at it. Rules match the operation
(the JSON protocol's `X-Amz-Target` such as `secretsmanager.PutSecretValue`, or the query
protocol's `Action=CreateRole`) and answer with an AWS-shaped error, a throttle, or a dropped
connection, for the next N matching calls (or from the Nth on). Everything else is forwarded.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import dataclass

from tests.stack.proxybase import Answer, Call, HttpProxy, aws_error


@dataclass
class Rule:
    operation: str  # "PutSecretValue", or "secretsmanager.PutSecretValue", or "*"
    kind: str = "error"  # "error", "throttle", "reset", or "hold" (forward, then hold the answer)
    status: int = 500
    code: str = "InternalFailure"
    message: str = "injected fault"
    skip: int = 0  # let this many matching calls through first
    times: int = 1  # then fail this many (-1: forever)
    hold_s: float = (
        0.0  # kind "hold": the call reaches moto at once, its answer this many seconds later
    )


class FaultProxy(HttpProxy[Rule]):
    def __init__(self, upstream: str) -> None:
        super().__init__(upstream)
        self.seen: Counter[str] = Counter()
        self.injected: Counter[str] = Counter()
        self.held = threading.Event()  # set once a "hold" rule has forwarded its call

    def handle(self, call: Call) -> Answer:
        rule = self._match(call.label)
        if rule is None:
            return self.forward(call)
        if rule.kind == "reset":
            return Answer(0, b"", reset=True)
        if rule.kind == "hold":
            # The write has landed; the caller waits for its answer (to interrupt it meanwhile).
            answer = self.forward(call)
            self.held.set()
            time.sleep(rule.hold_s)
            return answer
        if rule.kind == "throttle":
            return aws_error(call, 400, "ThrottlingException", "Rate exceeded")
        return aws_error(call, rule.status, rule.code, rule.message)

    def _match(self, operation: str) -> Rule | None:
        with self._lock:
            self.seen[operation] += 1
            for rule in self.rules:
                short = operation.rsplit(".", 1)[-1]
                if rule.operation not in ("*", operation, short) or rule.times == 0:
                    continue
                if rule.skip > 0:
                    rule.skip -= 1
                    continue
                if rule.times > 0:
                    rule.times -= 1
                self.injected[operation] += 1
                return rule
        return None
