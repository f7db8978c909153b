"""The IAM emulator's real-world knobs, seen through Google's own clients.

Each knob models something real Google does (key propagation, key expiry, quotas, the key limit's
other surface, a disabled API, a missing permission, a new account not visible yet) and is set the
way another process would set it: over the admin HTTP interface (or the constructor). The
effects are observed with google-cloud-iam's IAMClient and google-auth (real RSA keys, real JWT
verification). No key material is written to disk or printed.
"""

from __future__ import annotations

import base64
import datetime as dt
import itertools
import json
import time
from collections.abc import Iterator
from typing import Any

import google.auth.transport.requests
import grpc
import pytest
import requests
from cryptography.hazmat.primitives.serialization import pkcs12
from google.api_core import exceptions as gexc
from google.auth.exceptions import RefreshError
from google.cloud import iam_admin_v1
from google.cloud.iam_admin_v1.services.iam.transports import IAMGrpcTransport
from google.cloud.iam_admin_v1.types import iam
from google.oauth2 import service_account
from google.rpc import error_details_pb2

from tests.stack.iam import IamEmulator

SCOPES = ["https://www.googleapis.com/auth/cloud-platform"]
PROJECT = "knob-project"
_ids = itertools.count(1)


@pytest.fixture(scope="module")
def emulator() -> Iterator[IamEmulator]:
    with IamEmulator() as emu:
        yield emu


@pytest.fixture(autouse=True)
def _fresh_knobs(emulator: IamEmulator) -> Iterator[None]:
    yield
    emulator.reset_knobs()


@pytest.fixture(scope="module")
def client(emulator: IamEmulator) -> Iterator[iam_admin_v1.IAMClient]:
    channel = grpc.insecure_channel(emulator.grpc_address)
    yield iam_admin_v1.IAMClient(transport=IAMGrpcTransport(channel=channel))
    channel.close()


def admin(emulator: IamEmulator, path: str, **body: Any) -> None:
    response = requests.post(f"{emulator.http_url}/admin/{path}", json=body, timeout=5)
    assert response.status_code == 200, response.text


def new_account(emulator: IamEmulator, project: str = PROJECT) -> iam.ServiceAccount:
    return emulator.add_service_account(project, f"knob-account-{next(_ids)}")


def create_key(
    client: iam_admin_v1.IAMClient, account: iam.ServiceAccount
) -> tuple[iam.ServiceAccountKey, dict[str, Any]]:
    key = client.create_service_account_key(name=account.name)
    return key, json.loads(key.private_key_data)


def refresh(info: dict[str, Any]) -> str:
    creds = service_account.Credentials.from_service_account_info(info, scopes=SCOPES)
    creds.refresh(google.auth.transport.requests.Request())
    return str(creds.token)


def whoami(emulator: IamEmulator, token: str) -> int:
    response = requests.get(
        f"{emulator.http_url}/v1/whoami", headers={"Authorization": f"Bearer {token}"}, timeout=5
    )
    return response.status_code


def details_of(exc: gexc.GoogleAPICallError, kind: type) -> list[Any]:
    return [d for d in exc.details if isinstance(d, kind)]


def test_propagation_delay_refuses_a_new_key_then_accepts_it(
    emulator: IamEmulator, client: iam_admin_v1.IAMClient
) -> None:
    account, bystander = new_account(emulator), new_account(emulator)
    admin(emulator, "propagation", email=account.email, seconds=1.5)
    key, info = create_key(client, account)
    created = time.monotonic()
    key_id = key.name.rsplit("/", 1)[1]

    with pytest.raises(RefreshError, match=r"invalid_grant: Invalid JWT Signature\."):
        refresh(info)
    certs = requests.get(info["client_x509_cert_url"], timeout=5).json()
    assert key_id not in certs  # not published yet either
    assert refresh(create_key(client, bystander)[1])  # other accounts keep the default (none)

    time.sleep(max(0.0, 1.6 - (time.monotonic() - created)))
    assert whoami(emulator, refresh(info)) == 200
    assert key_id in requests.get(info["client_x509_cert_url"], timeout=5).json()


def test_propagation_refuses_k_times_then_accepts(
    emulator: IamEmulator, client: iam_admin_v1.IAMClient
) -> None:
    account = new_account(emulator)
    admin(emulator, "propagation", refusals=3)  # every account
    _, info = create_key(client, account)
    before = emulator.stats()["rejected_grants"]
    for _ in range(3):
        with pytest.raises(RefreshError, match=r"Invalid JWT Signature\."):
            refresh(info)
    assert whoami(emulator, refresh(info)) == 200
    assert emulator.stats()["rejected_grants"] == before + 3

    # Back to 0: keys created from then on are accepted at once.
    admin(emulator, "propagation", refusals=0)
    assert refresh(create_key(client, account)[1])


