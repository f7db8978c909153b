"""Test helpers that talk to the IAM emulator through the real google-cloud-iam client."""

from __future__ import annotations

from typing import Any


def iam_client(stack: Any) -> Any:
    import grpc
    from google.cloud import iam_admin_v1
    from google.cloud.iam_admin_v1.services.iam.transports import IAMGrpcTransport

    channel = grpc.insecure_channel(stack.emulator.grpc_address)
    return iam_admin_v1.IAMClient(transport=IAMGrpcTransport(channel=channel))


def create_keys(stack: Any, email: str, count: int) -> list[str]:
    client = iam_client(stack)
    names = []
    for _ in range(count):
        key = client.create_service_account_key(name=f"projects/-/serviceAccounts/{email}")
        names.append(key.name.rsplit("/", 1)[-1])
    return names
