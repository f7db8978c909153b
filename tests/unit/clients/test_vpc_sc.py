"""A VPC Service Controls refusal is worded as the perimeter, never as a missing IAM role, on the
REST path too (the gRPC path: tests/integration/credentials/key/test_key_lifecycle.py against the
emulator)."""

from __future__ import annotations

import pytest

from gcpfargate.clients.google.gcp_rest import WorkloadIdentityPools
from gcpfargate.errors import GcpError

# Google's JSON error for a request from outside a perimeter ("Troubleshoot VPC Service Controls").
PERIMETER = {
    "error": {
        "code": 403,
        "message": "Request is prohibited by organization's policy. "
        "vpcServiceControlsUniqueIdentifier: AbC123xYz",
        "status": "PERMISSION_DENIED",
        "details": [
            {
                "@type": "type.googleapis.com/google.rpc.PreconditionFailure",
                "violations": [{"type": "VPC_SERVICE_CONTROLS", "description": "AbC123xYz"}],
            },
            {
                "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                "reason": "SECURITY_POLICY_VIOLATED",
                "domain": "googleapis.com",
            },
        ],
    }
}
MISSING_ROLE = {
    "error": {
        "code": 403,
        "message": "Permission 'iam.workloadIdentityPools.create' denied on resource",
        "status": "PERMISSION_DENIED",
    }
}


def test_perimeter_refusal_names_the_perimeter_and_no_role() -> None:
    with pytest.raises(GcpError) as caught:
        WorkloadIdentityPools(endpoint="https://iam.example.test")._ok(
            403, PERIMETER, "create workload identity pool p"
        )
    line = caught.value.one_line()
    assert line.startswith(
        "failed to create workload identity pool p: a VPC Service Controls perimeter refused the "
        "request (not a missing IAM role; vpcServiceControlsUniqueIdentifier AbC123xYz)"
    )
    assert "roles/" not in line and "ingress rule" in line
    assert caught.value.code == "VPC_SERVICE_CONTROLS"


def test_a_missing_role_still_names_the_role() -> None:
    with pytest.raises(GcpError) as caught:
        WorkloadIdentityPools(endpoint="https://iam.example.test")._ok(
            403, MISSING_ROLE, "create workload identity pool p"
        )
    assert "roles/iam.workloadIdentityPoolAdmin" in caught.value.one_line()
