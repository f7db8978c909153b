"""Helpers shared by tests: keys for the key guard, the IAM emulator through the real client."""

from __future__ import annotations

import ast
import base64
import bz2
import functools
import gzip
import io
import json
import lzma
import os
import tarfile
import urllib.parse
from typing import Any

import botocore.session
from botocore import xform_name

from gcpfargate.keymaterial.keyscan import CHUNK
from tests.conftest import ROOT


def iam_client(stack: Any) -> Any:
    import grpc
    from google.cloud import iam_admin_v1
    from google.cloud.iam_admin_v1.services.iam.transports import IAMGrpcTransport

    channel = grpc.insecure_channel(stack.emulator.grpc_address)
    return iam_admin_v1.IAMClient(transport=IAMGrpcTransport(channel=channel))


def create_keys(stack: Any, email: str, count: int) -> list[str]:
    client = iam_client(stack)
    names = []
    for _ in range(count):
        key = client.create_service_account_key(name=f"projects/-/serviceAccounts/{email}")
        names.append(key.name.rsplit("/", 1)[-1])
    return names


# The PEM markers are assembled at run time so no committed file holds key-looking text.
BEGIN = b"-----BEGIN " + b"PRIVATE KEY-----"


END = b"-----END " + b"PRIVATE KEY-----"


@functools.cache
def pem() -> str:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


@functools.cache
def der_keys() -> dict[str, bytes]:
    """DER private keys of each kind the guard knows, and the armourless PEM body of each."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ec_key = ec.generate_private_key(ec.SECP256R1())
    ed_key = ed25519.Ed25519PrivateKey.generate()
    der, none = serialization.Encoding.DER, serialization.NoEncryption()
    pkcs8, traditional = (
        serialization.PrivateFormat.PKCS8,
        serialization.PrivateFormat.TraditionalOpenSSL,
    )
    return {
        "RSA PKCS#8": rsa_key.private_bytes(der, pkcs8, none),
        "RSA PKCS#1": rsa_key.private_bytes(der, traditional, none),
        "EC PKCS#8": ec_key.private_bytes(der, pkcs8, none),
        "EC SEC1": ec_key.private_bytes(der, traditional, none),
        "Ed25519 PKCS#8": ed_key.private_bytes(der, pkcs8, none),
        "OpenSSH": base64.b64decode(
            b"".join(
                ed_key.private_bytes(
                    serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, none
                ).splitlines()[1:-1]
            )
        ),
    }


def armourless(pem_text: str) -> bytes:
    """A PEM key's body as someone copies it: the lines between BEGIN and END, nothing else."""
    return "\n".join(pem_text.strip().splitlines()[1:-1]).encode() + b"\n"


def key_json() -> bytes:
    return json.dumps(
        {
            "type": "service_account",
            "project_id": "p",
            "private_key_id": "abc",
            "private_key": pem(),
            "client_email": "a@p.iam.gserviceaccount.com",
            "token_uri": "https://oauth2.googleapis.com/token",
        },
        indent=2,
    ).encode()


def jinja_urlencode(text: str) -> str:
    from jinja2 import Environment

    return Environment().from_string("{{ v | urlencode }}").render(v=text)


