"""A small HTTP proxy in front of moto that fails chosen AWS calls on the real HTTP path.

Point `AWS_ENDPOINT_URL` (or `AWS_ENDPOINT_URL_<SERVICE>`) at it. Rules match the operation
(the JSON protocol's `X-Amz-Target` such as `secretsmanager.PutSecretValue`, or the query
protocol's `Action=CreateRole`) and answer with an AWS-shaped error, a throttle, or a dropped
connection, for the next N matching calls (or from the Nth on). Everything else is forwarded.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from tests.stack.proxybase import Answer, Call, HttpProxy, aws_error


@dataclass
class Rule:
    operation: str  # "PutSecretValue", or "secretsmanager.PutSecretValue", or "*"
    kind: str = "error"  # "error", "throttle" or "reset"
    status: int = 500
    code: str = "InternalFailure"
    message: str = "injected fault"
    skip: int = 0  # let this many matching calls through first
    times: int = 1  # then fail this many (-1: forever)


class FaultProxy(HttpProxy[Rule]):
    def __init__(self, upstream: str) -> None:
        super().__init__(upstream)
        self.seen: Counter[str] = Counter()
        self.injected: Counter[str] = Counter()

    def handle(self, call: Call) -> Answer:
        rule = self._match(call.label)
        if rule is None:
            return self.forward(call)
        if rule.kind == "reset":
            return Answer(0, b"", reset=True)
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
