"""The fault proxy, and figures of the whole session for the reliability summary (tests/conftest.py
prints them)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.conftest import record_figure
from tests.stack.faultproxy import FaultProxy
from tests.stack.local import LocalStack


@pytest.fixture(scope="module")
def proxy(stack: LocalStack) -> Iterator[FaultProxy]:
    """AWS calls through a proxy that injects the faults a test asks for (one per module)."""
    with FaultProxy(stack.moto_url) as fault_proxy:
        yield fault_proxy


@pytest.fixture(scope="session", autouse=True)
def _session_figures(stack: LocalStack) -> Iterator[None]:
    yield
    stats = stack.emulator.stats()
    record_figure("stack", "keys minted by the emulator", int(stats["keys_minted"]))
    record_figure("stack", "IAM faults injected", int(stats["injected_faults"]))
    record_figure("stack", "token requests refused", int(stats["rejected_grants"]))
