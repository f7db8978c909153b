"""The key guard's rules (gcpfargate/keymaterial/keyscan.py): every evasion of issue 13 item 10 is caught, and
ordinary files (code that names the PEM markers, binaries, text) are not flagged."""

from __future__ import annotations

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

import pytest

from gcpfargate.keymaterial.keyscan import CHUNK, has_key, key_paths, stream_has_key, text_has_pem

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


@pytest.mark.parametrize("name", sorted(EVASIONS))
def test_every_evasion_is_caught(name: str) -> None:
    assert has_key(EVASIONS[name]), name


def test_evasions_are_caught_through_a_stream_read_in_small_pieces() -> None:
    class Trickle(io.RawIOBase):
        def __init__(self, data: bytes) -> None:
            self.data = data

        def readable(self) -> bool:
            return True

        def readinto(self, target: bytearray) -> int:  # at most 1000 bytes at a time, like a socket
            size = min(len(target), 1000, len(self.data))
            target[:size], self.data = self.data[:size], self.data[size:]
            return size

    for name, data in EVASIONS.items():
        assert stream_has_key(Trickle(data)), name


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b'{"type": "authorized_user", "client_id": "x"}',
        b'if line.startswith("' + BEGIN + b'"):\n    parse(line)  # "' + END + b'"\n',
        BEGIN + b"\n...\n" + END + b"\n",  # documentation
        b"-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIU\n-----END CERTIFICATE-----\n",
        b"\x7fELF" + bytes(range(256)) * 50,
        b"hello world " * 20000,
        base64.b64encode(os.urandom(300_000)),
        gzip.compress(b"just text\n" * 1000),
        tar_of({"a.txt": b"hello", "b.json": b'{"a": 1}'}),
    ],
    ids=[
        "empty",
        "authorized-user JSON",
        "code naming the markers",
        "documentation",
        "certificate",
        "ELF",
        "long text",
        "random base64",
        "gzip",
        "tar",
    ],
)  # named ids: the same on every xdist worker
def test_ordinary_files_are_not_flagged(data: bytes) -> None:
    assert not has_key(data)


def test_a_key_in_a_json_string_with_escaped_newlines_is_a_pem() -> None:
    assert text_has_pem(json.dumps(pem()).encode())
    assert text_has_pem(b'"' + BEGIN + b"\\nMIIfake\\n" + END + b'\\n"')


def test_key_paths_finds_strings_at_any_depth_and_never_names_the_key() -> None:
    key = key_json().decode()
    definition = {
        "family": "app",
        "containerDefinitions": [
            {
                "name": "app",
                "command": ["run", key],
                "entryPoint": ["/bin/sh"],
                "dockerLabels": {"k": base64.b64encode(key_json()).decode()},
                "logConfiguration": {"logDriver": "awslogs", "options": {"x": pem()}},
                "environment": [{"name": "A", "value": "plain"}],
            }
        ],
        "tags": [{"key": "deep", "value": [[[[["nested", pem()]]]]]}],
        pem(): "a key as an object key",
    }
    found = key_paths(definition)
    assert found == sorted(
        [
            "containerDefinitions[0].command[1]",
            "containerDefinitions[0].dockerLabels.k",
            "containerDefinitions[0].logConfiguration.options.x",
            "tags[0].value[0][0][0][0][1]",
            "<a key>",
        ]
    )
    assert key_paths({"a": ["b", {"c": "d"}]}) == []


def test_compiled_libraries_with_their_own_test_keys_pass_but_an_embedded_key_file_does_not() -> (
    None
):
    """libgnutls (in most Debian images) carries a dozen PEM test keys for its self-tests: a library
    is judged only by a service-account key's JSON form, which a program embedding a key file has."""
    library = b"\x7fELF\x02\x01\x01" + b"\0" * 500 + pem().encode() + b"\0" * 500
    assert not has_key(library)
    assert not has_key(b"!<arch>\n" + b"\0" * 100 + pem().encode())
    assert has_key(b"\x7fELF\x02\x01\x01" + b"\0" * 500 + key_json() + b"\0" * 500)
    assert has_key(b"\x7fELF\x02\x01\x01" + b"\0" * 500 + json.dumps(key_json().decode()).encode())
    assert has_key(b"\0" * 500 + pem().encode())  # not a program: any PEM block counts


def ordinary_encoded() -> dict[str, bytes]:
    """Public material and everyday hex/URL text, in the encodings the guard now decodes."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(x509.oid.NameOID.COMMON_NAME, "example")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    cert_der = cert.public_bytes(serialization.Encoding.DER)
    public_der = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return {
        "certificate DER": cert_der,
        "certificate base64": wrapped_b64(cert_der, 64),
        "certificate hex": cert_der.hex().encode(),
        "public key base64": base64.b64encode(public_der),
        "public key hex": public_der.hex().encode(),
        "sha256 digests": b"\n".join(os.urandom(32).hex().encode() for _ in range(2000)),
        "random hex": os.urandom(200_000).hex().encode(),
        "URL-encoded text": urllib.parse.quote("a private key is never here: BEGIN KEY").encode(),
        "digits": b"".join(str(n).encode() for n in range(200_000)),
    }


@pytest.mark.parametrize(
    "name",
    [
        "certificate DER",
        "certificate base64",
        "certificate hex",
        "public key base64",
        "public key hex",
        "sha256 digests",
        "random hex",
        "URL-encoded text",
        "digits",
    ],
)
def test_public_material_and_ordinary_hex_or_url_text_is_not_flagged(name: str) -> None:
    assert not has_key(ordinary_encoded()[name]), name
