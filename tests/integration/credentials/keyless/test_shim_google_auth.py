"""Real google-auth, through Application Default Credentials, gets a task-role-signed subject token
from the credential shim.

The application's side of keyless mode, short of Google's STS: `GOOGLE_APPLICATION_CREDENTIALS`
names the `external_account` config that `keyless_config` builds; google-auth asks the shim (a real
subprocess) for the task role's credentials and signs AWS STS GetCallerIdentity with them. The
signature is recomputed with botocore's SigV4 signer, so the request Google's STS replays to AWS is
exactly one AWS would accept from these credentials. Needs no cloud stack, only loopback.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.integration.helpers import REGION, VERIFICATION_URL, subject_token_through_adc
from tests.stack.fake_ecs import CREDENTIALS_PATH, METADATA_PATH, FakeEcsEndpoint
from tests.stack.shim_process import running_shim

AUDIENCE = (
    "//iam.googleapis.com/projects/123456789/locations/global/workloadIdentityPools/gcpfargate/"
    "providers/aws-tasks"
)


@pytest.fixture
def ecs() -> Iterator[FakeEcsEndpoint]:
    with FakeEcsEndpoint(zone=f"{REGION}c") as endpoint:
        yield endpoint


@pytest.fixture
def application_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """An application container's environment: no AWS keys of anyone's, ADC pointing at the
    config."""
    for name in (
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_PROFILE",
        "AWS_REGION",
        "AWS_DEFAULT_REGION",
    ):
        monkeypatch.delenv(name, raising=False)
    config_path = tmp_path / "credentials.json"
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(config_path))
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", "demo-project")  # as the task definition sets it
    return config_path


def expected_signature(signed: dict, access_key_id: str, secret_access_key: str, token: str) -> str:
    """SigV4 over the same request, computed by botocore (the reference AWS signer)."""
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    # google-auth adds x-goog-cloud-target-resource after signing: it travels with the request
    # unsigned.
    unsigned = ("Authorization", "x-goog-cloud-target-resource")
    headers = {h["key"]: h["value"] for h in signed["headers"] if h["key"] not in unsigned}
    request = AWSRequest(method=signed["method"], url=signed["url"], headers=headers)
    request.context["timestamp"] = headers["x-amz-date"]
    signer = SigV4Auth(Credentials(access_key_id, secret_access_key, token), "sts", REGION)
    return signer.signature(
        signer.string_to_sign(request, signer.canonical_request(request)), request
    )


def test_google_auth_signs_get_caller_identity_with_the_task_role(
    ecs: FakeEcsEndpoint, application_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_REGION", REGION)  # Fargate sets it in every container
    creds = ecs.credentials
    with running_shim(
        {"AWS_CONTAINER_CREDENTIALS_RELATIVE_URI": CREDENTIALS_PATH}, "--ecs-endpoint", ecs.base_url
    ) as shim:
        signed = subject_token_through_adc(application_env, shim.port)
        log = shim.log_text()
    assert (signed["url"], signed["method"]) == (VERIFICATION_URL, "POST")
    headers = {h["key"]: h["value"] for h in signed["headers"]}
    assert sorted(headers) == [
        "Authorization",
        "host",
        "x-amz-date",
        "x-amz-security-token",
        "x-goog-cloud-target-resource",
    ]
    assert headers["host"] == f"sts.{REGION}.amazonaws.com"
    assert headers["x-amz-security-token"] == creds.token
    assert headers["x-goog-cloud-target-resource"] == AUDIENCE
    signed_at = datetime.strptime(headers["x-amz-date"], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    assert abs((datetime.now(UTC) - signed_at).total_seconds()) < 60
    signature = expected_signature(
        signed, creds.access_key_id, creds.secret_access_key, creds.token
    )
    assert headers["Authorization"] == (
        "AWS4-HMAC-SHA256 "
        f"Credential={creds.access_key_id}/{headers['x-amz-date'][:8]}/{REGION}/sts/aws4_request, "
        "SignedHeaders=host;x-amz-date;x-amz-security-token, "
        f"Signature={signature}"
    )
    assert creds.secret_access_key not in log and creds.token not in log
    # google-auth fetched through the shim once; the shim asked the ECS endpoint once.
    assert ecs.credential_requests == 1


def test_region_comes_from_the_shim_when_the_environment_has_none(
    ecs: FakeEcsEndpoint, application_env: Path
) -> None:
    env = {
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI": CREDENTIALS_PATH,
        "ECS_CONTAINER_METADATA_URI_V4": ecs.base_url + METADATA_PATH,
    }
    with running_shim(env, "--ecs-endpoint", ecs.base_url) as shim:
        signed = subject_token_through_adc(application_env, shim.port)
    assert signed["url"] == VERIFICATION_URL


def test_an_upstream_failure_reaches_the_application_as_one_clear_line(
    ecs: FakeEcsEndpoint, application_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from google.auth.exceptions import RefreshError

    monkeypatch.setenv("AWS_REGION", REGION)
    ecs.fail_with(500)
    with (
        running_shim(
            {"AWS_CONTAINER_CREDENTIALS_RELATIVE_URI": CREDENTIALS_PATH},
            "--ecs-endpoint",
            ecs.base_url,
        ) as shim,
        pytest.raises(RefreshError) as caught,
    ):
        subject_token_through_adc(application_env, shim.port)
    assert str(caught.value) == (
        f"Unable to retrieve AWS role name credential-shim: failed to fetch task-role "
        f"credentials from {ecs.base_url}: HTTP 500 Internal Server Error\n"
    )
