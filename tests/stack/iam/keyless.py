"""The keyless (workload identity federation) surfaces of the emulator, mounted on its HTTP port.

  /v1/projects/P/locations/global/workloadIdentityPools...   pools.py (IAM REST v1)
  POST /v1/token                                             sts.py (Google STS token exchange)
  POST /v1/projects/-/serviceAccounts/EMAIL:generateAccessToken   iamcredentials.py
  /v1/projects/P/services/S (GET, :enable, :disable)         service_usage.py (Service Usage v1)
  gRPC google.iam.admin.v1.IAM/GetIamPolicy, SetIamPolicy    policies.py
One base URL serves every REST surface, so GCPFARGATE_IAM_REST_ENDPOINT, GCPFARGATE_STS_ENDPOINT,
GCPFARGATE_IAMCREDENTIALS_ENDPOINT and GCPFARGATE_SERVICEUSAGE_ENDPOINT all name its http_url.
Knobs: the lifetime of federated and impersonated tokens (short, to watch refreshes), how many
polls an operation takes, and where AWS STS is (the stack's moto) for the replay.
"""

from __future__ import annotations

import json
import urllib.parse
from typing import TYPE_CHECKING, Any

from tests.stack.iam.admin_http import HttpRequest
from tests.stack.iam.iamcredentials import PREFIX as IAMCREDENTIALS_PREFIX
from tests.stack.iam.iamcredentials import IamCredentials
from tests.stack.iam.policies import Policies
from tests.stack.iam.pools import PREFIX as POOLS_PREFIX
from tests.stack.iam.pools import Pools
from tests.stack.iam.service_usage import ServiceUsage
from tests.stack.iam.sts import SecurityTokenService

if TYPE_CHECKING:
    from tests.stack.iam.emulator import IamEmulator

DEFAULT_TOKEN_LIFETIME_S = 3600.0


class Keyless:
    def __init__(self, emulator: IamEmulator) -> None:
        self.emu = emulator
        self.state = emulator.state
        self.pools = Pools(emulator)
        self.policies = Policies(emulator.state)
        self.sts = SecurityTokenService(self)
        self.iamcredentials = IamCredentials(self)
        self.service_usage = ServiceUsage(emulator)
        self.aws_endpoint = ""
        self.federated_tokens_issued = 0
        self.impersonated_tokens_issued = 0
        self.subject_access_keys: list[
            str
        ] = []  # the AWS access key id of each accepted exchange, in order
        self.subjects: list[str] = []  # the mapped google.subject of each accepted exchange
        self.sts_rejections: list[str] = []  # error descriptions, newest last
        self.denials: list[str] = []  # generateAccessToken refusals
        self.reset_knobs()

    def reset_knobs(self) -> None:
        self.token_lifetime_s = DEFAULT_TOKEN_LIFETIME_S
        self.pools.operation_polls = 1
        self.service_usage.disabled.clear()

    def mount(self) -> None:
        self.emu.service.extra_methods.update(self.policies.methods())
        # generateAccessToken first: its path also starts with the pools' prefix.
        self.emu.mount("POST", IAMCREDENTIALS_PREFIX, self.iamcredentials.route)
        self.emu.mount("POST", "/v1/token", self._sts_route)
        for method in ("GET", "POST", "DELETE", "PATCH"):
            self.emu.mount(method, POOLS_PREFIX, self.pools.route)
        for method in ("GET", "POST"):
            self.emu.mount(method, POOLS_PREFIX, self.service_usage.route)

    def _sts_route(self, request: HttpRequest) -> tuple[int, Any]:
        if request.path != "/v1/token":
            return 404, {"error": {"code": 404, "message": "Not Found", "status": "NOT_FOUND"}}
        with self.state.lock:
            self.state.counters.calls["ExchangeToken"] += 1
        raw = request.body.decode("utf-8", "replace")
        if "application/json" in request.headers.get("Content-Type", ""):
            try:
                parsed = json.loads(raw)
            except ValueError:
                parsed = {}
            # The JSON form of the API uses camelCase names (subjectToken, grantType, ...).
            form = (
                {_snake(k): str(v) for k, v in parsed.items()} if isinstance(parsed, dict) else {}
            )
        else:
            form = {k: v[0] for k, v in urllib.parse.parse_qs(raw).items()}
        return self.sts.exchange(form)

    def stats(self) -> dict[str, Any]:
        """Call with state.lock held."""
        return {
            "federated_tokens_issued": self.federated_tokens_issued,
            "impersonated_tokens_issued": self.impersonated_tokens_issued,
            "subject_access_keys": list(self.subject_access_keys),
            "subjects": list(self.subjects),
            "sts_rejections": list(self.sts_rejections),
            "impersonation_denials": list(self.denials),
        }


def _snake(name: str) -> str:
    return "".join("_" + c.lower() if c.isupper() else c for c in name)