def test_key_expiry_hours_sets_valid_before_and_expired_keys_are_refused(
    emulator: IamEmulator, client: iam_admin_v1.IAMClient
) -> None:
    account = new_account(emulator)
    admin(
        emulator, "key-expiry", email=account.email, hours=720
    )  # 30 days, an allowed policy value
    key, _ = create_key(client, account)
    assert key.valid_before_time - key.valid_after_time == dt.timedelta(hours=720)
    user_managed = iam.ListServiceAccountKeysRequest.KeyType.USER_MANAGED
    listed = client.list_service_account_keys(name=account.name, key_types=[user_managed])
    assert [k.valid_before_time for k in listed.keys] == [key.valid_before_time]

    admin(emulator, "key-expiry", email=account.email, hours=2 / 3600)  # two seconds, for the test
    short, info = create_key(client, account)
    assert short.valid_before_time - short.valid_after_time == dt.timedelta(seconds=2)
    token = refresh(info)
    assert whoami(emulator, token) == 200
    time.sleep(max(0.0, short.valid_before_time.timestamp() - time.time()) + 0.3)
    with pytest.raises(RefreshError, match=r"Invalid JWT Signature\."):
        refresh(info)
    assert whoami(emulator, token) == 401  # tokens die with their key here (stricter than Google)

    admin(emulator, "key-expiry", email=account.email, hours=None)
    assert create_key(client, account)[0].valid_before_time.year == 9999


def test_key_valid_before_can_be_moved(
    emulator: IamEmulator, client: iam_admin_v1.IAMClient
) -> None:
    account = new_account(emulator)
    key, info = create_key(client, account)
    key_id = key.name.rsplit("/", 1)[1]
    soon = (dt.datetime.now(dt.UTC) + dt.timedelta(days=3)).replace(microsecond=0)
    admin(
        emulator,
        "key-valid-before",
        email=account.email,
        key_id=key_id,
        valid_before=soon.isoformat(),
    )
    assert client.get_service_account_key(name=key.name).valid_before_time == soon
    assert refresh(info)

    past = dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)
    admin(
        emulator,
        "key-valid-before",
        email=account.email,
        key_id=key_id,
        valid_before=past.isoformat(),
    )
    assert emulator.key_valid_before(account.email, key_id) == past
    with pytest.raises(RefreshError, match=r"Invalid JWT Signature\."):
        refresh(info)


def test_key_limit_as_resource_exhausted(
    emulator: IamEmulator, client: iam_admin_v1.IAMClient
) -> None:
    account = new_account(emulator)
    admin(emulator, "key-limit", max_keys=2, code="RESOURCE_EXHAUSTED")
    create_key(client, account)
    create_key(client, account)
    with pytest.raises(gexc.ResourceExhausted) as caught:
        client.create_service_account_key(name=account.name)
    assert caught.value.message == "Maximum number of keys on account reached."
    [retry] = details_of(caught.value, error_details_pb2.RetryInfo)
    assert retry.retry_delay.seconds == 86401
    assert len(emulator.key_ids(account.email)) == 2

    bad = requests.post(
        f"{emulator.http_url}/admin/key-limit", json={"code": "NOT_FOUND"}, timeout=5
    )
    assert bad.status_code == 400


def test_key_creation_quota_429(emulator: IamEmulator, client: iam_admin_v1.IAMClient) -> None:
    account = new_account(emulator)
    admin(emulator, "exhaust-key-quota", project=PROJECT, count=2)
    for _ in range(2):
        with pytest.raises(
            gexc.ResourceExhausted, match="Quota exceeded for quota metric"
        ) as caught:
            client.create_service_account_key(name=account.name)
        assert caught.value.code == 429
        [info] = details_of(caught.value, error_details_pb2.ErrorInfo)
        assert info.reason == "RATE_LIMIT_EXCEEDED"
    assert emulator.key_ids(account.email) == []
    create_key(client, account)  # the quota refills
    assert len(emulator.key_ids(account.email)) == 1


