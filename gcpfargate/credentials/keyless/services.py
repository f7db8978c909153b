"""The Google APIs keyless mode needs enabled in the project, read through Service Usage.

Every task exchanges its AWS identity at the Security Token Service and impersonates the service
account through IAM Service Account Credentials; with either API disabled each exchange fails
with SERVICE_DISABLED at run time, long after deploy said OK. `bootstrap` refuses and `doctor`
FAILs then, both naming the `gcloud services enable` line.
"""

from __future__ import annotations

from gcpfargate.core.context import Context
from gcpfargate.errors import GcpError

REQUIRED_APIS = ("sts.googleapis.com", "iamcredentials.googleapis.com")


def disabled_apis(ctx: Context) -> list[str]:
    """The required APIs not ENABLED in the configured project (GcpError when it cannot tell)."""
    project = ctx.settings.gcp.project
    return [api for api in REQUIRED_APIS if ctx.service_usage.state(project, api) != "ENABLED"]


def disabled_or_unreadable(ctx: Context) -> tuple[list[str], str]:
    """(the disabled APIs, "") or, when the caller may not read Service Usage, ([], why): neither
    bootstrap nor doctor otherwise needs that permission, so not knowing is only a warning."""
    try:
        return disabled_apis(ctx), ""
    except GcpError as exc:
        if exc.code not in ("PERMISSION_DENIED", "403"):
            raise
        return [], exc.message


def enable_command(project: str, apis: list[str]) -> str:
    return f"gcloud services enable {' '.join(apis)} --project {project}"


def problem(project: str, disabled: list[str]) -> str:
    return (
        f"{' and '.join(disabled)} {'is' if len(disabled) == 1 else 'are'} not enabled in "
        f"project {project}: every task's token exchange would fail with SERVICE_DISABLED"
    )
