"""Google's predefined roles as sets of permissions, so the emulator can refuse a caller who holds
only some roles the way Google does (PERMISSION_DENIED naming the missing permission).

Source: Google Cloud's IAM roles and permissions reference,
https://cloud.google.com/iam/docs/roles-permissions/iam ("Service Account Key Admin",
"Service Account Admin", "Service Account Viewer", "Workload Identity User"), and
https://cloud.google.com/iam/docs/keys-disable-enable ("Required roles": Service Account Key Admin
suffices to disable and enable keys). Only the permissions of the IAM methods the emulator serves
(errors.METHOD_PERMISSIONS) matter here; resourcemanager.projects.get/list, which both admin roles
also hold, are listed for completeness.
"""

from __future__ import annotations

from collections.abc import Iterable

ROLE_PERMISSIONS: dict[str, frozenset[str]] = {
    "roles/iam.serviceAccountKeyAdmin": frozenset(
        {
            "iam.serviceAccountKeys.create",
            "iam.serviceAccountKeys.delete",
            "iam.serviceAccountKeys.disable",
            "iam.serviceAccountKeys.enable",
            "iam.serviceAccountKeys.get",
            "iam.serviceAccountKeys.list",
            "iam.serviceAccounts.get",
            "iam.serviceAccounts.list",
            "resourcemanager.projects.get",
            "resourcemanager.projects.list",
        }
    ),
    "roles/iam.serviceAccountAdmin": frozenset(
        {
            "iam.serviceAccounts.create",
            "iam.serviceAccounts.delete",
            "iam.serviceAccounts.disable",
            "iam.serviceAccounts.enable",
            "iam.serviceAccounts.get",
            "iam.serviceAccounts.getIamPolicy",
            "iam.serviceAccounts.list",
            "iam.serviceAccounts.setIamPolicy",
            "iam.serviceAccounts.undelete",
            "iam.serviceAccounts.update",
            "resourcemanager.projects.get",
            "resourcemanager.projects.list",
        }
    ),
    "roles/iam.serviceAccountViewer": frozenset(
        {
            "iam.serviceAccountKeys.get",
            "iam.serviceAccountKeys.list",
            "iam.serviceAccounts.get",
            "iam.serviceAccounts.getIamPolicy",
            "iam.serviceAccounts.list",
            "resourcemanager.projects.get",
            "resourcemanager.projects.list",
        }
    ),
}


def permissions_of(roles: Iterable[str]) -> frozenset[str]:
    """Every permission the roles grant; an unknown role is a mistake in the test, not a refusal."""
    granted: set[str] = set()
    for role in roles:
        if role not in ROLE_PERMISSIONS:
            raise ValueError(f"unknown role {role!r}; known: {', '.join(sorted(ROLE_PERMISSIONS))}")
        granted |= ROLE_PERMISSIONS[role]
    return frozenset(granted)