def test_service_disabled(emulator: IamEmulator, client: iam_admin_v1.IAMClient) -> None:
    account = new_account(emulator, "disabled-api-project")
    admin(emulator, "disable-service", project="disabled-api-project")
    for call in (
        lambda: client.get_service_account(name=f"projects/-/serviceAccounts/{account.email}"),
        lambda: client.create_service_account_key(name=account.name),
    ):
        with pytest.raises(gexc.PermissionDenied) as caught:
            call()
        assert caught.value.message.startswith(
            "Identity and Access Management (IAM) API has not been used in project "
            "disabled-api-project before or it is disabled. Enable it by visiting "
            "https://console.developers.google.com/apis/api/iam.googleapis.com/overview"
            "?project=disabled-api-project then retry."
        )
        [info] = details_of(caught.value, error_details_pb2.ErrorInfo)
        assert (info.reason, info.domain) == ("SERVICE_DISABLED", "googleapis.com")
        assert info.metadata["service"] == "iam.googleapis.com"
    client.get_service_account(name=new_account(emulator).name)  # other projects are fine
    admin(emulator, "disable-service", project="disabled-api-project", disabled=False)
    create_key(client, account)


def test_vpc_service_controls_perimeter(
    emulator: IamEmulator, client: iam_admin_v1.IAMClient
) -> None:
    account = new_account(emulator, "perimeter-project")
    admin(emulator, "vpc-perimeter", project="perimeter-project")
    with pytest.raises(gexc.PermissionDenied) as caught:
        client.create_service_account_key(name=account.name)
    assert caught.value.message.startswith(
        "Request is prohibited by organization's policy. vpcServiceControlsUniqueIdentifier: "
    )
    [info] = details_of(caught.value, error_details_pb2.ErrorInfo)
    assert (info.reason, info.domain) == ("SECURITY_POLICY_VIOLATED", "googleapis.com")
    [failure] = details_of(caught.value, error_details_pb2.PreconditionFailure)
    assert [v.type for v in failure.violations] == ["VPC_SERVICE_CONTROLS"]
    admin(emulator, "vpc-perimeter", project="perimeter-project", enclosed=False)
    create_key(client, account)


def test_org_policy_managed_constraint(
    emulator: IamEmulator, client: iam_admin_v1.IAMClient
) -> None:
    account = new_account(emulator, "managed-policy-project")
    constraint = "constraints/iam.managed.disableServiceAccountKeyCreation"
    admin(emulator, "deny-key-creation", project="managed-policy-project", constraint=constraint)
    with pytest.raises(gexc.FailedPrecondition) as caught:
        client.create_service_account_key(name=account.name)
    assert caught.value.message == "Key creation is not allowed on this service account."
    [failure] = details_of(caught.value, error_details_pb2.PreconditionFailure)
    assert [v.type for v in failure.violations] == [constraint]
    assert failure.violations[0].subject.startswith(
        f"projects/managed-policy-project/serviceAccounts/{account.email}"
    )


def test_permission_denied(emulator: IamEmulator, client: iam_admin_v1.IAMClient) -> None:
    account = new_account(emulator, "no-perm-project")
    admin(
        emulator,
        "deny-permission",
        permission="iam.serviceAccountKeys.create",
        project="no-perm-project",
    )
    with pytest.raises(gexc.PermissionDenied) as caught:
        client.create_service_account_key(name=f"projects/-/serviceAccounts/{account.email}")
    assert caught.value.message == (
        "Permission 'iam.serviceAccountKeys.create' denied on resource (or it may not exist)."
    )
    [info] = details_of(caught.value, error_details_pb2.ErrorInfo)
    assert (info.reason, info.domain) == ("IAM_PERMISSION_DENIED", "iam.googleapis.com")
    assert info.metadata["permission"] == "iam.serviceAccountKeys.create"
    assert client.list_service_account_keys(name=account.name).keys  # other permissions still held
    create_key(client, new_account(emulator))  # other projects unaffected

    admin(emulator, "deny-permission", permission="iam.serviceAccountKeys.delete")  # everywhere
    key, _ = create_key(client, new_account(emulator))
    with pytest.raises(gexc.PermissionDenied, match=r"iam\.serviceAccountKeys\.delete"):
        client.delete_service_account_key(name=key.name, retry=None)


