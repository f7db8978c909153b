"""The answers the real Google services give, with where each text comes from.

Every refusal of the emulator is built here, so a reader can check each text against its source
(the comment above it) and a new surface (the keyless work: STS, IAM Credentials) adds its own
texts next to these.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Sequence
from typing import Any

import grpc
from google.protobuf import duration_pb2
from google.rpc import error_details_pb2


class RpcFailure(Exception):
    """An error the emulator answers with; becomes a gRPC status (or a ValueError in helpers)."""

    def __init__(self, code: grpc.StatusCode, message: str, details: Sequence[Any] = ()) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = list(details)


# --- google.iam.admin.v1.IAM (sources: public GitHub issues quoting real responses) -------------
# firebase/firebase-tools#6192, google-api-dotnet-client#2027: 11th key -> 400 FAILED_PRECONDITION.
MSG_KEY_LIMIT = "Precondition check failed."
# The older surface (still what gcloud users report) answers the key limit with RESOURCE_EXHAUSTED
# and a RetryInfo of 86401 s: kubeflow/pipelines#348, hail-is/hail#4725,
# googlearchive/k8s-service-catalog#228; google-api-dotnet-client#2027 "We used to get error code
# 429 indicating we have reached maximum amount of keys."
MSG_KEY_LIMIT_EXHAUSTED = "Maximum number of keys on account reached."
KEY_LIMIT_RETRY_DELAY_S = 86401
# google/create-service-account#21, GaloyMoney/galoy-infra#242, and Google's "Troubleshoot
# organization policy errors for service accounts" page: FAILED_PRECONDITION + PreconditionFailure.
MSG_KEY_CREATION_DENIED = "Key creation is not allowed on this service account."
KEY_CREATION_CONSTRAINT = "constraints/iam.disableServiceAccountKeyCreation"
# The managed twin, enforced by default for organisations created since May 2024
# (https://cloud.google.com/resource-manager/docs/organization-policy/restricting-service-accounts).
KEY_CREATION_MANAGED_CONSTRAINT = "constraints/iam.managed.disableServiceAccountKeyCreation"
# GoogleCloudPlatform/python-docs-samples#10243: 404 "Service account projects/-/serviceAccounts/
# 105186979449173761854 does not exist." (the name as the caller wrote it). The same answer comes
# for a few seconds after CreateServiceAccount (eventual consistency, documented at
# https://cloud.google.com/iam/docs/overview#consistency; GoogleCloudPlatform/magic-modules#6053,
# hashicorp/vault-plugin-secrets-gcp#258).
MSG_ACCOUNT_NOT_FOUND = "Service account {name} does not exist."
# googleapis/google-cloud-cpp#7330 and #6637: NOT_FOUND "Service account key <id> does not exist."
MSG_KEY_NOT_FOUND = "Service account key {key_id} does not exist."
# GoogleCloudPlatform/java-docs-samples#3605: 409 ALREADY_EXISTS, with a ResourceInfo detail
# (GoogleCloudPlatform/reg-reporting-blueprint#104).
MSG_ACCOUNT_EXISTS = (
    "Service account {account_id} already exists within project projects/{project}."
)
# google/litmus#107: INVALID_ARGUMENT for a bad length.
MSG_ACCOUNT_ID_LENGTH = 'The account ID "{account_id}" does not have a length between 6 and 30.'
# prebid/salesagent#789 shows "<id> does not match <regex>." for a bad character.
MSG_ACCOUNT_ID_PATTERN = "{account_id} does not match [a-z]([-a-z0-9]*[a-z0-9])."
# Google's generic INVALID_ARGUMENT text (hashicorp/terraform-provider-google#793).
MSG_INVALID_ARGUMENT = "Request contains an invalid argument."
# everycure-org/matrix#75 (gcloud keys create): PERMISSION_DENIED "Permission
# 'iam.serviceAccountKeys.create' denied on resource (or it may not exist)." with an ErrorInfo
# {domain: iam.googleapis.com, reason: IAM_PERMISSION_DENIED, metadata.permission}.
MSG_PERMISSION_DENIED = "Permission '{permission}' denied on resource (or it may not exist)."
# openshift/installer#2187, terraform-google-modules/terraform-example-foundation#1133: 403
# (gRPC PERMISSION_DENIED) with ErrorInfo {domain: googleapis.com, reason: SERVICE_DISABLED,
# metadata: consumer, service} and a Help link to the activation page.
MSG_SERVICE_DISABLED = (
    "Identity and Access Management (IAM) API has not been used in project {project} before or it "
    "is disabled. Enable it by visiting {url} then retry. If you enabled this API recently, wait a "
    "few minutes for the action to propagate to our systems and retry."
)
IAM_ACTIVATION_URL = (
    "https://console.developers.google.com/apis/api/iam.googleapis.com/overview?project={project}"
)
# The shape of Google's quota answers (HTTP 429, gRPC RESOURCE_EXHAUSTED), e.g.
# GoogleCloudPlatform/python-docs-samples#3482 "Quota exceeded for quota metric 'Write requests'
# and limit 'Write requests per minute' of service 'cloudkms.googleapis.com' for consumer
# 'project_number:...'". The IAM metric and limit names here are illustrative, not quoted.
MSG_QUOTA_EXCEEDED = (
    "Quota exceeded for quota metric 'Service account key creation requests' and limit 'Service "
    "account key creation requests per minute' of service 'iam.googleapis.com' for consumer "
    "'project_number:{project}'."
)

# Which permission each RPC needs (https://cloud.google.com/iam/docs/permissions-reference).
METHOD_PERMISSIONS = {
    "GetServiceAccount": "iam.serviceAccounts.get",
    "ListServiceAccounts": "iam.serviceAccounts.list",
    "CreateServiceAccount": "iam.serviceAccounts.create",
    "DeleteServiceAccount": "iam.serviceAccounts.delete",
    "DisableServiceAccount": "iam.serviceAccounts.disable",
    "EnableServiceAccount": "iam.serviceAccounts.enable",
    "ListServiceAccountKeys": "iam.serviceAccountKeys.list",
    "GetServiceAccountKey": "iam.serviceAccountKeys.get",
    "CreateServiceAccountKey": "iam.serviceAccountKeys.create",
    "UploadServiceAccountKey": "iam.serviceAccountKeys.create",
    "DeleteServiceAccountKey": "iam.serviceAccountKeys.delete",
    "DisableServiceAccountKey": "iam.serviceAccountKeys.disable",
    "EnableServiceAccountKey": "iam.serviceAccountKeys.enable",
    "GetIamPolicy": "iam.serviceAccounts.getIamPolicy",
    "SetIamPolicy": "iam.serviceAccounts.setIamPolicy",
    # Workload identity federation (REST; pools.py). Operations are read with the `get` permission.
    "CreateWorkloadIdentityPool": "iam.workloadIdentityPools.create",
    "GetWorkloadIdentityPool": "iam.workloadIdentityPools.get",
    "ListWorkloadIdentityPools": "iam.workloadIdentityPools.list",
    "DeleteWorkloadIdentityPool": "iam.workloadIdentityPools.delete",
    "UndeleteWorkloadIdentityPool": "iam.workloadIdentityPools.undelete",
    "GetWorkloadIdentityPoolOperation": "iam.workloadIdentityPools.get",
    "UnknownWorkloadIdentityPool": "iam.workloadIdentityPools.get",
    "CreateWorkloadIdentityPoolProvider": "iam.workloadIdentityPoolProviders.create",
    "GetWorkloadIdentityPoolProvider": "iam.workloadIdentityPoolProviders.get",
    "ListWorkloadIdentityPoolProviders": "iam.workloadIdentityPoolProviders.list",
    "DeleteWorkloadIdentityPoolProvider": "iam.workloadIdentityPoolProviders.delete",
    "UndeleteWorkloadIdentityPoolProvider": "iam.workloadIdentityPoolProviders.undelete",
    "UpdateWorkloadIdentityPoolProvider": "iam.workloadIdentityPoolProviders.update",
    "GetWorkloadIdentityPoolProviderOperation": "iam.workloadIdentityPoolProviders.get",
    "UnknownWorkloadIdentityPoolProvider": "iam.workloadIdentityPoolProviders.get",
    # Service Usage v1 (services.get / enable / disable).
    "GetService": "serviceusage.services.get",
    "EnableService": "serviceusage.services.enable",
    "DisableService": "serviceusage.services.disable",
}

# --- OAuth2 token endpoint (400, error=invalid_grant) ---------------------------------------------
# googleapis/google-cloud-python#10004, crossplane-contrib/provider-jet-gcp#56 (deleted key). Also
# what a key that Google has not propagated yet gets: the key is unknown to the token service for
# "60 seconds or more" (https://cloud.google.com/iam/docs/keys-create-delete; google-cloud-cpp#10587
# waits up to 7 minutes; hashicorp/vault-plugin-secrets-gcp#111), and for an expired key.
OAUTH_BAD_SIGNATURE = "Invalid JWT Signature."
# googleapis/google-cloud-php#3622: disabled or deleted service account.
OAUTH_ACCOUNT_NOT_FOUND = "Invalid grant: account not found"
# googleapis/google-api-php-client#1429.
OAUTH_BAD_TIMES = (
    "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe. "
    "Check your iat and exp values and use a clock with skew to account for clock differences "
    "between systems."
)
# google/oauth2l#130.
OAUTH_BAD_AUDIENCE = "Invalid JWT: Failed audience check."
# The 401 body Google APIs return for a missing/invalid/revoked bearer token.
UNAUTHENTICATED_MESSAGE = (
    "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie "
    "or other valid authentication credential. "
    "See https://developers.google.com/identity/sign-in/web/devconsole-project."
)


def account_not_found(name: str) -> RpcFailure:
    return RpcFailure(grpc.StatusCode.NOT_FOUND, MSG_ACCOUNT_NOT_FOUND.format(name=name))


def key_limit(code: grpc.StatusCode) -> RpcFailure:
    if code is grpc.StatusCode.RESOURCE_EXHAUSTED:
        retry = error_details_pb2.RetryInfo(
            retry_delay=duration_pb2.Duration(seconds=KEY_LIMIT_RETRY_DELAY_S)
        )
        return RpcFailure(code, MSG_KEY_LIMIT_EXHAUSTED, [retry])
    return RpcFailure(grpc.StatusCode.FAILED_PRECONDITION, MSG_KEY_LIMIT)


def key_creation_denied(project: str, email: str, constraint: str) -> RpcFailure:
    subject = (
        f"projects/{project}/serviceAccounts/{email}"
        f"?configvalue={urllib.parse.quote(email, safe='')}"
    )
    violation = error_details_pb2.PreconditionFailure.Violation(
        type=constraint, subject=subject, description=MSG_KEY_CREATION_DENIED
    )
    return RpcFailure(
        grpc.StatusCode.FAILED_PRECONDITION,
        MSG_KEY_CREATION_DENIED,
        [error_details_pb2.PreconditionFailure(violations=[violation])],
    )


def permission_denied(permission: str) -> RpcFailure:
    info = error_details_pb2.ErrorInfo(
        reason="IAM_PERMISSION_DENIED",
        domain="iam.googleapis.com",
        metadata={"permission": permission},
    )
    return RpcFailure(
        grpc.StatusCode.PERMISSION_DENIED,
        MSG_PERMISSION_DENIED.format(permission=permission),
        [info],
    )


def service_disabled(project: str) -> RpcFailure:
    url = IAM_ACTIVATION_URL.format(project=project)
    help_link = error_details_pb2.Help(
        links=[
            error_details_pb2.Help.Link(
                description="Google developers console API activation", url=url
            )
        ]
    )
    info = error_details_pb2.ErrorInfo(
        reason="SERVICE_DISABLED",
        domain="googleapis.com",
        metadata={"consumer": f"projects/{project}", "service": "iam.googleapis.com"},
    )
    return RpcFailure(
        grpc.StatusCode.PERMISSION_DENIED,
        MSG_SERVICE_DISABLED.format(project=project, url=url),
        [help_link, info],
    )


# Google's "Troubleshoot VPC Service Controls" (cloud.google.com/vpc-service-controls/docs/
# troubleshooting): a request from outside a service perimeter gets 403 / PERMISSION_DENIED with
# "Request is prohibited by organization's policy. vpcServiceControlsUniqueIdentifier: <id>", an
# ErrorInfo {domain: googleapis.com, reason: SECURITY_POLICY_VIOLATED} and a PreconditionFailure
# violation of type VPC_SERVICE_CONTROLS whose description is the identifier.
MSG_VPC_SC = (
    "Request is prohibited by organization's policy. vpcServiceControlsUniqueIdentifier: {uid}"
)


def vpc_sc_violation(project: str) -> RpcFailure:
    uid = "vpcsc-" + urllib.parse.quote(project, safe="")[:40]
    info = error_details_pb2.ErrorInfo(
        reason="SECURITY_POLICY_VIOLATED",
        domain="googleapis.com",
        metadata={"service": "iam.googleapis.com", "uid": uid},
    )
    failure = error_details_pb2.PreconditionFailure(
        violations=[
            error_details_pb2.PreconditionFailure.Violation(
                type="VPC_SERVICE_CONTROLS", description=uid
            )
        ]
    )
    return RpcFailure(
        grpc.StatusCode.PERMISSION_DENIED, MSG_VPC_SC.format(uid=uid), [failure, info]
    )


def quota_exceeded(project: str) -> RpcFailure:
    info = error_details_pb2.ErrorInfo(
        reason="RATE_LIMIT_EXCEEDED",
        domain="googleapis.com",
        metadata={"consumer": f"projects/{project}", "service": "iam.googleapis.com"},
    )
    return RpcFailure(
        grpc.StatusCode.RESOURCE_EXHAUSTED, MSG_QUOTA_EXCEEDED.format(project=project), [info]
    )
