"""Service-account key files: parsing, recognising and redacting, without ever exposing the key.

`KeyMaterial` is the only object that holds a key's JSON in memory. Its `repr`/`str` show the key
id and account only, so a key cannot reach a log line or an exception message by accident.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

from gcpfargate.errors import NotAKeyError

_PEM_BLOCK = re.compile(
    r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?(-----END [A-Z ]*PRIVATE KEY-----|$)", re.S
)
# The same block inside a JSON string, where newlines are the two characters backslash and n.
_PEM_ESCAPED = re.compile(
    r"-----BEGIN [A-Z ]*PRIVATE KEY-----(\\n|[A-Za-z0-9+/=\\ ])*(-----END [A-Z ]*"
    r"PRIVATE KEY-----)?"
)
_PRIVATE_KEY_FIELD = re.compile(r'("private_key"\s*:\s*)"(?:[^"\\]|\\.)*"')
# Long base64 runs (a DER key body, or the base64 of a whole key file) are never useful in a log.
_LONG_BASE64 = re.compile(r"[A-Za-z0-9+/]{200,}={0,2}")
# One line of a PEM body (64 base64 characters), as a line-by-line log stream would show it.
_PEM_BODY_LINE = re.compile(r"^[A-Za-z0-9+/]{60,76}={0,2}$", re.M)
REDACTED = "[REDACTED]"


def redact(text: str) -> str:
    """Remove anything that looks like private key material from text meant for a human."""
    text = _PRIVATE_KEY_FIELD.sub(r'\1"' + REDACTED + '"', text)
    # The real-newline form first: the escaped pattern would otherwise eat only its header line.
    text = _PEM_BLOCK.sub(REDACTED, text)
    text = _PEM_ESCAPED.sub(REDACTED, text)
    text = _PEM_BODY_LINE.sub(REDACTED, text)
    return _LONG_BASE64.sub(REDACTED, text)


@dataclass(frozen=True)
class KeyMaterial:
    """A service-account key file held in memory. Never printed: see `__repr__`."""

    data: bytes = field(repr=False)
    key_id: str
    client_email: str
    project_id: str
    token_uri: str

    @classmethod
    def parse(cls, data: bytes | str) -> KeyMaterial:
        raw = data.encode("utf-8") if isinstance(data, str) else bytes(data)
        try:
            info = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            raise NotAKeyError("it is not JSON") from None
        if not isinstance(info, dict) or info.get("type") != "service_account":
            raise NotAKeyError(
                'it is JSON but not a service-account key (no "type": "service_account")'
            )
        missing = [
            name for name in ("private_key", "private_key_id", "client_email") if not info.get(name)
        ]
        if missing:
            raise NotAKeyError(f"the key file lacks {', '.join(missing)}")
        return cls(
            data=raw,
            key_id=str(info["private_key_id"]),
            client_email=str(info["client_email"]),
            project_id=str(info.get("project_id", "")),
            token_uri=str(info.get("token_uri", "https://oauth2.googleapis.com/token")),
        )

    def text(self) -> str:
        return self.data.decode("utf-8")

    def info(self) -> dict[str, object]:
        info: dict[str, object] = json.loads(self.data)  # `parse` checked it is a JSON object
        return info

    def __repr__(self) -> str:
        return f"KeyMaterial(key_id={self.key_id!r}, client_email={self.client_email!r})"

    __str__ = __repr__


def looks_like_key(data: bytes) -> bool:
    """True for JSON with "type": "service_account" and a private_key: the push-image guard's
    test."""
    if b"service_account" not in data or b"private_key" not in data:
        return False  # cheap pre-filter: most files are neither
    try:
        info = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        return False
    return (
        isinstance(info, dict)
        and info.get("type") == "service_account"
        and bool(info.get("private_key"))
    )


# Google credential files that grant access without a private key: a user's refresh token
# (`gcloud auth application-default login`), a workforce user's, an impersonation chain's source
# credentials, and workload identity federation configurations, which can carry the CI's bearer
# token (google-github-actions/auth writes one, `gha-creds-*.json`, into the workspace).
CREDENTIAL_TYPES = frozenset(
    {
        "authorized_user",
        "external_account",
        "external_account_authorized_user",
        "impersonated_service_account",
    }
)


def looks_like_credentials(data: bytes) -> bool:
    """True for JSON whose "type" is one of CREDENTIAL_TYPES: a credential file for Google's
    Application Default Credentials other than a service-account key."""
    if b'"type"' not in data or not any(kind.encode() in data for kind in CREDENTIAL_TYPES):
        return False  # cheap pre-filter: most files are neither
    try:
        info = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        return False
    return isinstance(info, dict) and info.get("type") in CREDENTIAL_TYPES