def test_new_account_not_found_window(
    emulator: IamEmulator, client: iam_admin_v1.IAMClient
) -> None:
    admin(emulator, "account-visibility", seconds=1.0)
    account = client.create_service_account(
        name=f"projects/{PROJECT}", account_id="fresh-window-one"
    )
    created = time.monotonic()
    with pytest.raises(gexc.NotFound, match=f"Service account {account.name} does not exist."):
        client.get_service_account(name=account.name, retry=None)
    with pytest.raises(gexc.NotFound):
        client.create_service_account_key(name=account.name)
    with pytest.raises(gexc.AlreadyExists):  # the name is taken all the same
        client.create_service_account(name=f"projects/{PROJECT}", account_id="fresh-window-one")
    time.sleep(max(0.0, 1.1 - (time.monotonic() - created)))
    assert client.get_service_account(name=account.name).email == account.email
    create_key(client, account)

    admin(emulator, "account-visibility", calls=2)
    counted = client.create_service_account(
        name=f"projects/{PROJECT}", account_id="fresh-window-two"
    )
    for _ in range(2):
        with pytest.raises(gexc.NotFound):
            client.get_service_account(name=counted.name, retry=None)
    assert client.get_service_account(name=counted.name, retry=None).email == counted.email


def test_minted_keys_record_every_private_key(
    emulator: IamEmulator, client: iam_admin_v1.IAMClient
) -> None:
    account = new_account(emulator)
    before = emulator.stats()["keys_minted"]
    json_key, info = create_key(client, account)
    p12_key = client.create_service_account_key(
        request={
            "name": account.name,
            "private_key_type": iam.ServiceAccountPrivateKeyType.TYPE_PKCS12_FILE,
        }
    )
    client.delete_service_account_key(name=json_key.name)
    admin(emulator, "deny-key-creation", project=PROJECT)
    with pytest.raises(gexc.FailedPrecondition):
        client.create_service_account_key(name=account.name)  # refused: nothing minted

    minted = requests.get(f"{emulator.http_url}/admin/minted-keys", timeout=5).json()["keys"]
    mine = {m["key_id"]: m for m in minted if m["email"] == account.email}
    json_id, p12_id = (k.name.rsplit("/", 1)[1] for k in (json_key, p12_key))
    assert set(mine) == {json_id, p12_id}  # the deleted key is still on record
    assert mine[json_id]["private_key_pem"] == info["private_key"]
    assert base64.b64decode(mine[json_id]["private_key_data_b64"]) == json_key.private_key_data
    assert base64.b64decode(mine[p12_id]["private_key_data_b64"]) == p12_key.private_key_data
    p12_private = pkcs12.load_key_and_certificates(p12_key.private_key_data, b"notasecret")[0]
    assert p12_private is not None
    assert emulator.stats()["keys_minted"] == before + 2
    assert [m.key_id for m in emulator.minted_keys() if m.email == account.email] == [
        json_id,
        p12_id,
    ]


def test_constructor_defaults_and_reset() -> None:
    with IamEmulator(
        propagation_refusals=1, key_expiry_hours=1, key_limit=1, key_limit_code="RESOURCE_EXHAUSTED"
    ) as emu:
        channel = grpc.insecure_channel(emu.grpc_address)
        client = iam_admin_v1.IAMClient(transport=IAMGrpcTransport(channel=channel))
        account = emu.add_service_account(PROJECT, "ctor-account")
        key, info = create_key(client, account)
        assert key.valid_before_time - key.valid_after_time == dt.timedelta(hours=1)
        with pytest.raises(RefreshError):
            refresh(info)
        assert refresh(info)
        with pytest.raises(gexc.ResourceExhausted):
            client.create_service_account_key(name=account.name)

        emu.set_key_limit(5)
        emu.set_propagation_delay(0)
        emu.reset_knobs()  # back to the constructor's values, not to Google's defaults
        with pytest.raises(gexc.ResourceExhausted):
            client.create_service_account_key(name=account.name)
        channel.close()


def test_mounted_routes_serve_new_surfaces(emulator: IamEmulator) -> None:
    # The hook the keyless surfaces (pools REST, STS, generateAccessToken) are added through.
    seen: list[tuple[str, str, Any]] = []

    def handler(request: Any) -> tuple[int, Any]:
        seen.append((request.method, request.path, request.json()))
        return 200, {"name": request.path.removeprefix("/v1/")}

    emulator.mount("PATCH", "/v1/projects/", handler)
    response = requests.patch(
        f"{emulator.http_url}/v1/projects/p/locations/global/x", json={"a": 1}, timeout=5
    )
    assert response.json() == {"name": "projects/p/locations/global/x"}
    assert seen == [("PATCH", "/v1/projects/p/locations/global/x", {"a": 1})]
    assert requests.delete(f"{emulator.http_url}/v1/projects/p", timeout=5).status_code == 404
