"""Figures of the whole session for the reliability summary (tests/conftest.py prints them)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.conftest import record_figure
from tests.stack.local import LocalStack


@pytest.fixture(scope="session", autouse=True)
def _session_figures(stack: LocalStack) -> Iterator[None]:
    yield
    stats = stack.emulator.stats()
    record_figure("stack", "keys minted by the emulator", int(stats["keys_minted"]))
    record_figure("stack", "IAM faults injected", int(stats["injected_faults"]))
    record_figure("stack", "token requests refused", int(stats["rejected_grants"]))