def tar_of(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for name, content in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            archive.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


def wrapped_b64(data: bytes, width: int = 76) -> bytes:
    text = base64.b64encode(data)
    return b"\n".join(text[i : i + width] for i in range(0, len(text), width)) + b"\n"


# Each evasion named in the issue, plus a few more wrappings the same rules see through.
EVASIONS: dict[str, bytes] = {
    "bare PEM file": pem().encode(),
    "key JSON": key_json(),
    "gzip": gzip.compress(key_json()),
    "base64 (one line)": base64.b64encode(key_json()),
    "base64 (wrapped at 76)": wrapped_b64(key_json()),
    "base64 of gzip": base64.b64encode(gzip.compress(key_json())),
    "tar": tar_of({"a/readme.txt": b"hello\n", "a/sa.json": key_json()}),
    "tar.gz": gzip.compress(tar_of({"sa.json": key_json()})),
    "tar of a gzip": tar_of({"sa.json.gz": gzip.compress(key_json())}),
    "JSON padded past 1 MiB": b'{"padding": "' + b" " * (CHUNK + 5) + b'", ' + key_json()[1:],
    "key after 3 MiB of zeros": b"\0" * (3 * CHUNK) + key_json(),
    "[ {key} ]": b"[ " + key_json() + b" ]",
    "two keys concatenated": key_json() + key_json(),
    "UTF-16 (BOM)": key_json().decode().encode("utf-16"),
    "UTF-16-BE": key_json().decode().encode("utf-16-be"),
    "UTF-32": key_json().decode().encode("utf-32"),
    "bzip2": bz2.compress(key_json()),
    "xz": lzma.compress(key_json()),
    "base64 inside a .env": b"APP=1\nGCP_KEY=" + base64.b64encode(key_json()) + b"\nOTHER=2\n",
    "PEM in a shell script": b"#!/bin/sh\ncat > /k <<EOF\n" + pem().encode() + b"EOF\n",
    "PEM without its END line": pem().encode()[:900],
    "PEM folded to 50 columns": b"\n".join(
        [BEGIN]
        + [
            line
            for body in ["".join(pem().splitlines()[1:-1])]
            for line in (body[i : i + 50].encode() for i in range(0, len(body), 50))
        ]
        + [END]
    ),
    "base64 text, then a plain PEM": b"QUJD" * 1200 + b"\n" + pem().encode(),
    # The body of a PEM key without its armour lines (a DER key in base64), alone or in text.
    "PEM body without its armour lines": armourless(pem()),
    "PEM body on one line in a .env": b"APP=1\nGCP_KEY="
    + b"".join(armourless(pem()).split())
    + b"\nOTHER=2\n",
    "PEM body as a JSON value": b'{"key": "' + b"".join(armourless(pem()).split()) + b'"}',
    **{f"DER {kind} (raw)": der for kind, der in der_keys().items()},
    **{f"DER {kind} (base64)": wrapped_b64(der, 64) for kind, der in der_keys().items()},
    **{
        f"DER {kind} (base64 in a .env)": b"A=1\nK=" + base64.b64encode(der) + b"\n"
        for kind, der in der_keys().items()
    },
    # URL-encoded key JSON: Jinja's urlencode, a form post (+ for spaces), twice.
    "URL-encoded key JSON": urllib.parse.quote(key_json()).encode(),
    "form-encoded key JSON": b"a=1&key=" + urllib.parse.quote_plus(key_json()).encode(),
    "URL-encoded twice": urllib.parse.quote(urllib.parse.quote(key_json())).encode(),
    "Jinja urlencode of key JSON": jinja_urlencode(key_json().decode()).encode(),
    "URL-encoded PEM in a query": b"https://x.example/?k="
    + urllib.parse.quote(pem(), safe="").encode(),
    # Hex: of the key JSON, of a PEM, of DER keys, upper case, `xxd -p` lines.
    "hex of key JSON": key_json().hex().encode(),
    "HEX of key JSON": key_json().hex().upper().encode(),
    "hex of a PEM in xxd -p lines": b"\n".join(
        pem().encode().hex().encode()[i : i + 60] for i in range(0, 2 * len(pem()), 60)
    ),
    "hex of a PEM inside text": b"key: " + pem().encode().hex().encode() + b"\nend\n",
    **{
        f"DER {kind} (hex)": der.hex().encode()
        for kind, der in der_keys().items()
        if kind != "OpenSSH"  # not seen: hex of OpenSSH's binary form
    },
    "DER RSA PKCS#8 (xxd -p)": b"\n".join(
        der_keys()["RSA PKCS#8"].hex().encode()[i : i + 60]
        for i in range(0, 2 * len(der_keys()["RSA PKCS#8"]), 60)
    ),
}


# What google-github-actions/auth writes (its token-request bearer token in the headers), and the
# files `gcloud auth application-default login` and impersonated ADC write. Token values are made
# up at run time.
TOKEN = "tok-" + os.urandom(8).hex()


GHA_CREDS = {
    "type": "external_account",
    "audience": (
        "//iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/p/providers/gh"
    ),
    "subject_token_type": "urn:ietf:params:oauth:token-type:jwt",
    "token_url": "https://sts.googleapis.com/v1/token",
    "credential_source": {
        "url": "https://pipelines.actions.githubusercontent.com/x/idtoken?audience=y",
        "headers": {"Authorization": f"Bearer {TOKEN}"},
        "format": {"type": "json", "subject_token_field_name": "value"},
    },
}


AUTHORIZED_USER = {
    "type": "authorized_user",
    "client_id": "c.apps.googleusercontent.com",
    "client_secret": TOKEN,
    "refresh_token": TOKEN,
}


IMPERSONATED = {
    "type": "impersonated_service_account",
    "service_account_impersonation_url": "https://iamcredentials.googleapis.com/v1/x:generateAccessToken",
    "source_credentials": AUTHORIZED_USER,
}


# Needed, but not as a literal call in the source:
IMPLIED = {
    # ecs/schedule.py chooses CreateSchedule or UpdateSchedule at run time.
    "scheduler:CreateSchedule",
    "scheduler:UpdateSchedule",
    # CreateRole and CreateScheduleGroup are called with Tags, which IAM authorises separately.
    "iam:TagRole",
    "scheduler:TagResource",
    # The run history's log group, its rule and the alert topic are created with tags
    # (ecs/history.py, ecs/alerts.py), which Logs, EventBridge and SNS authorise separately.
    "logs:TagResource",
    "events:TagResource",
    "sns:TagResource",
    # RegisterTaskDefinition, RunTask, UpdateService and CreateSchedule hand roles to ECS/Scheduler.
    "iam:PassRole",
    # The Docker engine's push and pull speak the registry protocol, which ECR authorises so.
    "ecr:BatchCheckLayerAvailability",
    "ecr:BatchGetImage",
    "ecr:CompleteLayerUpload",
    "ecr:DescribeImages",
    "ecr:GetDownloadUrlForLayer",
    "ecr:InitiateLayerUpload",
    "ecr:PutImage",
    "ecr:UploadLayerPart",
}


def called_operations() -> dict[str, set[str]]:
    """IAM action -> the source files that call it."""
    session = botocore.session.get_session()
    found: dict[str, set[str]] = {}
    for path in sorted((ROOT / "gcpfargate").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if not (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr in METHODS
                and len(node.args) >= 2
                and all(
                    isinstance(arg, ast.Constant) and isinstance(arg.value, str)
                    for arg in node.args[:2]
                )
            ):
                continue
            service, operation = (arg.value for arg in node.args[:2])  # type: ignore[attr-defined]
            model = session.get_service_model(service)
            names = {xform_name(name): name for name in model.operation_names}
            prefix = model.metadata.get("signingName", service)
            action = f"{prefix}:{names[operation]}"
            found.setdefault(action, set()).add(str(path.relative_to(ROOT)))
    return found


METHODS = {"call", "find", "paginate", "read_ahead", "paginate_ahead"}


def fake_key() -> bytes:
    pem = "-----BEGIN " + "PRIVATE KEY-----\nMIIfake\n-----END " + "PRIVATE KEY-----\n"
    return json.dumps(
        {
            "type": "service_account",
            "private_key": pem,
            "private_key_id": "k",
            "client_email": "a@p.iam.gserviceaccount.com",
        }
    ).encode()
