"""What the fault-injecting proxies share: a thread-safe list of rules and start/stop as a context."""

from __future__ import annotations

import threading
from typing import Generic, Self, TypeVar

R = TypeVar("R")


class RuleProxy(Generic[R]):
    def __init__(self) -> None:
        self.rules: list[R] = []
        self._lock = threading.Lock()

    def start(self) -> Self:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def add(self, rule: R) -> R:
        with self._lock:
            self.rules.append(rule)
        return rule

    def clear(self) -> None:
        with self._lock:
            self.rules.clear()
