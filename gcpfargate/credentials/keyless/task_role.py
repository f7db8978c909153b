"""run-local in keyless mode: the task role, assumed through STS as ECS assumes it, fed to the shim.

ECS assumes a task's role with a session named by the task id (32 hex digits) and serves the
credentials on an endpoint only that task reaches. Here `TaskRoleFeed` assumes the task
definition's `taskRoleArn` the same way (never handing out the developer's own credentials; the
role's trust policy must admit the caller, see `keyless.local_principal`) and writes the
ECS-shaped document (`AccessKeyId`, `SecretAccessKey`, `Token`, `Expiration`, `RoleArn`) to the
shim container's stdin, where `local_agent` serves it inside the task's network namespace. It
assumes the role again shortly before the credentials expire. Nothing here logs or returns the
credentials.
"""

from __future__ import annotations

import json
import re
import secrets
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Any

from gcpfargate.core.context import Context
from gcpfargate.errors import AwsError, GcpfargateError, OperationError

REFRESH_MARGIN = timedelta(minutes=5)
RETRY_AFTER_S = 5.0  # a failed re-assumption is tried again this soon


def ecs_session_name() -> str:
    """A role session named as ECS names a task's: the task id, 32 lowercase hex digits."""
    return secrets.token_hex(16)


class TaskRoleFeed:
    def __init__(self, ctx: Context, role_arn: str) -> None:
        self._ctx, self.role_arn = ctx, role_arn
        self.session_name = ecs_session_name()
        self._credentials: dict[str, Any] | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def assume(self) -> dict[str, Any]:
        answer = self._ctx.aws.call(
            "sts",
            "assume_role",
            f"assume the task role {self.role_arn}",
            RoleArn=self.role_arn,
            RoleSessionName=self.session_name,
        )
        self._credentials = dict(answer["Credentials"])
        return self._credentials

    def document(self) -> bytes:
        """The ECS agent's answer for the held credentials, as one line."""
        held = self._credentials
        if held is None:
            raise OperationError(f"the task role {self.role_arn} was never assumed")
        return (
            json.dumps(
                {
                    "RoleArn": self.role_arn,
                    "AccessKeyId": held["AccessKeyId"],
                    "SecretAccessKey": held["SecretAccessKey"],
                    "Token": held["SessionToken"],
                    "Expiration": held["Expiration"].strftime("%Y-%m-%dT%H:%M:%SZ"),
                }
            )
            + "\n"
        ).encode()

    def feed(self, write: Callable[[bytes], None]) -> None:
        """Write the held credentials now, then again after each re-assumption (a thread)."""
        try:
            write(self.document())
        except OSError:
            return  # the shim exited at once: its health check says so, with its log
        self._thread = threading.Thread(
            target=self._refresh, args=(write,), name="gcpfargate-task-role", daemon=True
        )
        self._thread.start()

    def _refresh(self, write: Callable[[bytes], None]) -> None:
        retry = False
        while True:
            held = self._credentials
            wait = (
                RETRY_AFTER_S
                if retry or held is None
                else (held["Expiration"] - datetime.now(UTC) - REFRESH_MARGIN).total_seconds()
            )
            if self._stop.wait(max(wait, 1.0)):
                return
            try:
                self.assume()
            except GcpfargateError:
                # As the ECS agent does: the held credentials stay served until they expire, and
                # the shim reports the expiry; the role is tried again soon.
                retry = True
                continue
            retry = False
            try:
                write(self.document())
            except OSError:
                return  # the shim container is gone

    def __enter__(self) -> TaskRoleFeed:
        try:
            self.assume()  # fail here, in one line, when the role cannot be assumed
        except AwsError as exc:
            if exc.code not in ("AccessDenied", "AccessDeniedException"):
                raise
            raise self._refused() from None
        return self

    def _refused(self) -> OperationError:
        """The trust policy does not admit the caller: how a person is let in (only if they ask)."""
        identity = self._ctx.aws.call("sts", "get_caller_identity", "read the AWS identity")
        caller = str(identity["Arn"])
        # aws:PrincipalArn is the IAM ARN: a role session's role (its path is not in the session's
        # ARN, hence the *), a user as IAM names it.
        match = re.fullmatch(r"arn:([\w-]+):sts::(\d{12}):assumed-role/([^/]+)/.*", caller)
        principal = (
            f"arn:{match[1]}:iam::{match[2]}:role/*{match[3]}"
            if match
            else re.sub(r"^(arn:[\w-]+):sts::(\d{12}):user/", r"\1:iam::\2:user/", caller)
        )
        return OperationError(
            f"{caller} may not assume the task role {self.role_arn}: its trust policy admits "
            f"ECS tasks, and no one else unless asked",
            f'To rehearse as this task role, set local_principal = "{principal}" under [gcp] '
            "and run gcpfargate bootstrap (it adds a trust statement for that principal only)",
        )

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop.set()
