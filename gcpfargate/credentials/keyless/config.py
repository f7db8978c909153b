"""The keyless credential configuration: an `external_account` file with no secret in it.

google-auth reads it through Application Default Credentials (`GOOGLE_APPLICATION_CREDENTIALS`),
signs an AWS STS GetCallerIdentity request with the task role's credentials, which it gets from the
credential shim on loopback (`gcpfargate.shim`), exchanges it at Google's STS for a federated token
and impersonates the service account. Field meanings: google-auth `aws.py` and Google's "Configure
Workload Identity Federation with AWS" (the file `gcloud iam workload-identity-pools
create-cred-config --aws` writes).

`GCPFARGATE_STS_ENDPOINT` and `GCPFARGATE_IAMCREDENTIALS_ENDPOINT` (base URLs serving the real API
paths, like `IAM_EMULATOR_HOST` for the IAM API) point the two Google endpoints at an emulator or a
private endpoint; an empty variable counts as unset. The audience stays a resource name either way.
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from gcpfargate.clients.google.universe import DEFAULT_UNIVERSE, google_api, sts_verification_url
from gcpfargate.errors import ConfigError
from gcpfargate.shim import CREDENTIALS_PATH, DEFAULT_PORT, TOKEN_PATH, ZONE_PATH

AWS_SUBJECT_TOKEN_TYPE = "urn:ietf:params:aws:token-type:aws4_request"
STS_ENDPOINT_ENV = "GCPFARGATE_STS_ENDPOINT"
IAMCREDENTIALS_ENDPOINT_ENV = "GCPFARGATE_IAMCREDENTIALS_ENDPOINT"
# google-auth signs for the host's first label ("sts") and refuses anything but https here, so this
# URL is never redirected: Google's STS (or the emulator) is the party that replays the request.
# The commercial partition's; credential_config builds it with the region's DNS suffix.
REGIONAL_CRED_VERIFICATION_URL = sts_verification_url("amazonaws.com")

# Workload identity pool and provider ids: 4-32 lowercase letters, digits and hyphens (IAM REST
# reference).
_POOL_OR_PROVIDER_ID = re.compile(r"[a-z0-9-]{4,32}")


@dataclass(frozen=True)
class GoogleEndpoints:
    sts: str = "https://sts.googleapis.com"
    iamcredentials: str = "https://iamcredentials.googleapis.com"

    @classmethod
    def for_universe(cls, universe: str) -> GoogleEndpoints:
        """Google's STS and IAM Credentials in `universe` (clients/universe.py)."""
        return cls(
            sts=google_api("sts", universe), iamcredentials=google_api("iamcredentials", universe)
        )

    @classmethod
    def from_environ(
        cls, environ: Mapping[str, str], universe: str = DEFAULT_UNIVERSE
    ) -> GoogleEndpoints:
        defaults = cls.for_universe(universe)
        return cls(
            sts=_base_url(environ, STS_ENDPOINT_ENV) or defaults.sts,
            iamcredentials=_base_url(environ, IAMCREDENTIALS_ENDPOINT_ENV)
            or defaults.iamcredentials,
        )


def _base_url(environ: Mapping[str, str], name: str) -> str | None:
    raw = environ.get(name, "")
    if not raw:
        return None
    parts = urllib.parse.urlsplit(raw)
    if (
        parts.scheme not in ("http", "https")
        or not parts.netloc
        or parts.path.strip("/")
        or parts.query
    ):
        raise ConfigError(
            f"environment variable {name} must be a base URL such as http://127.0.0.1:8080, "
            f"not {raw!r}"
        )
    return f"{parts.scheme}://{parts.netloc}"


def provider_audience(project_number: str, pool_id: str, provider_id: str) -> str:
    """The provider's full resource name, which Google's STS compares with the signed request's
    `x-goog-cloud-target-resource` header."""
    if not project_number.isdigit():
        raise ConfigError(f"the project number must be digits, not {project_number!r}")
    for what, value in (
        ("workload identity pool", pool_id),
        ("workload identity provider", provider_id),
    ):
        if not _POOL_OR_PROVIDER_ID.fullmatch(value):
            raise ConfigError(
                f"{what} id {value!r} is invalid: use 4-32 lowercase letters, digits and hyphens"
            )
    return (
        f"//iam.googleapis.com/projects/{project_number}/locations/global/"
        f"workloadIdentityPools/{pool_id}/providers/{provider_id}"
    )


def credential_config(
    *,
    project_number: str,
    pool_id: str,
    provider_id: str,
    service_account_email: str,
    shim_port: int = DEFAULT_PORT,
    endpoints: GoogleEndpoints | None = None,
    aws_dns_suffix: str = "amazonaws.com",
    universe: str = DEFAULT_UNIVERSE,
) -> dict[str, Any]:
    """The `external_account` credential configuration for a task whose credential shim listens on
    127.0.0.1:`shim_port`; `aws_dns_suffix`: the task's AWS partition's (amazonaws.com.cn in
    China), `universe`: Google's universe domain, which google-auth reads from the file."""
    endpoints = endpoints or GoogleEndpoints()
    if "@" not in service_account_email:
        raise ConfigError(f"service account {service_account_email!r} is not an email address")
    if not 0 < shim_port < 65536:
        raise ConfigError(f"the credential shim port must be 1-65535, not {shim_port}")
    shim = f"http://127.0.0.1:{shim_port}"
    # google-auth checks the credentials' universe against the client's: named only outside the
    # default, so the default's file stays the one gcloud writes.
    named = {"universe_domain": universe} if universe != DEFAULT_UNIVERSE else {}
    return {
        **named,
        "type": "external_account",
        "audience": provider_audience(project_number, pool_id, provider_id),
        "subject_token_type": AWS_SUBJECT_TOKEN_TYPE,
        "token_url": f"{endpoints.sts}/v1/token",
        "service_account_impersonation_url": (
            f"{endpoints.iamcredentials}/v1/projects/-/serviceAccounts/"
            f"{service_account_email}:generateAccessToken"
        ),
        "credential_source": {
            "environment_id": "aws1",
            # Only read when the application's environment has neither AWS_REGION nor
            # AWS_DEFAULT_REGION (Fargate sets both); the shim answers from the task metadata.
            "region_url": shim + ZONE_PATH,
            "url": shim + CREDENTIALS_PATH,
            "regional_cred_verification_url": sts_verification_url(aws_dns_suffix),
            "imdsv2_session_token_url": shim + TOKEN_PATH,
        },
    }
