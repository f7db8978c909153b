"""Making key material the way Google hands it out: RSA keys, certificates, key files, P12.

The private half lives only in the frame that creates it (or, made ahead, in the pool's pipe:
keypool.py), in the CreateServiceAccountKey response and in the test-only record of minted keys
(state.MintedKey) that the leak scan reads.
"""

from __future__ import annotations

import datetime as dt
import json
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID
from google.cloud.iam_admin_v1.types import iam


@dataclass(frozen=True)
class IssuedKey:
    public_key: rsa.RSAPublicKey
    cert_pem: bytes
    private_key_pem: str
    private_key_data: bytes  # what the API returns: the key file JSON or a P12 archive


def self_signed_cert(
    private_key: rsa.RSAPrivateKey,
    common_name: str,
    not_before: dt.datetime,
    not_after: dt.datetime,
) -> bytes:
    """A self-signed X.509 PEM certificate, the form in which Google publishes key public halves."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(private_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .sign(private_key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM)


def issue(
    *,
    algorithm: iam.ServiceAccountKeyAlgorithm,
    output: iam.ServiceAccountPrivateKeyType,
    key_id: str,
    email: str,
    project: str,
    client_id: str,
    valid_after: dt.datetime,
    valid_before: dt.datetime,
    token_uri: str,
    http_url: str,
    ready_key: Callable[[], rsa.RSAPrivateKey | None] = lambda: None,
) -> IssuedKey:
    """Generate a user-managed key (slow: call it without holding the state lock). A 2048-bit key
    is `ready_key()`'s when it has one (made ahead in idle time: keypool.py)."""
    bits = 1024 if algorithm == iam.ServiceAccountKeyAlgorithm.KEY_ALG_RSA_1024 else 2048
    private_key = (ready_key() if bits == 2048 else None) or rsa.generate_private_key(
        public_exponent=65537, key_size=bits
    )
    cert_pem = self_signed_cert(private_key, email, valid_after, valid_before)
    private_key_pem = private_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    if output == iam.ServiceAccountPrivateKeyType.TYPE_PKCS12_FILE:
        # Google's P12 files use the fixed password "notasecret".
        data = pkcs12.serialize_key_and_certificates(
            b"privatekey",
            private_key,
            x509.load_pem_x509_certificate(cert_pem),
            None,
            serialization.BestAvailableEncryption(b"notasecret"),
        )
    else:
        data = _key_file_json(
            private_key_pem, key_id, email, project, client_id, token_uri, http_url
        )
    return IssuedKey(private_key.public_key(), cert_pem, private_key_pem, data)


def _key_file_json(
    private_key_pem: str,
    key_id: str,
    email: str,
    project: str,
    client_id: str,
    token_uri: str,
    http_url: str,
) -> bytes:
    # Field order and formatting follow the key files Google hands out; `token_uri` points at the
    # emulator so google-auth can use the key end to end.
    info = {
        "type": "service_account",
        "project_id": project,
        "private_key_id": key_id,
        "private_key": private_key_pem,
        "client_email": email,
        "client_id": client_id,
        "auth_uri": "https://accounts.google.com/o/oauth2/auth",
        "token_uri": token_uri,
        "auth_provider_x509_cert_url": "https://www.googleapis.com/oauth2/v1/certs",
        "client_x509_cert_url": f"{http_url}/robot/v1/metadata/x509/"
        + urllib.parse.quote(email, safe=""),
        "universe_domain": "googleapis.com",
    }
    return (json.dumps(info, indent=2) + "\n").encode()
