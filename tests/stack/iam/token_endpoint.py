"""Google's OAuth2 token endpoint (RFC 7523 JWT-bearer grant) and the access tokens it mints.

google-auth's service-account credentials sign a JWT with the key file's private key and POST it
here; the emulator verifies it with the public half it kept (real RS256 verification), applies
Google's claim rules and the knobs (propagation delay, expiry), and mints an access token that
the tiny emulated API (`GET /v1/whoami`) accepts while the key stays live.
"""

from __future__ import annotations

import base64
import binascii
import json
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding

from tests.stack.iam.errors import (
    OAUTH_ACCOUNT_NOT_FOUND,
    OAUTH_BAD_AUDIENCE,
    OAUTH_BAD_SIGNATURE,
    OAUTH_BAD_TIMES,
)
from tests.stack.iam.faults import Knobs
from tests.stack.iam.state import IamState, Key, KeyType

# google-auth always puts Google's token endpoint in the assertion's `aud`, whatever `token_uri`
# the key file names (google/oauth2/service_account.py `_make_authorization_grant_assertion`),
# so /token must accept that audience as well as its own URL.
GOOGLE_TOKEN_AUDIENCE = "https://oauth2.googleapis.com/token"
JWT_BEARER_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
ACCESS_TOKEN_LIFETIME_S = 3600
# Google rejects assertions living longer than an hour; allow a little clock skew either way.
MAX_ASSERTION_LIFETIME_S = 3600
CLOCK_SKEW_S = 300


# key_id of access tokens minted by generateAccessToken (keyless mode): no key signed for them.
IMPERSONATED = ""


@dataclass
class AccessToken:
    email: str
    key_id: str
    expires_at: float


class GrantRefused(Exception):
    def __init__(self, description: str) -> None:
        super().__init__(description)
        self.description = description


