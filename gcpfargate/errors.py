"""One error tree for the whole tool.

Every expected failure is a `GcpfargateError`: it carries one line saying what failed and why,
an optional hint saying what to do, and the process exit code. The CLI catches this base class
only at the top (see `gcpfargate.cli.main`) and prints it as one line; a traceback appears only
under `--debug`. Messages must never contain key material: build them from names and ids only.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0
    FAILED = 1  # an operation failed (and `diff`: definitions differ)
    USAGE = 2  # usage, config or template error
    CHECK_FAILED = 3  # doctor found a failing check


class GcpfargateError(Exception):
    exit_code: ExitCode = ExitCode.FAILED

    def __init__(self, message: str, hint: str = "", excerpt: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        # Lines shown above the error line (the offending line of a file with a caret under it).
        self.excerpt = excerpt

    def to_json(self) -> dict[str, object]:
        """The `-o json` form of the error: `{"error": {"message", "hint", "exit_code"}}`
        (and "excerpt" when the error has one)."""
        error: dict[str, object] = {
            "message": self.message.rstrip("."),
            "hint": self.hint or None,
            "exit_code": int(self.exit_code),
        }
        if self.excerpt:
            error["excerpt"] = self.excerpt
        return {"error": error}

    def one_line(self) -> str:
        text = self.message.rstrip(".")
        return f"{text}. {self.hint}" if self.hint else f"{text}."


class UsageError(GcpfargateError):
    exit_code = ExitCode.USAGE


class ConfigError(UsageError):
    """The configuration file, environment or flags are missing, malformed or inconsistent."""


class TemplateError(UsageError):
    """The task-definition template does not render, is not JSON, or is not a valid definition."""


class ExpressionError(ConfigError):
    """A schedule expression or time zone that AWS would reject."""


class SecretNotFound(ConfigError):
    """The secret that holds the key does not exist yet (bootstrap has not run)."""


class OperationError(GcpfargateError):
    """A step against an outside system failed."""


class AwsError(OperationError):
    """An AWS call failed; `code` keeps the service's error code (e.g.
    ResourceNotFoundException)."""

    code: str = ""

    def with_code(self, code: str) -> AwsError:
        self.code = code
        return self


class AwsConfigError(AwsError):
    """The AWS configuration itself is missing (no region, no credentials, an unknown profile): a
    usage problem the user fixes in their setup, so exit 2 like any other configuration error."""

    exit_code = ExitCode.USAGE


class GcpError(OperationError):
    """A GCP IAM call failed; `code` keeps the gRPC status name (e.g. NOT_FOUND)."""

    code: str = ""

    def with_code(self, code: str) -> GcpError:
        self.code = code
        return self


class DockerError(OperationError):
    """The Docker engine failed a build, export, push, pull or run."""


class RegistryError(OperationError):
    """The image registry (ECR's Docker Registry HTTP API) could not be read or refused access."""


class ImageNotFound(OperationError):
    """The image to register is not in the registry (not pushed yet, or a wrong tag)."""


class TaskDefinitionNotFound(OperationError):
    """The family has no ACTIVE revision, or the asked-for revision does not exist."""


class NotAKeyError(ValueError):
    """Data is not a service-account key file; the reason never quotes the input. Internal: callers
    turn it into a state or a `GcpfargateError` of their own."""


class GcpConfigError(GcpError):
    """No Google credentials could be found at all: the caller's setup, exit 2 like
    `AwsConfigError`."""

    exit_code = ExitCode.USAGE


class KeyLimitError(GcpError):
    """The service account already holds the maximum of 10 user-managed keys."""


class ImagePlatformError(UsageError):
    """The built image is for another OS/architecture than image.platform: the Dockerfile's base or
    the setting is wrong, so exit 2 like other configuration errors."""


class EmbeddedCredentialsError(DockerError):
    """A file that looks like a service-account key is in the build context or image."""


class StepError(OperationError):
    """A step of `deploy` failed; names the step in front of the cause."""

    def __init__(self, step: str, cause: GcpfargateError) -> None:
        # A wait that ended before the rollout did is not a failure: ECS carries on.
        said = "did not finish" if getattr(cause, "still_running", False) else "failed"
        super().__init__(f"{step} {said}: {cause.message}", cause.hint)
        self.step = step
        self.cause = cause
        self.exit_code = cause.exit_code
