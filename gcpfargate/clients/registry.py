"""The image registry (ECR, or `GCPFARGATE_ECR_REGISTRY=host:port`) over the Docker Registry HTTP
API v2.

Authentication always comes from ECR's GetAuthorizationToken, held in memory for this process
only: nothing is written to ~/.docker/config.json. Used to pin images by digest, to read an
image's ENTRYPOINT/CMD and platform from its config blob, and to decide whether a push is a no-op.

TLS is verified against the CA bundle the AWS SDK uses (AWS_CA_BUNDLE, or the profile's
`ca_bundle`): behind a TLS-inspecting proxy ECR's certificate is the proxy's. Without one, requests'
own (REQUESTS_CA_BUNDLE, else certifi's). The override may name its scheme
(`https://127.0.0.1:5443`): a loopback registry is otherwise spoken to in plain HTTP.
"""

from __future__ import annotations

import base64
import ipaddress
import os
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from gcpfargate.errors import AwsError, RegistryError

if TYPE_CHECKING:
    from gcpfargate.clients.aws import AwsClients

MANIFEST_TYPES = ", ".join(
    [
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.oci.image.index.v1+json",
    ]
)
_INDEX_TYPES = (
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.index.v1+json",
)


@dataclass(frozen=True)
class Credentials:
    username: str
    password: str  # a short-lived ECR token; never logged

    def __repr__(self) -> str:
        return f"Credentials(username={self.username!r}, password=<hidden>)"


@dataclass(frozen=True)
class ImageRef:
    """What the registry holds for `repository:reference`."""

    repository: str
    digest: str  # the manifest digest, sha256:…
    config_digest: str  # the image id, sha256:…
    config: dict[str, Any]  # the config blob: architecture, os, config.Entrypoint/Cmd/…

    @property
    def platform(self) -> str:
        return f"{self.config.get('os', 'linux')}/{self.config.get('architecture', 'amd64')}"

    @property
    def run_config(self) -> dict[str, Any]:
        """The config's "config" section: Entrypoint, Cmd, Env, … (what `docker run` starts)."""
        return dict(self.config.get("config") or {})


def _override() -> tuple[str, str]:
    """GCPFARGATE_ECR_REGISTRY as (scheme or "", host:port); ("", "") when unset."""
    value = os.environ.get("GCPFARGATE_ECR_REGISTRY", "").strip()
    scheme, found, host = value.partition("://")
    return (scheme.lower(), host.rstrip("/")) if found else ("", value)


def _is_loopback(host: str) -> bool:
    name = host.rsplit(":", 1)[0].strip("[]")
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


