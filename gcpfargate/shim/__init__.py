"""credential-shim: the EC2 metadata credential API on loopback, backed by the ECS task-role
endpoint.

Google's auth libraries read AWS credentials from the environment or from an EC2-metadata-style
`credential_source.url`, never from the ECS container credentials endpoint that Fargate gives a
task role (the maintainers declined it: google-auth-library-python PR #1556, issue #1789). This
program bridges the two inside the task: it runs as a non-essential sidecar, listens on 127.0.0.1
(awsvpc containers share one network namespace) and serves exactly what google-auth's `aws.py`
asks for:

    PUT /latest/api/token                             IMDSv2 session token (TTL header required)
    GET /latest/meta-data/iam/security-credentials    the role name
    GET /latest/meta-data/iam/security-credentials/R  {"AccessKeyId", "SecretAccessKey", "Token",
    ...} GET /latest/meta-data/placement/availability-zone from the ECS task metadata (region
    fallback) GET /healthz                                      200 once task-role credentials are
    available

Every metadata GET needs a session token (IMDSv2 only). Credentials are cached and refetched
shortly before their `Expiration` and at least every `--max-age` seconds, so the application's
Google credentials keep refreshing for as long as it runs.

This package is deliberately standard-library only, uses relative imports only and imports nothing
else from gcpfargate: the shim image is a Python base plus this directory copied as `shim`
(`python3 -m shim`, health check `python3 -m shim --check`), and `python -m gcpfargate.shim` runs
the same code from an installed gcpfargate. This module holds only the constants that the credential
configuration shares, so importing it costs nothing. Credentials are never logged or put in an
error message; logs name the role and the expiry only, and the ECS endpoint by `scheme://host`
only (its path is the secret that guards it). Upstream redirects are errors, never followed.
Idle connections are dropped after `--request-timeout`, at most `--max-connections` are served at
once (the oldest idle one makes room), a failed connection costs one log line, and the table of
IMDSv2 session tokens is bounded.
"""

DEFAULT_PORT = 9254
TOKEN_PATH = "/latest/api/token"
CREDENTIALS_PATH = "/latest/meta-data/iam/security-credentials"
ZONE_PATH = "/latest/meta-data/placement/availability-zone"
HEALTH_PATH = "/healthz"
TTL_HEADER = "X-aws-ec2-metadata-token-ttl-seconds"
TOKEN_HEADER = "X-aws-ec2-metadata-token"
ECS_ENDPOINT = "http://169.254.170.2"
