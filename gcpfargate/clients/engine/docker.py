"""The Docker engine adapter: build, inspect, save, push and pull through the docker SDK.

The client is created lazily (`docker.from_env()`, so DOCKER_HOST and friends are the SDK's own
standard) and every docker SDK exception is turned into a `DockerError` that says what failed and
what to do. Registry credentials are passed per call (`auth_config=`) and never written to
~/.docker/config.json. Build and push output is streamed to callbacks so the caller decides how
to show it; a failed build step becomes one line naming the step and its last output lines.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from gcpfargate.clients.engine.build_log import BuildLog, LineCallback
from gcpfargate.clients.engine.image_tar import layer_files
from gcpfargate.clients.engine.sdk import docker_sdk
from gcpfargate.errors import DockerError
from gcpfargate.keymaterial.keyfile import redact

if TYPE_CHECKING:
    from gcpfargate.clients.engine.buildkit import Builder, BuildOptions
    from gcpfargate.clients.registry import Credentials

# (layer id, description, bytes done, bytes total or None)
ProgressCallback = Callable[[str, str, int, "int | None"], None]

_DENIED = (
    "denied",
    "unauthorized",
    "authentication required",
    "forbidden",
    "access to the requested resource",
)


# The classic image store's closing status line, "<tag>: digest: sha256:… size: N": the only
# report of the digest from Docker's containerd image store, which sends no aux Digest line.
_PUSHED_DIGEST = re.compile(r"\bdigest: (sha256:[0-9a-f]{64})\b")


@dataclass
class PushOutcome:
    # The manifest digest the engine reported, sha256:…; "" when it reported none (Podman's
    # Docker-compatible socket): the caller asks the registry.
    digest: str


def _engine_hint(host: str) -> str:
    return (
        "Start the Docker engine or point DOCKER_HOST at a running one "
        f"(now: {host or 'the default socket'})"
    )


def _short_reason(exc: BaseException) -> str:
    text = str(exc)
    for needle, reason in (
        ("No such file", "the socket does not exist"),
        ("FileNotFoundError", "the socket does not exist"),
        ("Permission denied", "permission denied on the socket"),
        ("Connection refused", "connection refused"),
        ("Unable to connect to port", "connection refused"),
        ("Authentication failed", "ssh authentication failed"),
        ("timed out", "timed out"),
        ("Read timed out", "timed out"),
    ):
        if needle in text:
            return reason
    text = " ".join(text.split())
    return text if len(text) <= 160 else text[:157] + "..."


def _ssh_errors(host: str) -> tuple[type[BaseException], ...]:
    """paramiko's errors, which the SDK lets through for DOCKER_HOST=ssh://… (none for any other
    host: paramiko is then not even imported, clients/engine/sdk.py)."""
    if not host.startswith("ssh://"):
        return ()
    try:
        from paramiko import SSHException
    except ImportError:
        return ()
    return (SSHException,)


def _connection_errors() -> tuple[type[BaseException], ...]:
    """Errors of a connection to the engine that broke mid-stream (the engine stopped or crashed):
    requests wraps some of them, urllib3 raises others straight out of a streamed response."""
    import requests
    import urllib3.exceptions

    return (requests.RequestException, urllib3.exceptions.HTTPError)


_HELPER = re.compile(r"docker-credential-[\w.-]+")


def _credential_store_error(action: str, exc: BaseException) -> DockerError:
    """Docker's credential helper (`credsStore`/`credHelpers` of the client config) cannot be run:
    the SDK reads every stored login to send with a build or a pull, so this stops them. A helper
    left behind by an uninstalled Docker Desktop (WSL, a former Desktop user) is the usual cause."""
    docker_sdk()
    from docker.utils.config import find_config_file

    config = find_config_file() or os.path.join(
        os.environ.get("DOCKER_CONFIG") or os.path.expanduser("~/.docker"), "config.json"
    )
    text = str(exc)
    found = _HELPER.search(text)
    helper = found.group(0) if found else "the credential helper"
    if "not installed or not available in PATH" in text:
        return DockerError(
            f"{action}: Docker's credential helper {helper} (named by credsStore or credHelpers "
            f"in {config}) is not installed or not on PATH",
            f"Install {helper}, or remove that entry from {config} (logins are then kept in the "
            "file itself)",
        )
    return DockerError(
        f"{action}: Docker's credential helper {helper} (from {config}) failed: "
        f"{redact(_short_reason(exc))}",
        f"Run `{helper} list` to see why, or remove the entry from {config}",
    )


@contextlib.contextmanager
def _engine_errors(action: str, api_hint: str = "") -> Iterator[None]:
    """Translate the docker SDK's failures during `action` ("failed to push x:y") into one
    DockerError."""
    docker = docker_sdk()
    from docker.credentials.errors import StoreError

    host = os.environ.get("DOCKER_HOST", "")
    try:
        yield
    except docker.errors.APIError as exc:
        raise DockerError(f"{action}: {DockerEngine._api_reason(exc)}", api_hint) from None
    except StoreError as exc:  # raised bare while the SDK lists a credsStore's logins
        raise _credential_store_error(action, exc) from None
    except docker.errors.DockerException as exc:
        if isinstance(exc.__cause__, StoreError):  # the SDK's wrapping of one login's lookup
            raise _credential_store_error(action, exc.__cause__) from None
        raise DockerError(f"{action}: {_short_reason(exc)}", _engine_hint(host)) from None
    except _connection_errors() as exc:  # before OSError: requests' errors are OSErrors too
        raise DockerError(
            f"{action}: the connection to the Docker engine broke ({type(exc).__name__})",
            _engine_hint(host),
        ) from None


class DockerEngine:
    def __init__(self, factory: Callable[[], Any] | None = None) -> None:
        self._factory = factory
        self._client: Any = None
        self._builder: Builder | None = None
        self._version: dict[str, Any] | None = None

    @property
    def host(self) -> str:
        return os.environ.get("DOCKER_HOST", "")

    @property
    def client(self) -> Any:
        """The docker SDK client, created and pinged on first use."""
        if self._client is None:
            docker = docker_sdk()
            import requests

            if self.host.startswith("ssh://"):
                import logging

                # paramiko logs a failed handshake's traceback itself; the DockerError says it.
                logging.getLogger("paramiko").addHandler(logging.NullHandler())
            transport_errors: tuple[type[BaseException], ...] = (OSError, *_ssh_errors(self.host))
            try:
                client = self._factory() if self._factory else docker.from_env()
                client.ping()
            except (docker.errors.DockerException, requests.RequestException) as exc:
                raise DockerError(
                    f"cannot reach the Docker engine: {_short_reason(exc)}", _engine_hint(self.host)
                ) from None
            except transport_errors as exc:
                # DOCKER_HOST=ssh://…: paramiko's own errors (no route, refused, auth, host key).
                raise DockerError(
                    f"cannot reach the Docker engine at {self.host or 'the default socket'}: "
                    f"{_short_reason(exc)}",
                    _engine_hint(self.host)
                    + (
                        "; for ssh:// check that `ssh <that host> docker version` works without a "
                        "prompt (key in ssh-agent or ~/.ssh/config)"
                        if self.host.startswith("ssh://")
                        else ""
                    ),
                ) from None
            self._client = client
        return self._client

    def ping(self) -> None:
        _ = self.client

    def builder(self) -> Builder:
        """How this machine builds for this engine (clients/buildkit.py), found once."""
        if self._builder is None:
            from gcpfargate.clients.engine import buildkit

            self._builder = buildkit.find_builder(podman=self.is_podman())
        return self._builder

    def version(self) -> dict[str, Any]:
        """The engine's version record (`docker version`'s Server part), read once."""
        if self._version is None:
            with _engine_errors("failed to read the Docker engine's version"):
                self._version = dict(self.client.version())
        return self._version

    def is_podman(self) -> bool:
        """The engine is Podman's Docker-compatible service (its version names "Podman Engine")."""
        components = self.version().get("Components") or []
        return any("podman" in str(each.get("Name", "")).lower() for each in components)

    def major_version(self) -> int:
        """The engine's major version (20 for 20.10.24); 0 when it does not say."""
        found = re.match(r"(\d+)\.", str(self.version().get("Version", "")))
        return int(found.group(1)) if found else 0

    # -- build -------------------------------------------------------------------------------
    def build(
        self,
        context: Path,
        dockerfile: str,
        tag: str,
        platform: str = "",
        build_args: Mapping[str, str] | None = None,
        on_line: LineCallback | None = None,
        options: BuildOptions | None = None,
    ) -> str:
        """Build `context` (honouring its .dockerignore) and tag the result; return the image id.

        With `options`, through BuildKit when the machine has it (clients/buildkit.py); otherwise
        the engine's classic builder, with the context sent while it is archived
        (clients/engine/build_context.py), not first written whole to a temporary file as the SDK's
        `path=` does."""
        from gcpfargate.clients.engine.build_context import StreamedContext

        if options is not None and (builder := self.builder()).buildkit:
            from gcpfargate.clients.engine import buildkit

            return buildkit.build(
                builder,
                self.host,
                context,
                dockerfile,
                tag,
                platform,
                dict(build_args or {}),
                options,
                on_line or (lambda line: None),
            )
        network = options.network if options is not None and options.network != "default" else None
        log = BuildLog(on_line or (lambda line: None))
        try:
            streamed = StreamedContext(context, dockerfile)
        except (
            OSError
        ) as exc:  # the Dockerfile (outside the context) or .dockerignore cannot be read
            raise DockerError(
                f"cannot read the build context {context}: {exc.strerror or exc}"
            ) from None
        try:
            with _engine_errors("image build failed", "Check the Dockerfile and the build context"):
                stream = self.client.api.build(
                    fileobj=streamed.chunks(),
                    custom_context=True,
                    dockerfile=streamed.dockerfile,
                    tag=tag,
                    platform=platform or None,
                    buildargs=dict(build_args or {}),
                    rm=True,
                    forcerm=True,
                    network_mode=network,
                    decode=True,
                )
                for chunk in stream:
                    log.feed(chunk)
        finally:
            # A file of the context that could not be read explains whatever the engine said about
            # the archive ending early: that is the error to show.
            unreadable = streamed.failure()
            if unreadable is not None:
                raise DockerError(
                    f"cannot read the build context {context}: {unreadable.strerror or unreadable}"
                ) from None
        if log.failed:
            raise DockerError(log.failure.message(), log.failure.hint(platform))
        if not log.image_id:
            log.image_id = self.image_id(tag)
        return log.image_id

    # -- images ------------------------------------------------------------------------------
    def inspect(self, image: str) -> dict[str, Any] | None:
        """The engine's inspect data for an image name or id; None when the engine lacks it."""
        docker = docker_sdk()

        try:
            return dict(self.client.api.inspect_image(image))
        except docker.errors.ImageNotFound:
            return None
        except docker.errors.APIError as exc:
            raise DockerError(f"failed to inspect image {image}: {self._api_reason(exc)}") from None

    def image_id(self, image: str) -> str:
        data = self.inspect(image)
        if data is None:
            raise DockerError(
                f"image {image} is not in the Docker engine", "Build or pull it first"
            )
        return str(data["Id"])

    def tag(self, image: str, repository: str, tag: str) -> None:
        docker = docker_sdk()

        try:
            self.client.api.tag(image, repository, tag)
        except docker.errors.APIError as exc:
            raise DockerError(
                f"failed to tag {image} as {repository}:{tag}: {self._api_reason(exc)}"
            ) from None

    def history(self, image: str) -> list[dict[str, Any]]:
        """The image's history (`docker history`): one record per step, with `CreatedBy`."""
        with _engine_errors(f"failed to read the history of image {image}"):
            return list(self.client.api.history(image))

    def untag(self, image: str) -> None:
        """Remove the name `image` (repository:tag); the image itself goes only when no other name
        holds it, and its parent layers stay (noprune), so the build cache survives."""
        docker = docker_sdk()

        try:
            self.client.api.remove_image(image, noprune=True)
        except docker.errors.ImageNotFound:
            return
        except docker.errors.APIError as exc:
            raise DockerError(
                f"failed to remove the local tag {image}: {self._api_reason(exc)}"
            ) from None

    def save(self, image: str) -> Iterator[bytes]:
        """The image as the engine's `docker save` tar stream, in chunks."""
        with _engine_errors(f"failed to export image {image} for scanning"):
            yield from self.client.api.get_image(image)

    def image_files(
        self,
        image: str,
        skip: Callable[[str], bool] = lambda name: False,
        done: Callable[[], bool] = lambda: False,
        described: Callable[[str, bytes], None] = lambda name, description: None,
    ) -> Iterator[tuple[str, str, BinaryIO]]:
        """Every non-empty regular file in every layer of `image`, as (layer, path, open file), each
        to be read before the next is asked for.

        Streams `docker save` without writing it to disk; `skip`, `done` and `described` as for
        `layer_files`. Files deleted by a later layer are still yielded: they are still in the
        image, for anyone who pulls it.
        """
        import tarfile

        try:
            yield from layer_files(self.save(image), skip, done, described)
        except tarfile.TarError as exc:
            raise DockerError(
                f"failed to search image {image} for key files: the export is not a valid tar "
                f"({exc})",
                "Retry; check the Docker engine",
            ) from None

    # -- registry ----------------------------------------------------------------------------
    def push(
        self,
        repository: str,
        tag: str,
        credentials: Credentials,
        on_progress: ProgressCallback | None = None,
    ) -> PushOutcome:
        """Push `repository:tag` with these credentials (for this call only); the digest from the
        stream's aux Digest record, else from its closing status line, else ""."""
        auth = {"username": credentials.username, "password": credentials.password}
        digest = ""
        with _engine_errors(
            f"failed to push {repository}:{tag}",
            "Check that the registry is reachable and that you may push to it",
        ):
            for chunk in self.client.api.push(
                repository, tag=tag, auth_config=auth, stream=True, decode=True
            ):
                if "error" in chunk or "errorDetail" in chunk:
                    raise self._registry_error("push", f"{repository}:{tag}", chunk)
                aux = chunk.get("aux")
                if isinstance(aux, dict) and aux.get("Digest"):
                    digest = str(aux["Digest"])
                elif not digest and (found := _PUSHED_DIGEST.search(str(chunk.get("status", "")))):
                    digest = found.group(1)
                self._layer_progress(chunk, on_progress, "Pushed")
        return PushOutcome(digest=digest)

    def pull(
        self,
        image_ref: str,
        credentials: Credentials | None = None,
        on_progress: ProgressCallback | None = None,
    ) -> str:
        """Pull `host/repo:tag` or `host/repo@sha256:…`; return the local image id."""
        docker_sdk()
        from docker.utils import parse_repository_tag

        repository, reference = parse_repository_tag(image_ref)
        auth = (
            {"username": credentials.username, "password": credentials.password}
            if credentials
            else None
        )
        with _engine_errors(
            f"failed to pull {image_ref}",
            "Check the image reference and that you may pull from the registry",
        ):
            for chunk in self.client.api.pull(
                repository, tag=reference or "latest", auth_config=auth, stream=True, decode=True
            ):
                if "error" in chunk or "errorDetail" in chunk:
                    raise self._registry_error("pull", image_ref, chunk)
                self._layer_progress(chunk, on_progress, "Pull complete")
        return self.image_id(image_ref)

    # -- run -----------------------------------------------------------------------------------
    def run_container(self, spec: Any, on_line: LineCallback | None = None) -> int:
        """Create, start and follow a container from a run-local `ContainerSpec`; return its exit
        code.

        `spec.stdin` (the secret values, for the container's pre-step) goes to the container's stdin
        after the start, never into its config. The container is removed in every case (any
        exception, Ctrl-C, and SIGTERM once the CLI turns it into KeyboardInterrupt): a rehearsal
        leaves nothing behind in the engine.
        """
        container = None
        removal_error = ""
        try:
            with _engine_errors(
                f"failed to run container {spec.name}",
                "Check the task definition's entryPoint, user and workingDirectory",
            ):
                container = self.client.containers.create(
                    spec.image,
                    entrypoint=spec.entrypoint,
                    command=spec.command,
                    environment=spec.environment,
                    working_dir=spec.working_dir,
                    user=spec.user or None,
                    network_mode=spec.network,
                    tmpfs=spec.tmpfs or None,
                    read_only=spec.read_only,
                    detach=True,
                    stdin_open=bool(spec.stdin),
                    labels={"managed-by": "gcpfargate", "gcpfargate": "run-local"},
                )
                container.start()
                if spec.stdin:
                    self._send_stdin(container, spec.stdin)
                pending = ""
                for chunk in container.logs(stream=True, follow=True, stdout=True, stderr=True):
                    pending += chunk.decode("utf-8", "replace")
                    *lines, pending = pending.split("\n")
                    for line in lines:
                        if on_line is not None:
                            on_line(line)
                if pending and on_line is not None:
                    on_line(pending)
                exit_code = int(container.wait().get("StatusCode", 1))
        finally:
            if container is not None:
                removal_error = self._remove(container)
        if removal_error:
            # Only reached when the run itself went well: its config holds the secret, so say so.
            raise DockerError(
                f"the container ran, but removing it failed: {removal_error}",
                f"Remove it now: docker rm -f {container.id}",
            )
        return exit_code

    @staticmethod
    def _send_stdin(container: Any, data: bytes) -> None:
        """Write `data` to a started container's stdin, then detach.

        The engine copies attached stdin straight into the process's pipe: it is neither logged nor
        stored. The pre-step stops at its end marker and gives the task /dev/null, so the pipe
        staying open after we detach changes nothing. A container that exits before reading breaks
        the pipe; its exit code says why.
        """
        import socket

        sock = container.attach_socket(params={"stdin": 1, "stream": 1})
        raw = getattr(
            sock, "_sock", sock
        )  # unix: a SocketIO around the socket; tcp/tls: the socket itself
        try:
            raw.sendall(data)
            raw.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        finally:
            sock.close()

    @staticmethod
    def _remove(container: Any) -> str:
        """Remove a container; the reason it failed, or "" when it is gone."""
        docker = docker_sdk()

        try:
            container.remove(force=True, v=True)
        except docker.errors.NotFound:
            return ""
        except docker.errors.APIError as exc:
            return DockerEngine._api_reason(exc)
        except (docker.errors.DockerException, *_connection_errors()) as exc:
            return _short_reason(exc)
        return ""

    # -- helpers -----------------------------------------------------------------------------
    @staticmethod
    def _layer_progress(
        chunk: Mapping[str, Any], on_progress: ProgressCallback | None, done_status: str
    ) -> None:
        """Forward one layer event to `on_progress`."""
        layer, status = chunk.get("id"), str(chunk.get("status", ""))
        if not layer or on_progress is None or ":" in str(layer):
            return
        detail = chunk.get("progressDetail") or {}
        description = f"layer {layer}"
        if "current" in detail:
            on_progress(str(layer), description, int(detail["current"]), detail.get("total"))
        elif status in (
            done_status,
            "Layer already exists",
            "Already exists",
            "Download complete",
        ) or status.startswith("Mounted from"):
            on_progress(str(layer), f"{description} ({status.lower()})", 1, 1)
        elif status in ("Preparing", "Waiting", "Pulling fs layer"):
            on_progress(str(layer), description, 0, None)

    @staticmethod
    def _api_reason(exc: Any) -> str:
        explanation = getattr(exc, "explanation", None) or str(exc)
        return redact(" ".join(str(explanation).split()))

    @staticmethod
    def _registry_error(verb: str, image: str, chunk: Mapping[str, Any]) -> DockerError:
        detail = chunk.get("errorDetail") or {}
        message = " ".join(
            str(chunk.get("error") or detail.get("message") or "unknown error").split()
        )
        lowered = message.lower()
        if any(word in lowered for word in _DENIED):
            return DockerError(
                f"failed to {verb} {image}: AccessDenied: the registry refused it ({message})",
                "Check the repository policy and the IAM permissions for ECR "
                f"""({
                    "ecr:InitiateLayerUpload, ecr:PutImage"
                    if verb == "push"
                    else "ecr:BatchGetImage"
                })"""
                "; an immutable-tag repository also refuses an existing tag",
            )
        if "tag invalid" in lowered or "immutable" in lowered:
            return DockerError(
                f"failed to {verb} {image}: the registry refused the tag ({message})",
                "The repository has immutable tags: push under a new tag (--tag)",
            )
        return DockerError(
            f"failed to {verb} {image}: {message}",
            "Check that the registry is reachable (GCPFARGATE_ECR_REGISTRY) and retry",
        )
