"""Another account's registry (image.registry_id), a registry host of one's own network
(image.registry_host), the AWS partition's hosts in keyless mode, Google universe domains, the
partition-aware policy file, and deploy's warning about an older image.

No network: ECR and STS answer through botocore's Stubber.
"""

from __future__ import annotations

import ast
import base64
import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from botocore.stub import Stubber

from gcpfargate.clients.aws import AwsClients
from gcpfargate.clients.google.gcp_rest import ServiceUsage, WorkloadIdentityPools
from gcpfargate.clients.google.universe import google_api, universe_domain
from gcpfargate.clients.registry import Registry
from gcpfargate.config import load_settings
from gcpfargate.core.context import Context
from gcpfargate.core.report import NullReporter
from gcpfargate.credentials.keyless.bootstrap import attribute_condition, role_session_prefix
from gcpfargate.credentials.keyless.config import GoogleEndpoints, credential_config
from gcpfargate.deploy.older_image import warn_if_older
from gcpfargate.errors import ConfigError

ACCOUNT = "123456789012"
CENTRAL = "999999999999"
TOKEN = base64.b64encode(b"AWS:token").decode()
from tests.conftest import ROOT  # noqa: E402


@pytest.fixture(autouse=True)
def _no_overrides(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    monkeypatch.chdir(tmp_path)
    for name in (
        "AWS_ENDPOINT_URL",
        "AWS_ENDPOINT_URL_STS",
        "AWS_ENDPOINT_URL_ECR",
        "AWS_PROFILE",
        "GCPFARGATE_ECR_REGISTRY",
        "GOOGLE_CLOUD_UNIVERSE_DOMAIN",
        "GCPFARGATE_IAM_REST_ENDPOINT",
        "GCPFARGATE_SERVICEUSAGE_ENDPOINT",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    yield


# -- image.registry_id and image.registry_host
# ------------------------------------------------------
@pytest.mark.parametrize(
    ("region", "suffix"),
    [
        ("us-east-1", "amazonaws.com"),
        ("cn-north-1", "amazonaws.com.cn"),
        ("us-gov-west-1", "amazonaws.com"),
    ],
)
def test_another_accounts_registry_is_named_in_the_token_request(region: str, suffix: str) -> None:
    aws = AwsClients(region=region)
    ecr = Stubber(aws.client("ecr"))
    # No proxyEndpoint in the answer: the host is built for the named registry in the partition.
    ecr.add_response(
        "get_authorization_token",
        {"authorizationData": [{"authorizationToken": TOKEN}]},
        {"registryIds": [CENTRAL]},
    )
    with ecr:
        registry = Registry(aws, registry_id=CENTRAL)
        assert registry.host == f"{CENTRAL}.dkr.ecr.{region}.{suffix}"
        assert registry.endpoint == registry.host
    ecr.assert_no_pending_responses()


def test_the_token_answers_proxy_endpoint_names_the_host() -> None:
    aws = AwsClients(region="cn-northwest-1")
    ecr = Stubber(aws.client("ecr"))
    host = f"{CENTRAL}.dkr.ecr.cn-northwest-1.amazonaws.com.cn"
    ecr.add_response(
        "get_authorization_token",
        {"authorizationData": [{"authorizationToken": TOKEN, "proxyEndpoint": f"https://{host}"}]},
        {"registryIds": [CENTRAL]},
    )
    with ecr:
        assert Registry(aws, registry_id=CENTRAL).host == host


def test_a_registry_host_moves_requests_not_names() -> None:
    aws = AwsClients(region="eu-west-1")
    ecr = Stubber(aws.client("ecr"))
    host = f"{ACCOUNT}.dkr.ecr.eu-west-1.amazonaws.com"
    ecr.add_response(
        "get_authorization_token",
        {"authorizationData": [{"authorizationToken": TOKEN, "proxyEndpoint": f"https://{host}"}]},
        {},
    )
    vpce = "vpce-0a1b2c3d4e5f-abcdefgh.dkr.ecr.eu-west-1.vpce.amazonaws.com"
    with ecr:
        registry = Registry(aws, endpoint=vpce)
        assert registry.image_name("app") == f"{host}/app"  # what task definitions name
        assert registry.endpoint == vpce and registry.scheme == "https"
        assert registry.token_params == {} and registry.ecr_params == {}


def test_registry_params_name_the_registry_only_when_it_is_another_accounts() -> None:
    registry = Registry(AwsClients(region="us-east-1"), registry_id=CENTRAL)
    assert registry.token_params == {"registryIds": [CENTRAL]}
    assert registry.ecr_params == {"registryId": CENTRAL}


@pytest.mark.parametrize(
    ("key", "value", "valid"),
    [
        ("image.registry_id", CENTRAL, True),
        ("image.registry_id", "99999", False),
        ("image.registry_id", "arn:aws:iam::999999999999:root", False),
        ("image.registry_host", "vpce-0a1b-x.dkr.ecr.us-east-1.vpce.amazonaws.com", True),
        ("image.registry_host", "registry.corp.example:5443", True),
        ("image.registry_host", "https://registry.corp.example", False),
        ("image.registry_host", "registry.corp.example/path", False),
        ("gcp.universe_domain", "s3nsapis.fr", True),
        ("gcp.universe_domain", "https://googleapis.com", False),
    ],
)
def test_the_new_settings_are_validated(key: str, value: str, valid: bool) -> None:
    env = {f"GCPFARGATE_{key.replace('.', '_').upper()}": value}
    if valid:
        settings = load_settings(None, environ=env)
        section, name = key.split(".")
        assert getattr(getattr(settings, section), name) == value
    else:
        with pytest.raises(ConfigError, match=re.escape(key)):
            load_settings(None, environ=env)


# -- the AWS partition in keyless mode ----------------------------------------------------------
def _keyless_config(**extra: Any) -> dict[str, Any]:
    return credential_config(
        project_number="123456789",
        pool_id="gcpfargate",
        provider_id=f"aws-{ACCOUNT}",
        service_account_email="runner@proj-x.iam.gserviceaccount.com",
        **extra,
    )


@pytest.mark.parametrize(
    ("region", "url"),
    [
        (
            "us-east-1",
            "https://sts.{region}.amazonaws.com?Action=GetCallerIdentity&Version=2011-06-15",
        ),
        (
            "cn-north-1",
            "https://sts.{region}.amazonaws.com.cn?Action=GetCallerIdentity&Version=2011-06-15",
        ),
        (
            "us-gov-west-1",
            "https://sts.{region}.amazonaws.com?Action=GetCallerIdentity&Version=2011-06-15",
        ),
    ],
)
def test_the_sts_verification_url_is_in_the_regions_partition(region: str, url: str) -> None:
    suffix = AwsClients(region=region).dns_suffix()
    config = _keyless_config(aws_dns_suffix=suffix)
    assert config["credential_source"]["regional_cred_verification_url"] == url
    # google-auth fills in the region: the host it signs for is then STS's in that partition.
    assert url.format(region=region).startswith(f"https://sts.{region}.{suffix}?")


@pytest.mark.parametrize("partition", ["aws", "aws-cn", "aws-us-gov"])
def test_keyless_arns_carry_the_partition(partition: str) -> None:
    assert role_session_prefix(partition, ACCOUNT, "r") == (
        f"arn:{partition}:sts::{ACCOUNT}:assumed-role/r"
    )
    assert f"'arn:{partition}:sts::{ACCOUNT}:assumed-role/gcpfargate-'" in attribute_condition(
        partition, ACCOUNT
    )


# The commercial partition's DNS suffix as a default, where callers name the region's.
ALLOWED = {("credentials/keyless/config.py", "amazonaws.com")}


def _strings(tree: ast.AST) -> Iterator[ast.Constant]:
    """The string constants of a module, f-string parts included, docstrings left out."""
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and id(node) not in docstrings
        ):
            yield node


def test_no_arn_or_aws_host_of_one_partition_is_hard_coded() -> None:
    """ARNs are built with the region's partition and hosts with its DNS suffix; what may spell
    the commercial partition: placeholders never sent, texts shown to people, and the service
    principals, which are <service>.amazonaws.com in every partition (IAM user guide, "AWS
    service principals"; ecs-tasks, scheduler and events here)."""
    offenders = []
    for path in sorted((ROOT / "gcpfargate").rglob("*.py")):
        for node in _strings(ast.parse(path.read_text())):
            text = node.value
            if "stand-in" in text or not re.search(r"arn:aws:|amazonaws\.com", text):
                continue
            if re.fullmatch(r"(ecs-tasks|scheduler|events)\.amazonaws\.com", text):
                continue
            if re.search(r"\btrusts?\b|\bdoes not let events\.amazonaws\.com\b", text):
                continue  # a message naming the principal
            relative = path.relative_to(ROOT / "gcpfargate").as_posix()
            if (relative, text) in ALLOWED:
                continue
            offenders.append(f"{relative}:{node.lineno}: {text!r}")
    assert offenders == []


# -- Google universe domains ----------------------------------------------------------------------
def test_the_universe_is_the_setting_else_the_environment_else_googleapis(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert universe_domain("") == "googleapis.com"
    monkeypatch.setenv("GOOGLE_CLOUD_UNIVERSE_DOMAIN", "example-universe.goog")
    assert universe_domain("") == "example-universe.goog"
    assert universe_domain("s3nsapis.fr") == "s3nsapis.fr"
    assert google_api("sts", "s3nsapis.fr") == "https://sts.s3nsapis.fr"


def test_rest_clients_talk_to_the_universes_hosts() -> None:
    assert WorkloadIdentityPools().base == "https://iam.googleapis.com"
    assert WorkloadIdentityPools(universe="s3nsapis.fr").base == "https://iam.s3nsapis.fr"
    assert ServiceUsage(universe="s3nsapis.fr").base == "https://serviceusage.s3nsapis.fr"
    # An explicit endpoint (an emulator, a Private Service Connect address) still wins.
    assert (
        WorkloadIdentityPools("http://127.0.0.1:9", universe="s3nsapis.fr").base
        == "http://127.0.0.1:9"
    )


def test_the_keyless_credential_config_names_a_universe_other_than_the_default() -> None:
    default = _keyless_config()
    assert "universe_domain" not in default
    assert default["token_url"] == "https://sts.googleapis.com/v1/token"
    config = _keyless_config(
        endpoints=GoogleEndpoints.from_environ({}, "s3nsapis.fr"), universe="s3nsapis.fr"
    )
    assert config["universe_domain"] == "s3nsapis.fr"
    assert config["token_url"] == "https://sts.s3nsapis.fr/v1/token"
    assert config["service_account_impersonation_url"].startswith(
        "https://iamcredentials.s3nsapis.fr/v1/"
    )
    # The audience is a resource name, the same in every universe.
    assert config["audience"].startswith("//iam.googleapis.com/projects/123456789/")


# -- the policy file -------------------------------------------------------------------------------
def _resources(policy: dict[str, Any]) -> list[str]:
    found: list[str] = []
    for statement in policy["Statement"]:
        value = statement["Resource"]
        found.extend([value] if isinstance(value, str) else value)
    return found


@pytest.mark.parametrize("partition", ["aws", "aws-cn", "aws-us-gov"])
def test_the_policy_file_is_filled_in_for_any_partition(partition: str) -> None:
    text = (ROOT / "docs" / "aws-policy.json").read_text()
    assert "arn:aws:" not in text  # every ARN takes the partition from the placeholder
    filled = json.loads(text.replace("PARTITION", partition).replace("ACCOUNT_ID", ACCOUNT))
    arns = [each for each in _resources(filled) if each != "*"]
    assert arns and all(each.startswith(f"arn:{partition}:") for each in arns)


# -- deploy's warning about an older image ---------------------------------------------------------
HOST = f"{ACCOUNT}.dkr.ecr.us-east-1.amazonaws.com"
OLD_DIGEST = "sha256:" + "a" * 64
NEW_DIGEST = "sha256:" + "b" * 64
T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


def _ctx() -> tuple[Context, NullReporter, Stubber]:
    reporter = NullReporter()
    settings = load_settings(
        None,
        environ={"GCPFARGATE_AWS_REGION": "us-east-1"},
        overrides={"task.family": "web"},
    )
    ctx = Context(settings=settings, reporter=reporter)
    ecr = Stubber(ctx.aws.client("ecr"))
    ecr.add_response(
        "get_authorization_token",
        {"authorizationData": [{"authorizationToken": TOKEN, "proxyEndpoint": f"https://{HOST}"}]},
        {},
    )
    return ctx, reporter, ecr


def _running(image: str) -> dict[str, Any]:
    return {"containerDefinitions": [{"name": "app", "image": image}]}


@pytest.mark.parametrize(
    ("new_pushed", "warned"), [(T0 - timedelta(hours=1), True), (T0 + timedelta(hours=1), False)]
)
def test_moving_to_an_image_pushed_earlier_warns_in_one_line(
    new_pushed: datetime, warned: bool
) -> None:
    ctx, reporter, ecr = _ctx()
    ecr.add_response(
        "describe_images",
        {
            "imageDetails": [
                {"imageDigest": OLD_DIGEST, "imagePushedAt": T0, "repositoryName": "web"},
                {"imageDigest": NEW_DIGEST, "imagePushedAt": new_pushed, "repositoryName": "web"},
            ]
        },
        {
            "repositoryName": "web",
            "imageIds": [{"imageDigest": OLD_DIGEST}, {"imageDigest": NEW_DIGEST}],
        },
    )
    with ecr:
        warn_if_older(ctx, "api", _running(f"{HOST}/web@{OLD_DIGEST}"), NEW_DIGEST)
    if warned:
        assert len(reporter.warnings) == 1 and "\n" not in reporter.warnings[0]
        assert reporter.warnings[0].startswith("service api moves to an older image: web@sha256:b")
        assert "2026-12-01 08:00:00 UTC" in reporter.warnings[0]
    else:
        assert reporter.warnings == []


def test_no_comparison_for_the_same_image_or_one_outside_the_repository() -> None:
    ctx, reporter, ecr = _ctx()
    with ecr:  # no DescribeImages: the Stubber would fail on an unexpected call
        warn_if_older(ctx, "api", _running(f"{HOST}/web@{NEW_DIGEST}"), NEW_DIGEST)
        warn_if_older(ctx, "api", _running(f"public.ecr.aws/x/web@{OLD_DIGEST}"), NEW_DIGEST)
        warn_if_older(ctx, "api", _running(f"{HOST}/other@{OLD_DIGEST}"), NEW_DIGEST)
    assert reporter.warnings == []


def test_a_refused_comparison_only_leaves_the_warning_out() -> None:
    ctx, reporter, ecr = _ctx()
    ecr.add_client_error("describe_images", "AccessDeniedException", "not authorized")
    with ecr:
        warn_if_older(ctx, "api", _running(f"{HOST}/web:v1"), NEW_DIGEST)
    assert reporter.warnings == []


# -- cross-account pulls ---------------------------------------------------------------------------
def _policy(*statements: dict[str, Any]) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)})