class Registry:
    def __init__(self, aws: AwsClients, registry_id: str = "", endpoint: str = "") -> None:
        """`registry_id`: the account whose ECR registry holds the images (image.registry_id; ""
        for the caller's own). `endpoint`: the host gcpfargate pushes to and reads from when it
        is not the registry's own name (image.registry_host: an interface VPC endpoint's DNS name
        without private DNS, a proxy); image names, and so task definitions, keep ECR's name,
        which is what ECS authenticates and pulls."""
        self._aws = aws
        self.registry_id = registry_id
        self._endpoint = endpoint.strip().rstrip("/")
        self._credentials: Credentials | None = None
        self._host: str | None = None
        self._proxy_endpoint = ""  # from GetAuthorizationToken: https://<host>
        self._session: Any = None
        self._verify: str | bool = True  # requests' `verify`: a CA bundle's path, or the default
        self._lock = threading.Lock()
        self._call_log = os.environ.get("GCPFARGATE_CALL_LOG")
        # Digest references are content-addressed, so what one step resolved holds for the next.
        self._by_digest: dict[tuple[str, str, str], ImageRef] = {}

    @property
    def host(self) -> str:
        if self._host is None:
            override = _override()[1]
            # ECR names its own host: GetAuthorizationToken's proxyEndpoint, which is
            # right in every partition and for FIPS/dual-stack endpoints. Built from the region's
            # DNS suffix only when an answer carries none.
            self._host = (
                override
                or self._proxy_host()
                or ecr_host(
                    self.registry_id or self._aws.account_id,
                    self._aws.region,
                    self._aws.dns_suffix(),
                )
            )
        return self._host

    @property
    def endpoint(self) -> str:
        """Where requests and pushes go: image.registry_host when set, else the registry's name."""
        return self._endpoint or self.host

    @property
    def token_params(self) -> dict[str, Any]:
        """GetAuthorizationToken's parameters: another account's registry is named (`registryIds`),
        so the answer's proxyEndpoint is that registry's host."""
        return {"registryIds": [self.registry_id]} if self.registry_id else {}

    @property
    def ecr_params(self) -> dict[str, Any]:
        """`registryId` for the repository and image calls when the registry is another
        account's."""
        return {"registryId": self.registry_id} if self.registry_id else {}

    @property
    def host_needs_token(self) -> bool:
        """Whether finding the host takes ECR's GetAuthorizationToken (no override, not found
        yet)."""
        return self._host is None and not _override()[1]

    def _proxy_host(self) -> str:
        self.credentials()
        endpoint = self._proxy_endpoint
        return endpoint.split("://", 1)[-1].rstrip("/")

    @property
    def scheme(self) -> str:
        # A local registry on loopback speaks plain HTTP (Docker itself treats 127.0.0.0/8 as
        # insecure).
        scheme = _override()[0]
        if scheme in ("http", "https"):
            return scheme
        return "http" if _is_loopback(self.endpoint) else "https"

    def image_name(self, repository: str) -> str:
        return f"{self.host}/{repository}"

    def credentials(self) -> Credentials:
        with self._lock:
            if self._credentials is None:
                data = self._aws.call(
                    "ecr",
                    "get_authorization_token",
                    "get an ECR authorization token",
                    **self.token_params,
                )
                try:
                    token = data["authorizationData"][0]["authorizationToken"]
                    username, _, password = base64.b64decode(token).decode("utf-8").partition(":")
                    self._proxy_endpoint = str(
                        data["authorizationData"][0].get("proxyEndpoint") or ""
                    )
                except (KeyError, IndexError, TypeError, ValueError):
                    password = ""
                if not password:
                    raise AwsError(
                        "ECR returned a malformed authorization token",
                        "Retry; check the ECR endpoint",
                    )
                self._credentials = Credentials(username, password)
            return self._credentials

    def _http(self) -> Any:
        if self._session is None:
            import requests

            session = requests.Session()
            creds = self.credentials()
            session.auth = (creds.username, creds.password)
            self._verify = self._aws.ca_bundle or True
            self._session = session
        return self._session

    def _send(self, method: str, url: str, headers: dict[str, str] | None = None) -> Any:
        """One request; the CA bundle is passed per request, since requests lets REQUESTS_CA_BUNDLE
        beat a session's own `verify`."""
        session = self._http()
        return session.request(method, url, headers=headers or {}, timeout=30, verify=self._verify)

    def _unreachable(self, exc: Exception) -> RegistryError:
        import requests

        if isinstance(exc, requests.exceptions.SSLError):
            bundle = self._verify if isinstance(self._verify, str) else ""
            return RegistryError(
                f"cannot reach registry {self.endpoint}: its TLS certificate is not trusted "
                f"(SSLError{', with CA bundle ' + bundle if bundle else ''})",
                "Behind a TLS-inspecting proxy, set AWS_CA_BUNDLE (or ca_bundle in the AWS "
                "profile) to a file holding the proxy's CA certificate",
            )
        return RegistryError(
            f"cannot reach registry {self.endpoint}: {type(exc).__name__}",
            "Check the network and "
            + (
                "GCPFARGATE_ECR_REGISTRY"
                if _override()[1]
                else "image.registry_host (the registry's host where its own name does not "
                "lead to it, as with a VPC endpoint without private DNS)"
            ),
        )

    def _get(self, path: str, accept: str = "", head: bool = False) -> Any:
        import requests

        url = f"{self.scheme}://{self.endpoint}/v2/{path}"
        self._count("HEAD" if head else "GET", path)
        try:
            return self._send("HEAD" if head else "GET", url, {"Accept": accept} if accept else {})
        except requests.RequestException as exc:
            raise self._unreachable(exc) from None

    def _count(self, method: str, path: str) -> None:
        # The kind of resource, not the path: repository names and digests stay out of the log.
        kind = next(
            (each for each in ("manifests", "blobs", "tags") if f"/{each}/" in f"/{path}"), "other"
        )
        if self._call_log:
            with open(self._call_log, "a", encoding="utf-8") as log:
                log.write(f"registry {method} {kind}\n")

    def resolve(
        self, repository: str, reference: str, platform: str = "linux/amd64"
    ) -> ImageRef | None:
        """Manifest digest and config of `repository:reference` (tag or digest) for `platform`
        (Docker's arch names); None when absent."""
        if not reference.startswith("sha256:"):
            found = self._resolve(repository, reference, platform)
            if found is not None:  # a later lookup by its digest (to pin it) needs no request
                self._by_digest[(repository, found.digest, platform)] = found
            return found
        memo = (repository, reference, platform)
        if memo not in self._by_digest:
            found = self._resolve(repository, reference, platform)
            if found is None:
                return None  # not remembered: a push may bring it
            self._by_digest[memo] = found
        return self._by_digest[memo]

    def manifest_digest(self, repository: str, reference: str) -> str | None:
        """The digest of the manifest (or index) `repository:reference` names; None when absent.

        A HEAD answers with the Docker-Content-Digest header (the Registry API's and ECR's); a
        registry that leaves it out costs a GET, whose bytes are the digest's input."""
        path = f"{repository}/manifests/{reference}"
        response = self._get(path, MANIFEST_TYPES, head=True)
        if response.status_code == 404:
            return None
        self._raise_for(response, f"read manifest {repository}:{reference}")
        digest = response.headers.get("Docker-Content-Digest")
        if digest:
            return str(digest)
        response = self._get(path, MANIFEST_TYPES)
        if response.status_code == 404:
            return None
        self._raise_for(response, f"read manifest {repository}:{reference}")
        return _digest(response.content)

    def _resolve(self, repository: str, reference: str, platform: str) -> ImageRef | None:
        try:
            return self._resolve_unchecked(repository, reference, platform)
        except (KeyError, IndexError, TypeError, ValueError, AttributeError):
            # Not JSON, a schema-1 manifest, a config without a digest: not something we can pin.
            raise RegistryError(
                f"the registry's answer for {repository}:{reference} is not an image manifest "
                "gcpfargate understands (Docker v2 schema 2 or OCI)",
                "Push the image with a current Docker or buildx",
            ) from None

    def _resolve_unchecked(self, repository: str, reference: str, platform: str) -> ImageRef | None:
        response = self._get(f"{repository}/manifests/{reference}", MANIFEST_TYPES)
        if response.status_code == 404:
            return None
        self._raise_for(response, f"read manifest {repository}:{reference}")
        manifest = response.json()
        digest = response.headers.get("Docker-Content-Digest") or _digest(response.content)
        if manifest.get("mediaType") in _INDEX_TYPES or "manifests" in manifest:
            chosen = _choose_platform(manifest.get("manifests", []), platform)
            if chosen is None:
                return None
            inner = self.resolve(repository, chosen["digest"], platform)
            # Pin the index digest: it is what `docker pull repo@digest` and ECS resolve.
            return (
                None
                if inner is None
                else ImageRef(repository, digest, inner.config_digest, inner.config)
            )
        config_digest = manifest["config"]["digest"]
        blob = self._get(f"{repository}/blobs/{config_digest}")
        self._raise_for(blob, f"read the image config of {repository}:{reference}")
        return ImageRef(repository, digest, config_digest, blob.json())

    def delete(self, repository: str, digest: str) -> None:
        """Delete the image `repository@digest` (all its tags); an image already gone is not an
        error.

        ECR deletes through its own API (BatchDeleteImage); a `GCPFARGATE_ECR_REGISTRY` override is
        a plain registry, which deletes through the Registry API (DELETE of the manifest)."""
        if not _override()[1]:
            answer = self._aws.call(
                "ecr",
                "batch_delete_image",
                f"delete image {repository}@{digest}",
                repositoryName=repository,
                imageIds=[{"imageDigest": digest}],
                **self.ecr_params,
            )
            failures = [
                f for f in answer.get("failures") or [] if f.get("failureCode") != "ImageNotFound"
            ]
            if failures:
                raise AwsError(
                    f"failed to delete image {repository}@{digest}: "
                    f"{failures[0].get('failureReason')}",
                    "Check ecr:BatchDeleteImage permission",
                ).with_code(str(failures[0].get("failureCode")))
            return
        import requests

        self._count("DELETE", f"{repository}/manifests/")
        try:
            response = self._send(
                "DELETE", f"{self.scheme}://{self.endpoint}/v2/{repository}/manifests/{digest}"
            )
        except requests.RequestException as exc:
            raise self._unreachable(exc) from None
        if response.status_code != 404:
            self._raise_for(response, f"delete image {repository}@{digest}")

    def _raise_for(self, response: Any, action: str) -> None:
        if response.status_code in (401, 403):
            raise RegistryError(
                f"failed to {action}: the registry refused access ({response.status_code})",
                "Check ECR permissions (ecr:BatchGetImage, ecr:GetDownloadUrlForLayer)",
            )
        if response.status_code >= 400:
            raise RegistryError(f"failed to {action}: registry answered {response.status_code}")


def ecr_host(registry_id: str, region: str, dns_suffix: str) -> str:
    """ECR's registry host: `<account>.dkr.ecr.<region>.<suffix>` (amazonaws.com; amazonaws.com.cn
    in China; the ECR user guide, "Private registry concepts")."""
    return f"{registry_id}.dkr.ecr.{region}.{dns_suffix}"


def _digest(content: bytes) -> str:
    import hashlib

    return "sha256:" + hashlib.sha256(content).hexdigest()


def _choose_platform(manifests: list[dict[str, Any]], platform: str) -> dict[str, Any] | None:
    os_name, _, arch = platform.partition(
        "/"
    )  # in Docker's words (amd64, arm64): see core/images.py
    for entry in manifests:
        plat = entry.get("platform", {})
        if plat.get("os") == os_name and plat.get("architecture") == arch:
            return entry
    return None
