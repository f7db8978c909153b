"""The keyless `external_account` credential configuration (pure: no cloud, no files)."""

from __future__ import annotations

import pytest

from gcpfargate.credentials.keyless.config import (
    GoogleEndpoints,
    credential_config,
    provider_audience,
)
from gcpfargate.errors import ConfigError

EMAIL = "runner@demo-project.iam.gserviceaccount.com"
AUDIENCE = (
    "//iam.googleapis.com/projects/123456789/locations/global/workloadIdentityPools/gcpfargate/"
    "providers/aws-tasks"
)


def config(**overrides: object) -> dict:
    arguments = {
        "project_number": "123456789",
        "pool_id": "gcpfargate",
        "provider_id": "aws-tasks",
        "service_account_email": EMAIL,
    }
    arguments.update(overrides)
    return credential_config(**arguments)  # type: ignore[arg-type]


def test_production_config_is_what_gcloud_writes_for_aws_with_the_shim_as_metadata_server() -> None:
    # The shape of `gcloud iam workload-identity-pools create-cred-config --aws --enable-imdsv2`,
    # with the metadata URLs on the shim's loopback port instead of 169.254.169.254.
    assert config() == {
        "type": "external_account",
        "audience": AUDIENCE,
        "subject_token_type": "urn:ietf:params:aws:token-type:aws4_request",
        "token_url": "https://sts.googleapis.com/v1/token",
        "service_account_impersonation_url": f"https://iamcredentials.googleapis.com/v1/projects/-/serviceAccounts/{EMAIL}:generateAccessToken",
        "credential_source": {
            "environment_id": "aws1",
            "region_url": "http://127.0.0.1:9254/latest/meta-data/placement/availability-zone",
            "url": "http://127.0.0.1:9254/latest/meta-data/iam/security-credentials",
            "regional_cred_verification_url": "https://sts.{region}.amazonaws.com?Action=GetCallerIdentity&Version=2011-06-15",
            "imdsv2_session_token_url": "http://127.0.0.1:9254/latest/api/token",
        },
    }


def test_shim_port_and_endpoint_overrides() -> None:
    endpoints = GoogleEndpoints.from_environ(
        {
            "GCPFARGATE_STS_ENDPOINT": "http://127.0.0.1:8181/",
            "GCPFARGATE_IAMCREDENTIALS_ENDPOINT": "https://private.example:8443",
        }
    )
    result = config(shim_port=18000, endpoints=endpoints)
    assert result["token_url"] == "http://127.0.0.1:8181/v1/token"
    assert result["service_account_impersonation_url"] == (
        f"https://private.example:8443/v1/projects/-/serviceAccounts/{EMAIL}:generateAccessToken"
    )
    assert result["audience"] == AUDIENCE, "the audience is a resource name, never redirected"
    assert (
        result["credential_source"]["url"]
        == "http://127.0.0.1:18000/latest/meta-data/iam/security-credentials"
    )
    assert result["credential_source"]["regional_cred_verification_url"].startswith(
        "https://sts.{region}."
    )


def test_empty_override_counts_as_unset() -> None:
    assert (
        GoogleEndpoints.from_environ({"GCPFARGATE_STS_ENDPOINT": "", "OTHER": "x"})
        == GoogleEndpoints()
    )


@pytest.mark.parametrize(
    "raw", ["127.0.0.1:8181", "ftp://host", "http://host/v1/token", "http://host?x=1", "http://"]
)
def test_override_must_be_a_base_url(raw: str) -> None:
    with pytest.raises(ConfigError) as caught:
        GoogleEndpoints.from_environ({"GCPFARGATE_STS_ENDPOINT": raw})
    assert caught.value.one_line() == (
        f"environment variable GCPFARGATE_STS_ENDPOINT must be a base URL such as "
        f"http://127.0.0.1:8080, not {raw!r}."
    )


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (
            {"project_number": "demo-project"},
            "the project number must be digits, not 'demo-project'",
        ),
        (
            {"pool_id": "GCP"},
            "workload identity pool id 'GCP' is invalid: use 4-32 lowercase letters, digits and "
            "hyphens",
        ),
        (
            {"provider_id": "aws"},
            "workload identity provider id 'aws' is invalid: use 4-32 lowercase letters, "
            "digits and hyphens",
        ),
        (
            {"provider_id": "a" * 33},
            f"workload identity provider id '{'a' * 33}' is invalid: use 4-32 lowercase "
            "letters, digits and hyphens",
        ),
        ({"service_account_email": "runner"}, "service account 'runner' is not an email address"),
        ({"shim_port": 0}, "the credential shim port must be 1-65535, not 0"),
    ],
)
def test_bad_inputs_are_one_line(arguments: dict, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        config(**arguments)
    assert caught.value.one_line() == message + "."


def test_audience() -> None:
    assert provider_audience("123456789", "gcpfargate", "aws-tasks") == AUDIENCE
