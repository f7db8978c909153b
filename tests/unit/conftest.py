"""Unit tests keep the cache's signing secret (gcpfargate/cache.py) out of the real home."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.stack.local import moto_server


@pytest.fixture(autouse=True)
def _private_state_home(
    monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory
) -> None:
    state = tmp_path_factory.mktemp("state")
    state.chmod(0o700)
    monkeypatch.setenv("XDG_STATE_HOME", str(state))


@pytest.fixture(scope="module")
def moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with moto_server(tmp_path_factory.mktemp("moto") / "moto.log") as url:
        yield url
