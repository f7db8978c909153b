"""Which Google universe the Google clients talk to, and the AWS partition's hosts keyless needs.

Google Cloud runs outside googleapis.com too (sovereign clouds, "universe domains"): every API is
then `https://<service>.<universe domain>`. The universe is `gcp.universe_domain`, else
`GOOGLE_CLOUD_UNIVERSE_DOMAIN` (the variable google-auth and the Cloud client libraries read),
else googleapis.com. Resource names (`//iam.googleapis.com/projects/…`, a workload identity
provider's audience) are names, not hosts, and stay as they are in every universe.
"""

from __future__ import annotations

import os

DEFAULT_UNIVERSE = "googleapis.com"
UNIVERSE_ENV = "GOOGLE_CLOUD_UNIVERSE_DOMAIN"


def universe_domain(configured: str = "") -> str:
    """The universe domain: `configured` (gcp.universe_domain), else the environment's, else
    googleapis.com."""
    return (configured or os.environ.get(UNIVERSE_ENV, "") or DEFAULT_UNIVERSE).strip().strip(".")


def google_api(service: str, universe: str = DEFAULT_UNIVERSE) -> str:
    """The base URL of Google's `service` API (iam, sts, iamcredentials…) in `universe`."""
    return f"https://{service}.{universe}"


def sts_verification_url(dns_suffix: str) -> str:
    """The AWS STS GetCallerIdentity URL a keyless task signs, with google-auth's `{region}`
    placeholder: STS is `sts.<region>.<partition's DNS suffix>` (amazonaws.com; amazonaws.com.cn in
    China; botocore's partitions.json `dnsSuffix`)."""
    return f"https://sts.{{region}}.{dns_suffix}?Action=GetCallerIdentity&Version=2011-06-15"
