"""Google's Security Token Service: `POST /v1/token`, the token exchange for AWS subject tokens.

google-auth's AWS credentials (google/auth/aws.py) send an `aws4_request` subject token: the URL-
quoted JSON of a SigV4-signed STS GetCallerIdentity request (url, method, headers), with
`x-goog-cloud-target-resource` added AFTER signing and therefore not among the signed headers.
Google replays that request to AWS and trusts the ARN AWS answers
(https://cloud.google.com/iam/docs/workload-identity-federation-with-other-clouds). Checks kept,
in order: grant and token types; the audience names an ACTIVE, enabled provider; the token is a
GetCallerIdentity request to an AWS STS host; `x-goog-cloud-target-resource` equals the audience;
the credential scope is DATE/REGION/sts/aws4_request for the URL's region and the request's date;
x-amz-date within 15 minutes (SigV4's validity window, enforced by AWS); the replay to AWS (here
moto, at the stack's AWS_ENDPOINT_URL) succeeds and names a known principal (moto answers
`user/moto` for keys it never issued: refused as AWS refuses an unknown key); the ARN's account is
the provider's `aws.accountId`; the attribute mapping and condition (CEL); the mapped
google.subject within 127 bytes. Then a federated token. moto does not verify SigV4 signatures, so a
forged signature is not caught here.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import secrets
import time
import urllib.error
import urllib.parse
import urllib.request
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tests.stack.iam import cel_oracle
from tests.stack.iam.service_usage import service_disabled

if TYPE_CHECKING:
    from tests.stack.iam.keyless import Keyless

TOKEN_EXCHANGE_GRANT = "urn:ietf:params:oauth:grant-type:token-exchange"
ACCESS_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token"
AWS_SUBJECT_TOKEN_TYPE = "urn:ietf:params:aws:token-type:aws4_request"
SIGV4_WINDOW = dt.timedelta(minutes=15)

# google-github-actions/auth#202 (quoting sts.googleapis.com).
MSG_INVALID_TARGET = (
    'The target service indicated by the "audience" parameters is invalid. This might either be '
    "because the pool or provider is disabled or deleted or because it doesn't exist."
)
# terraform-google-modules/terraform-example-foundation#1362 (error "unauthorized_client").
MSG_CONDITION_REJECTED = "The given credential is rejected by the attribute condition."
# googleapis/google-api-python-client#1136: a subject token that is not the expected JSON.
MSG_BAD_FORMAT = "Invalid format of AWS credentials."
# AWS's own answers to the replayed request (aws-sdk issues quote both): a stale signature, an
# unknown access key (InvalidClientTokenId).
MSG_STALE = "Signature expired: {signed} is now earlier than {limit} ({now} - 15 min.)"
MSG_UNKNOWN_KEY = "The security token included in the request is invalid."
# Illustrative (no public quote found): the shapes of Google's other invalid_grant answers.
MSG_NOT_GET_CALLER_IDENTITY = "The subject token is not a signed AWS STS GetCallerIdentity request."
MSG_TARGET_MISMATCH = "The x-goog-cloud-target-resource header does not match the audience."
MSG_BAD_SCOPE = (
    "The AWS request's credential scope {scope!r} does not match its region, date or service."
)
MSG_WRONG_ACCOUNT = (
    "The AWS account {account} is not the account {expected} configured in the provider."
)
MSG_NO_SUBJECT = "The mapped google.subject is empty."
# Google's "Troubleshoot Workload Identity Federation" page quotes this answer (error
# "invalid_request"); the limit is on the mapped value's UTF-8 bytes.
SUBJECT_MAX_BYTES = 127
MSG_SUBJECT_TOO_LONG = (
    "The size of mapped attribute google.subject exceeds the 127 bytes limit. Either modify your "
    "attribute mapping or the incoming assertion to produce a mapped attribute that is less than "
    "127 bytes."
)

_HOST = re.compile(r"^sts(?:\.([a-z0-9-]+))?\.amazonaws\.com$")
_CREDENTIAL = re.compile(r"Credential=([^/,\s]+)/(\d{8})/([a-z0-9-]+)/([a-z0-9-]+)/aws4_request")
_AMZ_DATE = "%Y%m%dT%H%M%SZ"


class Refused(Exception):
    def __init__(self, error: str, description: str) -> None:
        super().__init__(description)
        self.error, self.description = error, description


class Disabled(Exception):
    def __init__(self, number: str, service: str) -> None:
        super().__init__(service)
        self.number, self.service = number, service


@dataclass
class FederatedToken:
    pool_name: str  # projects/N/locations/global/workloadIdentityPools/P
    subject: str
    attributes: dict[str, Any]
    expires_at: float


class SecurityTokenService:
    def __init__(self, keyless: Keyless) -> None:
        self.keyless = keyless
        self.tokens: dict[str, FederatedToken] = {}  # guarded by the state lock

    def exchange(self, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        try:
            token = self._exchange(form)
        except Disabled as disabled:
            with self.keyless.state.lock:
                self.keyless.sts_rejections.append(f"SERVICE_DISABLED {disabled.service}")
            return service_disabled(disabled.number, disabled.service)
        except Refused as refused:
            with self.keyless.state.lock:
                self.keyless.sts_rejections.append(refused.description)
            return 400, {"error": refused.error, "error_description": refused.description}
        return 200, token

    def _exchange(self, form: dict[str, str]) -> dict[str, Any]:
        if form.get("grant_type") != TOKEN_EXCHANGE_GRANT:
            raise Refused(
                "unsupported_grant_type", f"Invalid grant_type: {form.get('grant_type', '')}"
            )
        if (
            form.get("subject_token_type") != AWS_SUBJECT_TOKEN_TYPE
            or form.get("requested_token_type") != ACCESS_TOKEN_TYPE
        ):
            raise Refused("invalid_request", "Invalid subject_token_type or requested_token_type.")
        audience = form.get("audience", "")
        with self.keyless.state.lock:
            found = self.keyless.pools.provider_by_audience(audience)
        if found is None:
            raise Refused("invalid_target", MSG_INVALID_TARGET)
        pool, provider = found
        with self.keyless.state.lock:
            if provider.unseen > 0:  # created a moment ago: STS does not know it yet
                provider.unseen -= 1
                raise Refused("invalid_target", MSG_INVALID_TARGET)
        number = pool.name.split("/")[1]
        with self.keyless.state.lock:
            enabled = self.keyless.service_usage.enabled(number, "sts.googleapis.com")
        if not enabled:
            raise Disabled(number, "sts.googleapis.com")
        request = _decode(form.get("subject_token", ""))
        headers = {str(h["key"]).lower(): str(h["value"]) for h in request["headers"]}
        if headers.get("x-goog-cloud-target-resource") != audience:
            raise Refused("invalid_grant", MSG_TARGET_MISMATCH)
        _check_signature_scope(request["url"], headers)
        arn = self._replay(request, headers)
        account = arn.split(":")[4]
        if account != provider.aws_account_id:
            raise Refused(
                "invalid_grant",
                MSG_WRONG_ACCOUNT.format(account=account, expected=provider.aws_account_id),
            )
        assertion = {"arn": arn}
        try:
            attributes = cel_oracle.map_attributes(provider.attribute_mapping, assertion)
            accepted = cel_oracle.condition_accepts(
                provider.attribute_condition, assertion, attributes
            )
        except cel_oracle.CelRefused as exc:
            raise Refused(
                "invalid_grant", f"Attribute mapping or condition failed: {exc}"
            ) from None
        if not attributes.get("google.subject"):
            raise Refused("invalid_grant", MSG_NO_SUBJECT)
        if len(str(attributes["google.subject"]).encode("utf-8")) > SUBJECT_MAX_BYTES:
            raise Refused("invalid_request", MSG_SUBJECT_TOO_LONG)
        if not accepted:
            raise Refused("unauthorized_client", MSG_CONDITION_REJECTED)
        lifetime = self.keyless.token_lifetime_s
        token = "ya29.d.emulated-federated-" + secrets.token_urlsafe(32)
        with self.keyless.state.lock:
            self.tokens[token] = FederatedToken(
                pool.name, str(attributes["google.subject"]), attributes, time.time() + lifetime
            )
            self.keyless.federated_tokens_issued += 1
            # Which AWS credentials signed it (the access key id only, never the secret): a test can
            # see the application's second exchange use rotated task-role credentials.
            signer = re.search(r"Credential=([A-Z0-9]+)/", headers.get("authorization", ""))
            self.keyless.subject_access_keys.append(signer.group(1) if signer else "")
            self.keyless.subjects.append(str(attributes["google.subject"]))
        return {
            "access_token": token,
            "issued_token_type": ACCESS_TOKEN_TYPE,
            "token_type": "Bearer",
            "expires_in": int(lifetime),
        }

    def _replay(self, request: dict[str, Any], headers: dict[str, str]) -> str:
        endpoint = self.keyless.aws_endpoint
        if not endpoint:
            raise Refused(
                "invalid_grant", "emulator: no AWS endpoint to replay GetCallerIdentity to"
            )
        query = urllib.parse.urlsplit(request["url"]).query
        forwarded = {
            k: v for k, v in headers.items() if k not in ("host", "x-goog-cloud-target-resource")
        }
        replay = urllib.request.Request(
            f"{endpoint}/?{query}",
            method=request["method"],
            headers=forwarded,
            data=str(request.get("body") or "").encode() or None,
        )
        try:
            with urllib.request.urlopen(replay, timeout=10) as response:
                document = response.read()
        except urllib.error.HTTPError as exc:
            message = ET.fromstring(exc.read()).findtext(".//{*}Message") or f"HTTP {exc.code}"
            raise Refused("invalid_grant", message) from None
        arn = ET.fromstring(document).findtext(".//{*}Arn") or ""
        if not arn.startswith("arn:aws:") or arn.endswith(":user/moto"):
            raise Refused("invalid_grant", MSG_UNKNOWN_KEY)
        return arn

    def principal(self, authorization: str | None) -> FederatedToken | None:
        """The live federated token a `Bearer` header carries. Call with state.lock held."""
        if not authorization or not authorization.startswith("Bearer "):
            return None
        token = self.tokens.get(authorization.removeprefix("Bearer ").strip())
        return token if token is not None and token.expires_at > time.time() else None


def _decode(subject_token: str) -> dict[str, Any]:
    try:
        request = json.loads(urllib.parse.unquote(subject_token))
        if not isinstance(request, dict) or not isinstance(request.get("headers"), list):
            raise ValueError("not an object with a list of headers")
        for header in request["headers"]:
            if not isinstance(header, dict) or not {"key", "value"} <= set(header):
                raise ValueError("bad header entry")
        if not isinstance(request.get("url"), str) or request.get("method") not in ("POST", "GET"):
            raise ValueError("no url or method")
    except ValueError:
        raise Refused("invalid_grant", MSG_BAD_FORMAT) from None
    return request


def _check_signature_scope(url: str, headers: dict[str, str]) -> None:
    parts = urllib.parse.urlsplit(url)
    host = _HOST.match(parts.hostname or "")
    query = urllib.parse.parse_qs(parts.query)
    if (
        parts.scheme != "https"
        or host is None
        or query.get("Action") != ["GetCallerIdentity"]
        or query.get("Version") != ["2011-06-15"]
        or headers.get("host", parts.hostname) != parts.hostname
    ):
        raise Refused("invalid_grant", MSG_NOT_GET_CALLER_IDENTITY)
    credential = _CREDENTIAL.search(headers.get("authorization", ""))
    if not headers.get("authorization", "").startswith("AWS4-HMAC-SHA256 ") or credential is None:
        raise Refused("invalid_grant", MSG_NOT_GET_CALLER_IDENTITY)
    _, day, region, service = credential.groups()
    amz_date = headers.get("x-amz-date", "")
    try:
        signed_at = dt.datetime.strptime(amz_date, _AMZ_DATE).replace(tzinfo=dt.UTC)
    except ValueError:
        raise Refused("invalid_grant", MSG_NOT_GET_CALLER_IDENTITY) from None
    if service != "sts" or region != (host.group(1) or "us-east-1") or day != amz_date[:8]:
        raise Refused(
            "invalid_grant", MSG_BAD_SCOPE.format(scope=f"{day}/{region}/{service}/aws4_request")
        )
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    if not now - SIGV4_WINDOW <= signed_at <= now + SIGV4_WINDOW:
        raise Refused(
            "invalid_grant",
            MSG_STALE.format(
                signed=amz_date,
                limit=(now - SIGV4_WINDOW).strftime(_AMZ_DATE),
                now=now.strftime(_AMZ_DATE),
            ),
        )