ROLE = f"arn:aws:iam::{ACCOUNT}:role/gcpfargate-web-execution"
PRINCIPALS = [ACCOUNT, f"arn:aws:iam::{ACCOUNT}:root", ROLE]


@pytest.mark.parametrize(
    ("statement", "allowed"),
    [
        (
            {
                "Effect": "Allow",
                "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:root"},
                "Action": "ecr:*",
            },
            True,
        ),
        ({"Effect": "Allow", "Principal": {"AWS": [ROLE]}, "Action": ["ecr:BatchGetImage"]}, True),
        ({"Effect": "Allow", "Principal": "*", "Action": "ecr:Batch*"}, True),
        (
            {
                "Effect": "Allow",
                "Principal": {"AWS": "arn:aws:iam::111111111111:root"},
                "Action": "ecr:*",
            },
            False,
        ),
        ({"Effect": "Allow", "Principal": {"AWS": ROLE}, "Action": "ecr:PutImage"}, False),
        (
            {
                "Effect": "Allow",
                "Principal": "*",
                "Action": "ecr:*",
                "Condition": {"StringEquals": {"aws:PrincipalOrgID": "o-x"}},
            },
            False,
        ),
    ],
)
def test_a_repository_policy_lets_the_account_pull(
    statement: dict[str, Any], allowed: bool
) -> None:
    from gcpfargate.iam.policy import resource_policy_allows

    assert resource_policy_allows(_policy(statement), "ecr:BatchGetImage", PRINCIPALS) is allowed


