"""ARNs and hosts in every AWS partition come from botocore's partition data, not region-prefix
rules.

No network: the account id comes from a botocore Stubber answering GetCallerIdentity.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path

import pytest
from botocore.stub import Stubber

from gcpfargate.clients.aws import AwsClients
from gcpfargate.clients.registry import Registry
from gcpfargate.config import load_settings
from gcpfargate.errors import ConfigError

ACCOUNT = "123456789012"

# region -> (partition, DNS suffix), as AWS documents them (ARN formats and service endpoints
# pages).
PARTITIONS = {
    "us-east-1": ("aws", "amazonaws.com"),
    "ap-northeast-1": ("aws", "amazonaws.com"),
    "us-gov-west-1": ("aws-us-gov", "amazonaws.com"),
    "cn-north-1": ("aws-cn", "amazonaws.com.cn"),
    "cn-northwest-1": ("aws-cn", "amazonaws.com.cn"),
    "us-iso-east-1": ("aws-iso", "c2s.ic.gov"),
    "us-isob-east-1": ("aws-iso-b", "sc2s.sgov.gov"),
    "eusc-de-east-1": ("aws-eusc", "amazonaws.eu"),
}


@pytest.fixture(autouse=True)
def _no_endpoint_overrides(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    monkeypatch.chdir(tmp_path)  # no gcpfargate.toml around
    for name in (
        "AWS_ENDPOINT_URL",
        "AWS_ENDPOINT_URL_STS",
        "AWS_PROFILE",
        "GCPFARGATE_ECR_REGISTRY",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    yield


def _clients(region: str) -> tuple[AwsClients, Stubber]:
    aws = AwsClients(region=region)
    sts = Stubber(aws.client("sts"))
    sts.add_response(
        "get_caller_identity",
        {"Account": ACCOUNT, "Arn": f"arn:x:iam::{ACCOUNT}:user/u", "UserId": "AIDAEXAMPLE"},
        {},
    )
    return aws, sts


@pytest.mark.parametrize(("region", "expected"), sorted(PARTITIONS.items()))
def test_partition_and_dns_suffix(region: str, expected: tuple[str, str]) -> None:
    aws = AwsClients(region=region)
    assert (aws.partition(), aws.dns_suffix()) == expected


@pytest.mark.parametrize(("region", "expected"), sorted(PARTITIONS.items()))
def test_ecr_host_is_in_the_regions_partition(region: str, expected: tuple[str, str]) -> None:
    aws, sts = _clients(region)
    # ECR names its host in proxyEndpoint (tests/unit/stack/test_real_rules.py); an answer without
    # one falls back to the host built in the region's partition.
    ecr = Stubber(aws.client("ecr"))
    ecr.add_response(
        "get_authorization_token",
        {"authorizationData": [{"authorizationToken": base64.b64encode(b"AWS:token").decode()}]},
        {},
    )
    with sts, ecr:
        assert Registry(aws).host == f"{ACCOUNT}.dkr.ecr.{region}.{expected[1]}"


@pytest.mark.parametrize(("region", "expected"), sorted(PARTITIONS.items()))
def test_role_arn_is_in_the_regions_partition(region: str, expected: tuple[str, str]) -> None:
    from gcpfargate.core.context import Context
    from gcpfargate.iam import roles

    ctx = Context(settings=load_settings(None, environ={"GCPFARGATE_AWS_REGION": region}))
    aws, sts = _clients(region)
    ctx.aws = aws  # the cached property, set to the stubbed adapter
    with sts:
        assert (
            roles.role_arn(ctx, "gcpfargate-batch-execution")
            == f"arn:{expected[0]}:iam::{ACCOUNT}:role/gcpfargate-batch-execution"
        )


def test_a_region_newer_than_botocore_falls_in_the_partition_its_name_matches() -> None:
    assert AwsClients(region="cn-southwest-9").partition() == "aws-cn"
    assert AwsClients(region="us-isob-west-9").dns_suffix() == "sc2s.sgov.gov"


@pytest.mark.parametrize("region", sorted(PARTITIONS))
def test_every_partitions_region_is_a_valid_setting(region: str) -> None:
    load_settings(
        None, environ={"GCPFARGATE_AWS_REGION": region}
    )  # raises ConfigError when refused


def test_a_region_that_is_not_one_is_still_refused() -> None:
    with pytest.raises(ConfigError, match=r"aws\.region"):
        load_settings(None, environ={"GCPFARGATE_AWS_REGION": "eusc-east-1x"})
