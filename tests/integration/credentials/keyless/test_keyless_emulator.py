"""The emulator's keyless surfaces, driven by the real clients: pools/providers over REST (with
operations and soft delete), IAMClient get/set_iam_policy, and real google-auth external account
credentials through STS (replayed to moto) and generateAccessToken, then the emulated API."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import re
import secrets
import time
import urllib.parse
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from tests.conftest import ACCOUNT_ID, REGION
from tests.stack.local import LocalStack

SCOPE = "https://www.googleapis.com/auth/cloud-platform"
CONDITION = f"attribute.aws_role.startsWith('arn:aws:sts::{ACCOUNT_ID}:assumed-role/gcpfargate-')"


class Rest:
    def __init__(self, base: str, project: str) -> None:
        self.base = f"{base}/v1/projects/{project}/locations/global/workloadIdentityPools"

    def call(self, method: str, path: str = "", expect: int = 200, **kwargs: Any) -> dict[str, Any]:
        response = requests.request(method, self.base + path, timeout=10, **kwargs)
        assert response.status_code == expect, response.text
        return response.json()

    def wait(self, operation: dict[str, Any], base: str) -> dict[str, Any]:
        while not operation.get("done"):
            operation = requests.get(f"{base}/v1/{operation['name']}", timeout=10).json()
        return operation["response"]


@pytest.fixture
def wif(stack: LocalStack, request: pytest.FixtureRequest) -> Iterator[dict[str, Any]]:
    """A project with a service account, a pool and an AWS provider limited to gcpfargate roles."""
    name = re.sub(r"[^a-z0-9]+", "-", request.node.name[-20:]).strip("-")
    project = f"wif-{os.getpid() % 10000}-{name}"
    email = stack.emulator.add_service_account(project, "runner-keyless").email
    rest = Rest(stack.emulator.http_url, project)
    rest.wait(
        rest.call("POST", params={"workloadIdentityPoolId": "gcpfargate"}), stack.emulator.http_url
    )
    rest.wait(
        rest.call(
            "POST",
            "/gcpfargate/providers",
            params={"workloadIdentityPoolProviderId": "aws-tasks"},
            json={"aws": {"accountId": ACCOUNT_ID}, "attributeCondition": CONDITION},
        ),
        stack.emulator.http_url,
    )
    number = stack.emulator.project_number(project)
    yield {
        "project": project,
        "email": email,
        "rest": rest,
        "number": number,
        "pool": f"projects/{number}/locations/global/workloadIdentityPools/gcpfargate",
    }
    stack.emulator.reset_knobs()


def bind(stack: LocalStack, wif: dict[str, Any], role_name: str) -> None:
    import grpc
    from google.api_core.client_options import ClientOptions
    from google.auth.credentials import AnonymousCredentials
    from google.cloud.iam_admin_v1 import IAMClient
    from google.cloud.iam_admin_v1.services.iam.transports import IAMGrpcTransport
    from google.iam.v1 import policy_pb2

    transport = IAMGrpcTransport(
        channel=grpc.insecure_channel(stack.emulator.grpc_address),
        credentials=AnonymousCredentials(),
    )
    client = IAMClient(transport=transport, client_options=ClientOptions())
    resource = f"projects/{wif['project']}/serviceAccounts/{wif['email']}"
    policy = client.get_iam_policy(request={"resource": resource})
    member = (
        f"principalSet://iam.googleapis.com/{wif['pool']}/attribute.aws_role/"
        f"arn:aws:sts::{ACCOUNT_ID}:assumed-role/{role_name}"
    )
    policy.bindings.append(
        policy_pb2.Binding(role="roles/iam.workloadIdentityUser", members=[member])
    )
    client.set_iam_policy(request={"resource": resource, "policy": policy})


def assumed(stack: LocalStack, role_name: str, session: str = "task-1") -> dict[str, str]:
    import boto3

    iam = boto3.client(
        "iam",
        region_name=REGION,
        endpoint_url=stack.moto_url,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    trust = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Action": "sts:AssumeRole",
                "Principal": {"Service": "ecs-tasks.amazonaws.com"},
            }
        ],
    }
    with contextlib.suppress(iam.exceptions.EntityAlreadyExistsException):
        iam.create_role(RoleName=role_name, AssumeRolePolicyDocument=json.dumps(trust))
    # ECS's part: the role trusts ecs-tasks.amazonaws.com, which the strict layer's trust rule
    # never lets a person be; moto itself stands in for the ECS agent assuming it.
    sts = boto3.client(
        "sts",
        region_name=REGION,
        endpoint_url=stack.moto_direct_url,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    creds = sts.assume_role(
        RoleArn=f"arn:aws:iam::{ACCOUNT_ID}:role/{role_name}", RoleSessionName=session
    )["Credentials"]
    return {
        "AWS_ACCESS_KEY_ID": creds["AccessKeyId"],
        "AWS_SECRET_ACCESS_KEY": creds["SecretAccessKey"],
        "AWS_SESSION_TOKEN": creds["SessionToken"],
        "AWS_REGION": REGION,
    }


def external_account(
    stack: LocalStack, wif: dict[str, Any], aws_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> Any:
    from google.auth import aws

    for name, value in aws_env.items():
        monkeypatch.setenv(name, value)
    base = stack.emulator.http_url
    return aws.Credentials.from_info(
        {
            "type": "external_account",
            "audience": f"//iam.googleapis.com/{wif['pool']}/providers/aws-tasks",
            "subject_token_type": "urn:ietf:params:aws:token-type:aws4_request",
            "token_url": f"{base}/v1/token",
            "service_account_impersonation_url": (
                f"{base}/v1/projects/-/serviceAccounts/{wif['email']}:generateAccessToken"
            ),
            "credential_source": {
                "environment_id": "aws1",
                "regional_cred_verification_url": "https://sts.{region}.amazonaws.com?Action=GetCallerIdentity&Version=2011-06-15",
            },
        },
        scopes=[SCOPE],
    )


def whoami(stack: LocalStack, credentials: Any) -> dict[str, Any]:
    from google.auth.transport.requests import AuthorizedSession

    response = AuthorizedSession(credentials).get(
        stack.emulator.http_url + "/v1/whoami", timeout=10
    )
    assert response.status_code == 200, response.text
    return response.json()


def test_bound_task_role_gets_the_service_account_without_any_key(
    stack: LocalStack, wif: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    bind(stack, wif, "gcpfargate-batch-task")
    before = stack.emulator.stats()
    credentials = external_account(stack, wif, assumed(stack, "gcpfargate-batch-task"), monkeypatch)
    assert whoami(stack, credentials) == {"email": wif["email"], "key_id": ""}
    after = stack.emulator.stats()
    assert after["keys_minted"] == before["keys_minted"]
    assert after["federated_tokens_issued"] == before["federated_tokens_issued"] + 1
    assert after["impersonated_tokens_issued"] == before["impersonated_tokens_issued"] + 1


def test_short_token_lifetime_makes_the_application_refresh(
    stack: LocalStack, wif: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    bind(stack, wif, "gcpfargate-batch-task")
    # google-auth refreshes 3 min 45 s before expiry, so a 230 s token is stale after about 5 s.
    stack.emulator.set_token_lifetime(230)
    before = stack.emulator.stats()["impersonated_tokens_issued"]
    credentials = external_account(stack, wif, assumed(stack, "gcpfargate-batch-task"), monkeypatch)
    whoami(stack, credentials)
    first = credentials.token
    time.sleep(6)
    whoami(stack, credentials)
    assert credentials.token != first
    assert stack.emulator.stats()["impersonated_tokens_issued"] == before + 2


def refused(stack: LocalStack, credentials: Any) -> str:
    from google.auth.exceptions import GoogleAuthError
    from google.auth.transport.requests import Request

    # STS refusals come as OAuthError, impersonation refusals as RefreshError.
    with pytest.raises(GoogleAuthError) as caught:
        credentials.refresh(Request())
    return " ".join(str(arg) for arg in caught.value.args)


@pytest.mark.parametrize("length", [44, 55])
def test_an_ecs_session_of_a_long_family_exchanges_with_gcpfargates_mapping(
    stack: LocalStack, wif: dict[str, Any], monkeypatch: pytest.MonkeyPatch, length: int
) -> None:
    from gcpfargate.credentials.keyless.bootstrap import AWS_MAPPING, task_role_name
    from tests.stack.iam.sts import MSG_SUBJECT_TOO_LONG

    role = task_role_name(("batch-" + "f" * length)[:length])
    bind(stack, wif, role)
    # ECS names a task-role session by the task id: 32 hex characters.
    aws_env = assumed(stack, role, session=secrets.token_hex(16))
    # Google's default mapping: google.subject is the whole session ARN, over 127 bytes.
    message = refused(stack, external_account(stack, wif, aws_env, monkeypatch))
    assert "invalid_request" in message and MSG_SUBJECT_TOO_LONG in message, message
    wif["rest"].call(
        "PATCH",
        "/gcpfargate/providers/aws-tasks",
        params={"updateMask": "attributeMapping"},
        json={"attributeMapping": AWS_MAPPING},
    )
    before = stack.emulator.stats()["federated_tokens_issued"]
    credentials = external_account(stack, wif, aws_env, monkeypatch)
    assert whoami(stack, credentials) == {"email": wif["email"], "key_id": ""}
    assert stack.emulator.stats()["federated_tokens_issued"] == before + 1


@pytest.mark.parametrize(
    ("service", "title"),
    [
        ("sts.googleapis.com", "Security Token Service API"),
        ("iamcredentials.googleapis.com", "IAM Service Account Credentials API"),
    ],
)
def test_a_disabled_api_answers_service_disabled_and_service_usage_says_so(
    stack: LocalStack,
    wif: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
    service: str,
    title: str,
) -> None:
    bind(stack, wif, "gcpfargate-batch-task")
    usage = f"{stack.emulator.http_url}/v1/projects/{wif['project']}/services/{service}"
    assert requests.get(usage, timeout=10).json() == {
        "name": f"projects/{wif['number']}/services/{service}",
        "parent": f"projects/{wif['number']}",
        "config": {"name": service},
        "state": "ENABLED",
    }
    stack.emulator.set_service_enabled(wif["project"], service, False)
    assert requests.get(usage, timeout=10).json()["state"] == "DISABLED"
    credentials = external_account(stack, wif, assumed(stack, "gcpfargate-batch-task"), monkeypatch)
    message = refused(stack, credentials)
    assert f"{title} has not been used in project {wif['number']} before or it is disabled" in (
        message
    )
    assert "SERVICE_DISABLED" in message
    enabled = requests.post(usage + ":enable", timeout=10).json()
    assert enabled["done"] is True and enabled["response"]["state"] == "ENABLED"
    assert whoami(
        stack, external_account(stack, wif, assumed(stack, "gcpfargate-batch-task"), monkeypatch)
    )


def test_role_that_is_not_bound_is_denied_at_impersonation(
    stack: LocalStack, wif: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    bind(stack, wif, "gcpfargate-batch-task")
    credentials = external_account(stack, wif, assumed(stack, "gcpfargate-other-task"), monkeypatch)
    message = refused(stack, credentials)
    assert (
        "Permission 'iam.serviceAccounts.getAccessToken' denied on resource (or it may not exist)."
        in message
    )


def test_attribute_condition_rejects_a_role_outside_gcpfargate(
    stack: LocalStack, wif: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    credentials = external_account(stack, wif, assumed(stack, "someone-else"), monkeypatch)
    assert "The given credential is rejected by the attribute condition." in refused(
        stack, credentials
    )


def test_keys_moto_never_issued_are_refused(
    stack: LocalStack, wif: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = {
        "AWS_ACCESS_KEY_ID": "ASIAUNKNOWN0000000",
        "AWS_SECRET_ACCESS_KEY": "x",
        "AWS_SESSION_TOKEN": "y",
        "AWS_REGION": REGION,
    }
    credentials = external_account(stack, wif, fake, monkeypatch)
    assert "The security token included in the request is invalid." in refused(stack, credentials)


def exchange(stack: LocalStack, audience: str, subject: dict[str, Any]) -> requests.Response:
    return requests.post(
        stack.emulator.http_url + "/v1/token",
        timeout=10,
        data={
            "grant_type": "urn:ietf:params:oauth:grant-type:token-exchange",
            "audience": audience,
            "requested_token_type": "urn:ietf:params:oauth:token-type:access_token",
            "scope": SCOPE,
            "subject_token_type": "urn:ietf:params:aws:token-type:aws4_request",
            "subject_token": urllib.parse.quote(json.dumps(subject)),
        },
    )


def signed_subject(
    stack: LocalStack, wif: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> dict[str, Any]:
    from google.auth.transport.requests import Request

    credentials = external_account(stack, wif, assumed(stack, "gcpfargate-batch-task"), monkeypatch)
    return json.loads(urllib.parse.unquote(credentials.retrieve_subject_token(Request())))


def test_stale_signature_wrong_target_and_wrong_scope_are_refused(
    stack: LocalStack, wif: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    audience = f"//iam.googleapis.com/{wif['pool']}/providers/aws-tasks"
    subject = signed_subject(stack, wif, monkeypatch)
    assert exchange(stack, audience, subject).status_code == 200

    def edited(name: str, change: Any) -> dict[str, Any]:
        headers = [
            {**h, "value": change(h["value"])} if h["key"] == name else h
            for h in subject["headers"]
        ]
        return {**subject, "headers": headers}

    old = (dt.datetime.now(dt.UTC) - dt.timedelta(minutes=16)).strftime("%Y%m%dT%H%M%SZ")
    # Signed 16 minutes ago; near midnight UTC that is yesterday, and the credential scope's date
    # must say so too (else the scope check answers first, as it does for a real mismatch).
    dated = edited("x-amz-date", lambda v: old)
    dated["headers"] = [
        {**h, "value": h["value"].replace(f"/{h['value'].split('/')[1]}/", f"/{old[:8]}/", 1)}
        if h["key"] == "Authorization"
        else h
        for h in dated["headers"]
    ]
    stale = exchange(stack, audience, dated)
    assert stale.status_code == 400 and stale.json()["error_description"].startswith(
        "Signature expired: "
    )
    other = exchange(stack, audience, edited("x-goog-cloud-target-resource", lambda v: v + "x"))
    assert other.json() == {
        "error": "invalid_grant",
        "error_description": "The x-goog-cloud-target-resource header does not match the audience.",
    }
    scope = exchange(
        stack,
        audience,
        edited("Authorization", lambda v: v.replace(f"/{REGION}/sts/", "/us-east-1/sts/")),
    )
    assert "credential scope" in scope.json()["error_description"]
    unknown = exchange(stack, audience.replace("aws-tasks", "nope"), subject)
    assert unknown.json()["error"] == "invalid_target"


def test_soft_deleted_pool_is_refused_listed_as_deleted_and_undeletable(
    stack: LocalStack, wif: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    rest, base = wif["rest"], stack.emulator.http_url
    bind(stack, wif, "gcpfargate-batch-task")
    deleted = rest.wait(rest.call("DELETE", "/gcpfargate"), base)
    assert deleted["state"] == "DELETED" and "expireTime" in deleted
    assert rest.call("GET")["workloadIdentityPools"] == []
    listed = rest.call("GET", params={"showDeleted": "true"})["workloadIdentityPools"]
    assert [p["state"] for p in listed] == ["DELETED"]
    again = rest.call("POST", params={"workloadIdentityPoolId": "gcpfargate"}, expect=409)
    assert again["error"]["status"] == "ALREADY_EXISTS"
    credentials = external_account(stack, wif, assumed(stack, "gcpfargate-batch-task"), monkeypatch)
    assert "invalid_target" in refused(stack, credentials)
    assert rest.wait(rest.call("POST", "/gcpfargate:undelete"), base)["state"] == "ACTIVE"
    assert whoami(stack, credentials)["email"] == wif["email"]


def test_operations_must_be_polled_and_mutations_are_counted(
    stack: LocalStack, wif: dict[str, Any]
) -> None:
    rest, base = wif["rest"], stack.emulator.http_url
    stack.emulator.set_operation_polls(3)
    before = stack.emulator.stats()["mutating_calls"]
    operation = rest.call(
        "POST",
        "/gcpfargate/providers",
        params={"workloadIdentityPoolProviderId": "second"},
        json={"aws": {"accountId": ACCOUNT_ID}},
    )
    assert "done" not in operation
    polls = 0
    while not operation.get("done"):
        operation = requests.get(f"{base}/v1/{operation['name']}", timeout=10).json()
        polls += 1
    assert polls == 3
    provider = operation["response"]
    assert (
        provider["attributeMapping"]["google.subject"] == "assertion.arn"
        and provider["state"] == "ACTIVE"
    )
    assert stack.emulator.stats()["mutating_calls"] == before + 1
    bad = rest.call(
        "POST",
        "/gcpfargate/providers",
        params={"workloadIdentityPoolProviderId": "bad1"},
        json={"aws": {"accountId": ACCOUNT_ID}, "attributeCondition": "assertion.arn.startsWith("},
        expect=400,
    )
    assert bad["error"]["status"] == "INVALID_ARGUMENT"
    assert (
        rest.call("GET", "/gcpfargate/providers/nope", expect=404)["error"]["message"]
        == "Requested entity was not found."
    )


def test_set_iam_policy_with_a_stale_etag_is_aborted(
    stack: LocalStack, wif: dict[str, Any]
) -> None:
    from google.api_core import exceptions

    bind(stack, wif, "gcpfargate-a-task")
    import grpc
    from google.api_core.client_options import ClientOptions
    from google.auth.credentials import AnonymousCredentials
    from google.cloud.iam_admin_v1 import IAMClient
    from google.cloud.iam_admin_v1.services.iam.transports import IAMGrpcTransport

    client = IAMClient(
        transport=IAMGrpcTransport(
            channel=grpc.insecure_channel(stack.emulator.grpc_address),
            credentials=AnonymousCredentials(),
        ),
        client_options=ClientOptions(),
    )
    resource = f"projects/{wif['project']}/serviceAccounts/{wif['email']}"
    read = client.get_iam_policy(request={"resource": resource})
    bind(stack, wif, "gcpfargate-b-task")  # someone else writes in between
    with pytest.raises(exceptions.Aborted) as caught:
        client.set_iam_policy(request={"resource": resource, "policy": read})
    assert "There were concurrent policy changes." in str(caught.value)
    assert (
        len(stack.emulator.iam_policy_members(wif["email"], "roles/iam.workloadIdentityUser")) == 2
    )
