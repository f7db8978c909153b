"""redact() removes key material in every form a log line could carry it."""

from __future__ import annotations

import base64
import json
from types import SimpleNamespace

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from gcpfargate.keymaterial.keyfile import redact
from tests.reliability.leakscan import find_keys, needles


def _pem(fmt: serialization.PrivateFormat) -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(serialization.Encoding.PEM, fmt, serialization.NoEncryption()).decode()


def _body_lines(pem: str) -> list[str]:
    return [line for line in pem.splitlines() if line and not line.startswith("-----")]


def test_every_form_of_a_key_is_removed() -> None:
    for fmt in (serialization.PrivateFormat.PKCS8, serialization.PrivateFormat.TraditionalOpenSSL):
        pem = _pem(fmt)
        key_json = json.dumps({"type": "service_account", "private_key": pem})
        forms = [
            "boom: " + pem,  # a plain multi-line PEM in an error
            key_json,  # the key file
            json.dumps({"nested": key_json}),  # the key file as a JSON string
            base64.b64encode(key_json.encode()).decode(),  # base64 of the key file
        ]
        # The leak scanner's search (every body line, through base64/hex/URL decoding), not a
        # PEM-line search that base64 text can never match. Unredacted, every form is found: the
        # check can fail.
        lines = needles([SimpleNamespace(key_id="k", private_key_pem=pem)])
        for text in forms:
            assert find_keys(text.encode(), lines) == {"k"}, text[:40]
            cleaned = redact(text)
            assert find_keys(cleaned.encode(), lines) == set(), text[:40]
        # A log streamed line by line shows one body line at a time.
        for line in _body_lines(pem)[:-1]:
            assert redact(line) == "[REDACTED]"


def test_ordinary_text_is_left_alone() -> None:
    text = (
        "arn:aws:secretsmanager:ap-northeast-1:123456789012:secret:gcpfargate/runner-AbCdEf sha256:"
        + "a" * 64
    )
    assert redact(text) == text