def _b64url_decode(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def _rs256_valid(key: Key, signing_input: bytes, signature: bytes) -> bool:
    assert key.public_key is not None
    try:
        key.public_key.verify(signature, signing_input, padding.PKCS1v15(), hashes.SHA256())
    except InvalidSignature:
        return False
    return True


def _live(key: Key) -> bool:
    return (
        key.key_type == KeyType.USER_MANAGED
        and not key.deleted
        and not key.disabled
        and key.public_key is not None
    )


class TokenEndpoint:
    def __init__(self, state: IamState, knobs: Knobs, token_uri: Callable[[], str]) -> None:
        self.state = state
        self.knobs = knobs
        self._token_uri = token_uri
        self.tokens: dict[str, AccessToken] = {}  # guarded by state.lock

    def exchange(self, grant_type: str, assertion: str) -> tuple[int, dict[str, Any]]:
        """POST /token -> (HTTP status, JSON body)."""
        if grant_type != JWT_BEARER_GRANT:
            with self.state.lock:
                self.state.counters.rejected_grants += 1
            return 400, {
                "error": "unsupported_grant_type",
                "error_description": f"Invalid grant_type: {grant_type}",
            }
        try:
            with self.state.lock:
                refusal = self.knobs.take_grant_refusal()
                if refusal is not None:
                    raise GrantRefused(refusal)
            email, key_id = self._verify(assertion)
        except GrantRefused as refused:
            with self.state.lock:
                self.state.counters.rejected_grants += 1
            return 400, {"error": "invalid_grant", "error_description": refused.description}
        token = "ya29.emulated-" + secrets.token_urlsafe(32)
        with self.state.lock:
            self.tokens[token] = AccessToken(email, key_id, time.time() + ACCESS_TOKEN_LIFETIME_S)
            self.state.counters.tokens_issued += 1
        return 200, {
            "access_token": token,
            "expires_in": ACCESS_TOKEN_LIFETIME_S,
            "token_type": "Bearer",
        }

    def _verify(self, assertion: str) -> tuple[str, str]:
        try:
            header_b64, payload_b64, signature_b64 = assertion.split(".")
            header = json.loads(_b64url_decode(header_b64))
            payload = json.loads(_b64url_decode(payload_b64))
            signature = _b64url_decode(signature_b64)
        except (ValueError, binascii.Error):
            raise GrantRefused(OAUTH_BAD_SIGNATURE) from None
        if (
            not isinstance(header, dict)
            or not isinstance(payload, dict)
            or header.get("alg") != "RS256"
        ):
            raise GrantRefused(OAUTH_BAD_SIGNATURE)
        issuer, kid = payload.get("iss"), header.get("kid")
        signing_input = f"{header_b64}.{payload_b64}".encode()

        with self.state.lock:
            account = self.state.accounts.get(issuer) if isinstance(issuer, str) else None
            if account is None:
                raise GrantRefused(OAUTH_ACCOUNT_NOT_FOUND)
            # Only live keys of the issuing account can sign; without `kid` try them all.
            candidates = [
                self.state.keys[key_id]
                for key_id in account.key_ids
                if (kid is None or key_id == kid) and _live(self.state.keys[key_id])
            ]
            account_disabled, email = account.disabled, account.email
        verified = next((k for k in candidates if _rs256_valid(k, signing_input, signature)), None)
        if verified is None:
            raise GrantRefused(OAUTH_BAD_SIGNATURE)
        now = time.time()
        with self.state.lock:
            # A key Google has not propagated yet is unknown to the token service, so the answer
            # is the unknown-key one (see faults.Propagation).
            if verified.usable_after > now:
                raise GrantRefused(OAUTH_BAD_SIGNATURE)
            if verified.refusals_left > 0:
                verified.refusals_left -= 1
                raise GrantRefused(OAUTH_BAD_SIGNATURE)
        if account_disabled:
            raise GrantRefused(OAUTH_ACCOUNT_NOT_FOUND)
        if payload.get("aud") not in (self._token_uri(), GOOGLE_TOKEN_AUDIENCE):
            raise GrantRefused(OAUTH_BAD_AUDIENCE)
        issued_at, expires_at = payload.get("iat"), payload.get("exp")
        if (
            not isinstance(issued_at, int | float)
            or not isinstance(expires_at, int | float)
            or issued_at > now + CLOCK_SKEW_S
            or expires_at < now - CLOCK_SKEW_S
            or expires_at <= issued_at
            or expires_at - issued_at > MAX_ASSERTION_LIFETIME_S
        ):
            raise GrantRefused(OAUTH_BAD_TIMES)
        # Outside valid_after..valid_before (e.g. expired under iam.serviceAccountKeyExpiryHours)
        # the key no longer signs for the account.
        if now < verified.valid_after.timestamp() - CLOCK_SKEW_S or verified.expired(now):
            raise GrantRefused(OAUTH_BAD_SIGNATURE)
        return email, verified.key_id

    def authenticate(self, authorization: str | None) -> dict[str, str] | None:
        """Check a `Bearer` header; the token's key must still be live. Counts the outcome."""
        with self.state.lock:
            identity = self._identity_for(authorization)
            if identity is None:
                self.state.counters.rejected_access_tokens += 1
                return None
            self.state.counters.authenticated_calls += 1
            if identity["key_id"] != IMPERSONATED:
                self.state.counters.authenticated_by_key[identity["key_id"]] += 1
            return identity

    def _identity_for(self, authorization: str | None) -> dict[str, str] | None:
        if not authorization or not authorization.startswith("Bearer "):
            return None
        issued = self.tokens.get(authorization[len("Bearer ") :].strip())
        now = time.time()
        if issued is None or issued.expires_at < now:
            return None
        account = self.state.accounts.get(issued.email)
        if issued.key_id == IMPERSONATED:  # from generateAccessToken: no key behind it
            if account is None or account.disabled:
                return None
            return {"email": issued.email, "key_id": IMPERSONATED}
        key = self.state.keys.get(issued.key_id)
        # Revocation is immediate here (stricter than Google, which may honour a token until it
        # expires) so tests can assert that a disabled, deleted or expired key is really dead.
        if key is None or not _live(key) or key.expired(now) or account is None or account.disabled:
            return None
        return {"email": issued.email, "key_id": issued.key_id}

    def public_certificates(self, email: str) -> dict[str, str] | None:
        """Google's x509 metadata document: key id -> PEM certificate of every published key."""
        now = time.time()
        with self.state.lock:
            account = self.state.accounts.get(email)
            if account is None:
                return None
            keys = (self.state.keys[key_id] for key_id in account.key_ids)
            return {
                key.key_id: self.state.certificate(key).decode()
                for key in keys
                if not key.deleted and not key.disabled and key.usable_after <= now
            }
