"""gcp.transport / GCPFARGATE_GCP_TRANSPORT (issue 12.13): the IAM client over HTTPS/JSON where gRPC
is blocked. The commands over REST are tested against the emulator in
tests/integration/clients/test_gcp_rest.py."""

from __future__ import annotations

import pytest

from gcpfargate.clients.google.gcp import IamAdmin
from gcpfargate.config import load_settings
from gcpfargate.errors import ConfigError


def test_default_is_grpc() -> None:
    assert load_settings(environ={}).gcp.transport == "grpc"


def test_env_selects_rest() -> None:
    assert load_settings(environ={"GCPFARGATE_GCP_TRANSPORT": "rest"}).gcp.transport == "rest"


def test_rest_builds_gcpfargates_rest_client(monkeypatch: pytest.MonkeyPatch) -> None:
    """google-cloud-iam has no REST transport for iam_admin_v1: gcpfargate's own REST client is
    used."""
    import google.auth
    from google.auth.credentials import AnonymousCredentials

    from gcpfargate.clients.google.iam_admin_rest import RestIam

    monkeypatch.setattr(google.auth, "default", lambda *a, **k: (AnonymousCredentials(), "p"))
    assert isinstance(IamAdmin(emulator_host="", transport="rest").client, RestIam)


def test_unknown_transport_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="grpc or rest"):
        load_settings(environ={"GCPFARGATE_GCP_TRANSPORT": "http3"})
