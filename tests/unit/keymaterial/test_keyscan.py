"""The key guard's rules (gcpfargate/keymaterial/keyscan.py): every evasion of issue 13 item 10 is
caught, and ordinary files (code that names the PEM markers, binaries, text) are not flagged."""

from __future__ import annotations

import base64
import gzip
import io
import json
import os
import urllib.parse

import pytest

from gcpfargate.keymaterial.keyscan import has_key, key_paths, stream_has_key, text_has_pem
from tests.unit.helpers import BEGIN, END, EVASIONS, key_json, pem, tar_of, wrapped_b64


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
    is judged only by a service-account key's JSON form, which a program embedding a key file
    has."""
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