def test_a_deny_beats_an_allow_in_a_repository_policy() -> None:
    from gcpfargate.iam.policy import resource_policy_allows

    text = _policy(
        {"Effect": "Allow", "Principal": "*", "Action": "ecr:*"},
        {"Effect": "Deny", "Principal": {"AWS": ROLE}, "Action": "ecr:BatchGetImage"},
    )
    assert resource_policy_allows(text, "ecr:BatchGetImage", PRINCIPALS) is False


def test_the_iam_clients_talk_to_the_universes_host(monkeypatch: pytest.MonkeyPatch) -> None:
    import google.auth
    from google.auth.credentials import AnonymousCredentials

    from gcpfargate.clients.google.gcp import IamAdmin

    monkeypatch.delenv("IAM_EMULATOR_HOST", raising=False)
    # Application Default Credentials stand in as anonymous ones (whose universe is any): only
    # the endpoint the client builds is looked at, nothing is sent.
    monkeypatch.setattr(google.auth, "default", lambda **_: (AnonymousCredentials(), None))
    grpc = IamAdmin(universe="s3nsapis.fr").client
    assert grpc.api_endpoint == "iam.s3nsapis.fr"
    rest = IamAdmin(transport="rest", universe="s3nsapis.fr").client
    assert rest._base == "https://iam.s3nsapis.fr"
    assert IamAdmin(transport="rest").client._base == "https://iam.googleapis.com"
