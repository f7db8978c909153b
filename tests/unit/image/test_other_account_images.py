"""Which image names are another account's ECR, and where GCPFARGATE_ECR_ENDPOINTS sends them."""

from __future__ import annotations

import pytest

from gcpfargate.image import images


@pytest.mark.parametrize(
    ("host", "found"),
    [
        ("111122223333.dkr.ecr.us-east-1.amazonaws.com", ("111122223333", "us-east-1")),
        ("111122223333.dkr.ecr.cn-north-1.amazonaws.com.cn", ("111122223333", "cn-north-1")),
        (
            "111122223333.dkr.ecr-fips.us-gov-west-1.amazonaws.com",
            ("111122223333", "us-gov-west-1"),
        ),
        ("public.ecr.aws", None),
        ("1111.dkr.ecr.us-east-1.amazonaws.com", None),
        ("registry.example.com", None),
    ],
)
def test_ecr_hosts_in_every_partition(host: str, found: tuple[str, str] | None) -> None:
    match = images._ECR_HOST.fullmatch(host)
    assert (match.group(1, 2) if match else None) == found


def test_endpoints_map_accounts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "GCPFARGATE_ECR_ENDPOINTS", " 111122223333=127.0.0.1:5000 , bad, 444455556666= "
    )
    assert images._ecr_endpoints() == {"111122223333": "127.0.0.1:5000"}
