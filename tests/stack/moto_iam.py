"""moto's server for a stack that enforces IAM, with two gaps of moto's enforcement closed.

Started as `python -m tests.stack.moto_iam -H … -p …` (LocalStack(enforce_iam=True)); enforcement
itself is switched on by the test (POST /moto-api/reset-auth, moto's INITIAL_NO_AUTH_ACTION_COUNT).

1. moto signs its copy of a request with the parsed query parameters as the body when the request
   has none (moto/iam/access_control.py `_create_aws_request`: `data=self._body or self._data`),
   so every signed GET of a REST service (EventBridge Scheduler's GetSchedule, ListSchedules)
   fails with SignatureDoesNotMatch. Here a GET, HEAD or DELETE is signed with an empty body, as
   SigV4 signs it; other requests as moto does.
2. moto answers a refusal with its XML error document whatever the protocol, which botocore cannot
   read for the JSON protocols (the error code comes out as "403"). AWS answers those with a JSON
   error: `AccessDeniedException`, "User: <arn> is not authorized to perform: <action> …" (the
   Service Authorization Reference's "Troubleshooting access denied error messages"; botocore's
   ECS, Secrets Manager, CloudWatch Logs, ECR and Scheduler models name `AccessDeniedException`),
   and `UnrecognizedClientException`, "The security token included in the request is invalid."
   for an unknown key (the JSON services' common error). IAM and STS (query protocol) keep
   moto's XML, which is theirs.
3. moto authorises an IAM request naming a role that does not exist yet (GetRole before CreateRole,
   CreateRole itself) against the resource "*" (moto/iam/responses.py `_resolve_resource_arn`), so
   a policy scoped to `role/gcpfargate-*` is refused what AWS allows: AWS evaluates the role's ARN,
   which its name decides whether or not the role exists. Here that ARN (the default path "/").
"""

from __future__ import annotations

import sys
from typing import Any

# Signing names of the services gcpfargate calls that speak a JSON protocol (botocore's models:
# `json` for ECS, Secrets Manager, Logs, ECR, KMS, SSM; `rest-json` for Scheduler); IAM and STS are
# `query`.
JSON_SERVICES = frozenset({"ecs", "secretsmanager", "logs", "ecr", "kms", "ssm", "scheduler"})


def patch() -> None:
    from botocore.awsrequest import AWSRequest
    from moto.core.exceptions import JsonRESTError
    from moto.iam import access_control
    from moto.iam.exceptions import NotFoundException
    from moto.iam.responses import IamResponse

    def _create_aws_request(self: Any) -> AWSRequest:
        signed = self._get_string_between(
            "SignedHeaders=", ",", self._headers["Authorization"]
        ).split(";")
        headers = self._create_headers_for_aws_request(signed, self._headers)
        bodiless = self._method in ("GET", "HEAD", "DELETE")
        data = self._body or (b"" if bodiless else self._data)
        request = AWSRequest(method=self._method, url=self._path, data=data, headers=headers)
        request.context["timestamp"] = headers["X-Amz-Date"]
        return request

    class AccessDenied(JsonRESTError):
        code = 400

    class Unrecognized(JsonRESTError):
        code = 400

    def _resolve_resource_arn(self: Any, role_name: str) -> str:
        try:
            return str(self.backend.get_role(role_name).arn)
        except NotFoundException:
            return f"arn:{self.partition}:iam::{self.current_account}:role/{role_name}"

    original_denied = access_control.IAMRequest._raise_access_denied
    original_invalid = access_control.IAMRequest._raise_invalid_access_key

    def _raise_access_denied(self: Any) -> None:
        if self._service not in JSON_SERVICES:
            original_denied(self)
        raise AccessDenied(
            "AccessDeniedException",
            f"User: {self._access_key.arn} is not authorized to perform: {self._action}",
        )

    def _raise_invalid_access_key(self: Any, reason: str) -> None:
        if self._service not in JSON_SERVICES:
            original_invalid(self, reason)
        raise Unrecognized(
            "UnrecognizedClientException", "The security token included in the request is invalid."
        )

    access_control.IAMRequestBase._create_aws_request = _create_aws_request  # type: ignore[method-assign]
    access_control.IAMRequest._raise_access_denied = _raise_access_denied  # type: ignore[method-assign]
    access_control.IAMRequest._raise_invalid_access_key = _raise_invalid_access_key  # type: ignore[method-assign]
    IamResponse._resolve_resource_arn = _resolve_resource_arn  # type: ignore[method-assign]


if __name__ == "__main__":
    from tests.stack.moto_server import list_modules_once

    list_modules_once()
    patch()
    from moto.server import main

    main(sys.argv[1:])
