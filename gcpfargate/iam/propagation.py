"""Waiting out IAM's eventual consistency after gcpfargate's own IAM changes.

AWS: "changes ... take time to become visible" to other services
(https://docs.aws.amazon.com/IAM/latest/UserGuide/troubleshoot_general.html#troubleshoot_general_eventual-consistency),
so a role created or changed a moment ago is refused for a while by the services it is handed to.
Each refusal below is retried with backoff for a bounded time (`BUDGET_SECONDS`); any other error,
and the same refusal once the budget is spent, goes to the caller unchanged.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

from gcpfargate.core.report import Reporter
from gcpfargate.errors import AwsError

T = TypeVar("T")
BUDGET_SECONDS = 60.0
_LONGEST_PAUSE = 5.0


def pass_role_refused(exc: AwsError) -> bool:
    """RegisterTaskDefinition right after CreateRole (terraform-aws-modules/terraform-aws-ecs#414):
    AccessDeniedException "... is not authorized to perform: iam:PassRole ..."; some accounts answer
    ClientException "Role is not valid" instead (fabfuel/ecs-deploy#231)."""
    return (exc.code == "AccessDeniedException" and "iam:PassRole" in exc.message) or (
        exc.code == "ClientException" and "role is not valid" in exc.message.lower()
    )


def assume_role_refused(exc: AwsError) -> bool:
    """RunTask: ClientException "ECS was unable to assume the role '…' that was provided for this
    task" (aws-samples/aws-modern-application-workshop#88)."""
    return (
        exc.code in ("ClientException", "InvalidParameterException")
        and "unable to assume the role" in exc.message.lower()
    )


def scheduler_role_refused(exc: AwsError) -> bool:
    """CreateSchedule/UpdateSchedule: ValidationException "The execution role you provide must allow
    AWS EventBridge Scheduler to assume the role." (aws/aws-sdk-js-v3#6494)."""
    return (
        exc.code == "ValidationException"
        and "must allow aws eventbridge scheduler to assume" in exc.message.lower()
    )


def retry_while(
    call: Callable[[], T],
    refused: Callable[[AwsError], bool],
    reporter: Reporter,
    what: str,
    budget: float = BUDGET_SECONDS,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> T:
    """`call()`, again with backoff while it fails with an error `refused` recognises, for up to
    `budget` s."""
    deadline = clock() + budget
    pause = 1.0
    said = False
    while True:
        try:
            return call()
        except AwsError as exc:
            remaining = deadline - clock()
            if not refused(exc) or remaining <= 0:
                raise
            if not said:
                reporter.info(
                    f"{what}: IAM changes take a while to reach every service; retrying for up to "
                    f"{budget:.0f} s ({exc.message})"
                )
                said = True
            sleep(min(pause, remaining))
            pause = min(pause * 2, _LONGEST_PAUSE)
