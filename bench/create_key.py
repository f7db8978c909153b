"""The manual recipe's step 1, as a user would script it: create a key of SERVICE_ACCOUNT_EMAIL with
google-cloud-iam and write its JSON to stdout (piped straight into `aws secretsmanager`, never a
file).

With IAM_EMULATOR_HOST set it talks plain-text gRPC to the emulator, like
gcpfargate/clients/google/gcp.py.
"""

import os
import sys

import grpc
from google.cloud import iam_admin_v1
from google.cloud.iam_admin_v1.services.iam.transports import IAMGrpcTransport

channel = grpc.insecure_channel(os.environ["IAM_EMULATOR_HOST"])
client = iam_admin_v1.IAMClient(transport=IAMGrpcTransport(channel=channel))
key = client.create_service_account_key(
    name=f"projects/-/serviceAccounts/{sys.argv[1]}",
    private_key_type=iam_admin_v1.ServiceAccountPrivateKeyType.TYPE_GOOGLE_CREDENTIALS_FILE,
)
sys.stdout.buffer.write(key.private_key_data)
