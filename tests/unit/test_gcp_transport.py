"""GCPFARGATE_GCP_TRANSPORT=rest (issue 12.13): the IAM client over HTTPS/JSON where gRPC is blocked."""

from __future__ import annotations

import pytest

from gcpfargate.clients.gcp import IamAdmin, transport_choice
from gcpfargate.errors import ConfigError


def test_default_is_grpc(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GCPFARGATE_GCP_TRANSPORT", raising=False)
    assert transport_choice() == "grpc"


def test_rest_builds_the_rest_transport(monkeypatch: pytest.MonkeyPatch) -> None:
    import google.auth
    from google.auth.credentials import AnonymousCredentials

    monkeypatch.setenv("GCPFARGATE_GCP_TRANSPORT", "REST")
    monkeypatch.setattr(google.auth, "default", lambda *a, **k: (AnonymousCredentials(), "p"))
    client = IamAdmin(emulator_host="").client
    assert type(client.transport).__name__ == "IAMRestTransport"


def test_unknown_transport_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GCPFARGATE_GCP_TRANSPORT", "http3")
    with pytest.raises(ConfigError, match="grpc or rest"):
        transport_choice()
