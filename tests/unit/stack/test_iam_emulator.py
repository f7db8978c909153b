"""Tests of the IAM emulator (tests/stack/iam/) through the real google-cloud-iam client.

The emulator stands in for Google in every key-rotation test, so these tests pin down that the
real client libraries (google-cloud-iam over gRPC, google-auth over HTTP) accept what it says.
No key material is written to disk or printed: keys live in local variables only.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import google.auth.transport.requests
import grpc
import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from google.api_core import exceptions as gexc
from google.auth import crypt
from google.auth import jwt as gjwt
from google.auth.exceptions import RefreshError
from google.cloud import iam_admin_v1
from google.cloud.iam_admin_v1.services.iam.transports import IAMGrpcTransport
from google.cloud.iam_admin_v1.types import iam
from google.oauth2 import service_account
from google.rpc import error_details_pb2

from tests.conftest import ROOT
from tests.stack.iam import (
    GOOGLE_TOKEN_AUDIENCE,
    JWT_BEARER_GRANT,
    MSG_KEY_CREATION_DENIED,
    MSG_KEY_LIMIT,
    IamEmulator,
)

REPO_ROOT = ROOT
SCOPES = ["https://www.googleapis.com/auth/cloud-platform"]
PROJECT = "emu-project"
KeyType = iam.ListServiceAccountKeysRequest.KeyType
_ids = itertools.count(1)


@pytest.fixture(scope="module")
def emulator() -> Iterator[IamEmulator]:
    with IamEmulator() as emu:
        yield emu


@pytest.fixture(scope="module")
def client(emulator: IamEmulator) -> Iterator[iam_admin_v1.IAMClient]:
    # The construction the product uses with IAM_EMULATOR_HOST: a plain insecure channel handed
    # to the transport; the transport then ignores credentials entirely.
    channel = grpc.insecure_channel(emulator.grpc_address)
    yield iam_admin_v1.IAMClient(transport=IAMGrpcTransport(channel=channel))
    channel.close()


def new_account(emulator: IamEmulator) -> iam.ServiceAccount:
    return emulator.add_service_account(PROJECT, f"test-account-{next(_ids)}", display_name="t")


def create_key(
    client: iam_admin_v1.IAMClient, account: iam.ServiceAccount
) -> tuple[str, dict[str, Any]]:
    key = client.create_service_account_key(name=f"projects/-/serviceAccounts/{account.email}")
    return key.name.rsplit("/", 1)[1], json.loads(key.private_key_data)


def refreshed(info: dict[str, Any]) -> service_account.Credentials:
    creds = service_account.Credentials.from_service_account_info(info, scopes=SCOPES)
    creds.refresh(google.auth.transport.requests.Request())
    return creds


def whoami(emulator: IamEmulator, token: str) -> requests.Response:
    return requests.get(
        f"{emulator.http_url}/v1/whoami", headers={"Authorization": f"Bearer {token}"}, timeout=5
    )


def test_create_get_and_list_service_accounts(
    emulator: IamEmulator, client: iam_admin_v1.IAMClient
) -> None:
    account = client.create_service_account(
        request={
            "name": "projects/proj-a",
            "account_id": "deployer-one",
            "service_account": {"display_name": "Deployer", "description": "ci"},
        }
    )
    assert account.email == "deployer-one@proj-a.iam.gserviceaccount.com"
    assert account.name == f"projects/proj-a/serviceAccounts/{account.email}"
    assert account.project_id == "proj-a"
    assert re.fullmatch(r"\d{21}", account.unique_id)
    assert (account.display_name, account.description, account.disabled) == (
        "Deployer",
        "ci",
        False,
    )

    # All documented name forms resolve to the same account.
    for name in (
        account.name,
        f"projects/-/serviceAccounts/{account.email}",
        f"projects/-/serviceAccounts/{account.unique_id}",
        f"projects/proj-a/serviceAccounts/{account.unique_id}",
    ):
        assert client.get_service_account(name=name).email == account.email

    with pytest.raises(gexc.AlreadyExists, match="already exists within project projects/proj-a"):
        client.create_service_account(name="projects/proj-a", account_id="deployer-one")
    with pytest.raises(gexc.InvalidArgument, match="does not have a length between 6 and 30"):
        client.create_service_account(name="projects/proj-a", account_id="abc")
    with pytest.raises(gexc.InvalidArgument, match="does not match"):
        client.create_service_account(name="projects/proj-a", account_id="Bad_Name_1")

    for n in range(3):
        emulator.add_service_account("proj-a", f"paged-account-{n}")
    listed = [
        a.email
        for a in client.list_service_accounts(request={"name": "projects/proj-a", "page_size": 2})
    ]
    assert len(listed) == 4 and account.email in listed


def test_missing_account_is_not_found(client: iam_admin_v1.IAMClient) -> None:
    name = "projects/-/serviceAccounts/nobody-here@emu-project.iam.gserviceaccount.com"
    with pytest.raises(gexc.NotFound, match=f"Service account {re.escape(name)} does not exist."):
        client.get_service_account(name=name)
    with pytest.raises(gexc.NotFound):
        client.create_service_account_key(name=name)
    with pytest.raises(gexc.NotFound):
        client.list_service_account_keys(name=name)


def test_create_key_returns_google_key_file(
    emulator: IamEmulator, client: iam_admin_v1.IAMClient
) -> None:
    account = new_account(emulator)
    key = client.create_service_account_key(name=account.name)
    key_id = key.name.rsplit("/", 1)[1]
    assert key.name == f"projects/{PROJECT}/serviceAccounts/{account.email}/keys/{key_id}"
    assert re.fullmatch(r"[0-9a-f]{40}", key_id)
    assert key.private_key_type == iam.ServiceAccountPrivateKeyType.TYPE_GOOGLE_CREDENTIALS_FILE
    assert key.key_algorithm == iam.ServiceAccountKeyAlgorithm.KEY_ALG_RSA_2048
    assert key.key_origin == iam.ServiceAccountKeyOrigin.GOOGLE_PROVIDED
    assert key.key_type == KeyType.USER_MANAGED
    assert not key.disabled
    assert key.valid_before_time.year == 9999
    assert key.valid_after_time.timestamp() <= time.time() + 1

    info = json.loads(key.private_key_data)
    assert list(info) == [
        "type",
        "project_id",
        "private_key_id",
        "private_key",
        "client_email",
        "client_id",
        "auth_uri",
        "token_uri",
        "auth_provider_x509_cert_url",
        "client_x509_cert_url",
        "universe_domain",
    ]
    assert info["type"] == "service_account"
    assert info["project_id"] == PROJECT
    assert info["private_key_id"] == key_id
    assert info["client_email"] == account.email
    assert info["client_id"] == account.unique_id
    assert info["token_uri"] == f"{emulator.http_url}/token"
    assert info["universe_domain"] == "googleapis.com"
    assert info["private_key"].startswith(
        "-----BEGIN " + "PRIVATE KEY-----"
    )  # split: no key text committed
    private_key = serialization.load_pem_private_key(info["private_key"].encode(), password=None)
    assert isinstance(private_key, rsa.RSAPrivateKey) and private_key.key_size == 2048

    # The emulator publishes the matching public half, and only the create response carries
    # private data.
    fetched = client.get_service_account_key(
        request={
            "name": key.name,
            "public_key_type": iam.ServiceAccountPublicKeyType.TYPE_X509_PEM_FILE,
        }
    )
    assert fetched.private_key_data == b""
    cert = x509.load_pem_x509_certificate(fetched.public_key_data)
    assert cert.public_key().public_numbers() == private_key.public_key().public_numbers()
    assert client.get_service_account_key(name=key.name).public_key_data == b""

    certs = requests.get(info["client_x509_cert_url"], timeout=5).json()
    assert key_id in certs
    assert emulator.key_ids(account.email) == [key_id]
    assert emulator.key_state(account.email, key_id) == "enabled"


def test_google_auth_refresh_and_token_use(
    emulator: IamEmulator, client: iam_admin_v1.IAMClient
) -> None:
    account = new_account(emulator)
    key_id, info = create_key(client, account)
    before = emulator.stats()
    creds = refreshed(info)
    assert creds.token and creds.expiry is not None

    response = whoami(emulator, creds.token)
    assert response.status_code == 200
    assert response.json() == {"email": account.email, "key_id": key_id}
    assert whoami(emulator, "not-a-token").status_code == 401

    after = emulator.stats()
    assert after["tokens_issued"] == before["tokens_issued"] + 1
    assert after["authenticated_calls"] == before["authenticated_calls"] + 1
    assert after["rejected_tokens"] == before["rejected_tokens"] + 1
    assert after["authenticated_by_key"][key_id] == 1


def test_disabled_key_is_rejected(emulator: IamEmulator, client: iam_admin_v1.IAMClient) -> None:
    account = new_account(emulator)
    key_id, info = create_key(client, account)
    token = refreshed(info).token
    key_name = f"projects/{PROJECT}/serviceAccounts/{account.email}/keys/{key_id}"

    client.disable_service_account_key(name=key_name)
    assert emulator.key_state(account.email, key_id) == "disabled"
    assert client.get_service_account_key(name=key_name).disabled
    with pytest.raises(RefreshError, match="invalid_grant"):
        refreshed(info)
    assert whoami(emulator, token).status_code == 401  # tokens minted earlier die with the key

    client.enable_service_account_key(name=key_name)
    assert emulator.key_state(account.email, key_id) == "enabled"
    assert whoami(emulator, refreshed(info).token).status_code == 200


def test_deleted_key_is_rejected(emulator: IamEmulator, client: iam_admin_v1.IAMClient) -> None:
    account = new_account(emulator)
    key_id, info = create_key(client, account)
    token = refreshed(info).token
    key_name = f"projects/-/serviceAccounts/{account.email}/keys/{key_id}"

    client.delete_service_account_key(name=key_name)
    assert emulator.key_state(account.email, key_id) == "deleted"
    assert emulator.key_ids(account.email) == []
    assert emulator.key_ids(account.email, include_deleted=True) == [key_id]
    with pytest.raises(RefreshError, match="Invalid JWT Signature"):
        refreshed(info)
    assert whoami(emulator, token).status_code == 401
    with pytest.raises(gexc.NotFound, match=f"Service account key {key_id} does not exist."):
        client.get_service_account_key(name=key_name)


def test_disabled_account_is_rejected(
    emulator: IamEmulator, client: iam_admin_v1.IAMClient
) -> None:
    account = new_account(emulator)
    _, info = create_key(client, account)
    client.disable_service_account(request={"name": account.name})
    with pytest.raises(RefreshError, match="account not found"):
        refreshed(info)
    client.enable_service_account(request={"name": account.name})
    assert refreshed(info).token


def test_eleventh_key_fails_precondition(
    emulator: IamEmulator, client: iam_admin_v1.IAMClient
) -> None:
    account = new_account(emulator)
    key_ids = [create_key(client, account)[0] for _ in range(10)]
    # A disabled key still uses a slot.
    client.disable_service_account_key(name=f"{account.name}/keys/{key_ids[0]}")
    with pytest.raises(gexc.FailedPrecondition) as caught:
        client.create_service_account_key(name=account.name)
    assert caught.value.message == MSG_KEY_LIMIT

    def listed(*types: KeyType) -> int:
        return len(client.list_service_account_keys(name=account.name, key_types=list(types)).keys)

    assert listed(KeyType.USER_MANAGED) == 10
    assert listed(KeyType.SYSTEM_MANAGED) == 1
    assert listed() == 11
    with pytest.raises(gexc.InvalidArgument):
        listed(KeyType.KEY_TYPE_UNSPECIFIED)

    # A deleted key frees its slot.
    client.delete_service_account_key(name=f"{account.name}/keys/{key_ids[0]}")
    create_key(client, account)
    assert len(emulator.key_ids(account.email)) == 10


def test_key_creation_denied_by_org_policy(
    emulator: IamEmulator, client: iam_admin_v1.IAMClient
) -> None:
    account = emulator.add_service_account("locked-project", "locked-account")
    emulator.deny_key_creation("locked-project")
    with pytest.raises(gexc.FailedPrecondition) as caught:
        client.create_service_account_key(name=account.name)
    assert (
        caught.value.message
        == MSG_KEY_CREATION_DENIED
        == "Key creation is not allowed on this service account."
    )
    violations = [
        v
        for d in caught.value.details
        if isinstance(d, error_details_pb2.PreconditionFailure)
        for v in d.violations
    ]
    assert [v.type for v in violations] == ["constraints/iam.disableServiceAccountKeyCreation"]

    # The same switch over HTTP, as another process would use it.
    response = requests.post(
        f"{emulator.http_url}/admin/deny-key-creation",
        json={"project": "locked-project", "deny": False},
        timeout=5,
    )
    assert response.status_code == 200
    create_key(client, account)
    assert len(emulator.key_ids(account.email)) == 1


def test_fail_nth(emulator: IamEmulator, client: iam_admin_v1.IAMClient) -> None:
    account = new_account(emulator)
    # retry=None: the client retries UNAVAILABLE on Get* by default, which would hide the fault.
    emulator.fail_nth("GetServiceAccount", 2, "UNAVAILABLE", "injected outage")
    client.get_service_account(name=account.name, retry=None)
    with pytest.raises(gexc.ServiceUnavailable, match="injected outage"):
        client.get_service_account(name=account.name, retry=None)
    client.get_service_account(name=account.name, retry=None)  # fails once only

    # Over HTTP, with when="after": the key is created but the response is lost.
    response = requests.post(
        f"{emulator.http_url}/admin/fail",
        json={
            "method": "CreateServiceAccountKey",
            "nth": 1,
            "code": "DEADLINE_EXCEEDED",
            "when": "after",
        },
        timeout=5,
    )
    assert response.status_code == 200
    with pytest.raises(gexc.DeadlineExceeded):
        client.create_service_account_key(name=account.name)
    assert len(emulator.key_ids(account.email)) == 1

    bad = requests.post(
        f"{emulator.http_url}/admin/fail", json={"method": "NoSuchMethod"}, timeout=5
    )
    assert bad.status_code == 400


def test_stats_count_calls(emulator: IamEmulator, client: iam_admin_v1.IAMClient) -> None:
    account = new_account(emulator)
    emulator.reset_stats()
    client.get_service_account(name=account.name)
    client.list_service_account_keys(name=account.name)
    client.create_service_account_key(name=account.name)
    with pytest.raises(gexc.NotFound):
        client.get_service_account(
            name="projects/-/serviceAccounts/missing-one@x.iam.gserviceaccount.com"
        )

    stats = emulator.stats()
    assert stats["calls"] == {
        "GetServiceAccount": 2,
        "ListServiceAccountKeys": 1,
        "CreateServiceAccountKey": 1,
    }
    assert stats["mutating_calls"] == 1
    assert requests.get(f"{emulator.http_url}/admin/stats", timeout=5).json() == stats

    assert requests.post(f"{emulator.http_url}/admin/reset-stats", timeout=5).status_code == 200
    assert emulator.stats()["calls"] == {}


def test_uploaded_key_can_sign(emulator: IamEmulator, client: iam_admin_v1.IAMClient) -> None:
    account = new_account(emulator)
    private_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "uploaded")])
    now = time.time()
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(private_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(dt.datetime.fromtimestamp(now - 60, dt.UTC))
        .not_valid_after(dt.datetime.fromtimestamp(now + 86400, dt.UTC))
        .sign(private_key, hashes.SHA256())
    )
    uploaded = client.upload_service_account_key(
        request={
            "name": account.name,
            "public_key_data": cert.public_bytes(serialization.Encoding.PEM),
        }
    )
    assert uploaded.key_origin == iam.ServiceAccountKeyOrigin.USER_PROVIDED
    assert uploaded.key_type == KeyType.USER_MANAGED
    key_id = uploaded.name.rsplit("/", 1)[1]
    info = {
        "type": "service_account",
        "private_key_id": key_id,
        "private_key": private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode(),
        "client_email": account.email,
        "token_uri": emulator.token_uri,
    }
    assert whoami(emulator, refreshed(info).token).json()["key_id"] == key_id
    with pytest.raises(gexc.InvalidArgument):
        client.upload_service_account_key(
            request={"name": account.name, "public_key_data": b"not a cert"}
        )


def test_token_endpoint_checks_claims(
    emulator: IamEmulator, client: iam_admin_v1.IAMClient
) -> None:
    account = new_account(emulator)
    _, info = create_key(client, account)
    signer = crypt.RSASigner.from_service_account_info(info)
    now = int(time.time())

    def grant(**claims: Any) -> requests.Response:
        payload = {
            "iss": account.email,
            "aud": GOOGLE_TOKEN_AUDIENCE,
            "iat": now,
            "exp": now + 3600,
            "scope": "x",
        }
        payload.update(claims)
        assertion = gjwt.encode(signer, payload).decode()
        return requests.post(
            emulator.token_uri,
            data={"grant_type": JWT_BEARER_GRANT, "assertion": assertion},
            timeout=5,
        )

    ok = grant()
    assert ok.status_code == 200
    assert ok.json()["token_type"] == "Bearer" and ok.json()["expires_in"] == 3600
    assert grant(aud=emulator.token_uri).status_code == 200

    bad_aud = grant(aud="https://example.com/token")
    assert bad_aud.status_code == 400 and bad_aud.json()["error"] == "invalid_grant"
    assert "audience" in bad_aud.json()["error_description"]
    assert "short-lived" in grant(iat=now - 7200, exp=now - 3600).json()["error_description"]
    assert "short-lived" in grant(exp=now + 7200).json()["error_description"]
    other = new_account(emulator)
    assert grant(iss=other.email).json()["error_description"] == "Invalid JWT Signature."

    wrong_grant = requests.post(
        emulator.token_uri, data={"grant_type": "password", "assertion": "x"}, timeout=5
    )
    assert (
        wrong_grant.status_code == 400 and wrong_grant.json()["error"] == "unsupported_grant_type"
    )


def test_module_entry_point_prints_addresses() -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.stack.iam"],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        addresses = json.loads(process.stdout.readline())
        assert re.fullmatch(r"127\.0\.0\.1:\d+", addresses["grpc"])
        response = requests.post(
            f"{addresses['http']}/admin/service-accounts",
            json={"project": "proc-project", "account_id": "from-http"},
            timeout=5,
        )
        assert response.json()["email"] == "from-http@proc-project.iam.gserviceaccount.com"
        channel = grpc.insecure_channel(addresses["grpc"])
        remote = iam_admin_v1.IAMClient(transport=IAMGrpcTransport(channel=channel))
        assert remote.get_service_account(
            name=f"projects/-/serviceAccounts/{response.json()['email']}"
        ).email
        channel.close()
        assert requests.get(f"{addresses['http']}/admin/stats", timeout=5).json()["calls"] == {
            "GetServiceAccount": 1
        }
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0


def test_the_key_pool_hands_out_working_distinct_keys_and_never_waits() -> None:
    """keypool.py: keys made ahead by the niced process are real RSA-2048 keys, each different;
    an empty pool answers None at once (the emulator then makes the key itself)."""
    import time

    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding

    from tests.stack.iam.keypool import KeyPool

    assert KeyPool(enabled=False).take() is None
    pool = KeyPool(niceness=0)  # at nice 19 a busy machine (the suite) could starve it here
    pool.start()
    try:
        keys = []
        deadline = time.monotonic() + 60
        while len(keys) < 3 and time.monotonic() < deadline:
            started = time.monotonic()
            key = pool.take()
            assert time.monotonic() - started < 0.5  # never waits for the maker
            if key is None:
                time.sleep(0.05)
                continue
            keys.append(key)
        assert len(keys) == 3 and pool.taken == 3
        numbers = {key.private_numbers().public_numbers.n for key in keys}
        assert len(numbers) == 3 and all(key.key_size == 2048 for key in keys)
        for key in keys:  # a signature made with each verifies with its public half
            signature = key.sign(b"x", padding.PKCS1v15(), hashes.SHA256())
            key.public_key().verify(signature, b"x", padding.PKCS1v15(), hashes.SHA256())
    finally:
        pool.stop()
    assert pool.take() is None
