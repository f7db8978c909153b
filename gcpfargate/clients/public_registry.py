"""Anonymous reads of image configs from public registries: public ECR and Docker Hub.

A container the user names in `task.containers` may run an image from such a registry (an App
Mesh envoy, a FireLens log router); its ENTRYPOINT/CMD and USER come from the image config, which
both registries serve without an account, over the Registry HTTP API v2 with the token flow of
the Docker distribution spec ("Token Authentication Specification"):

1. a request without credentials answers 401 with `WWW-Authenticate: Bearer realm="…",
   service="…",scope="…"`;
2. a GET of `realm?service=…&scope=repository:<name>:pull`, again without credentials, answers an
   anonymous token (`{"token": …}`, or `access_token`);
3. the request again, with `Authorization: Bearer <token>`.

Public ECR's realm is https://public.ecr.aws/token, Docker Hub's https://auth.docker.io/token.
Nothing is sent but the token the registry itself handed out, never an AWS or Docker credential,
and the token is held in memory for this process only. `GCPFARGATE_PUBLIC_REGISTRIES`
(`public.ecr.aws=http://127.0.0.1:5002,docker.io=https://mirror.example`) sends a registry's reads
to another address: a mirror, or a test's loopback registry.
"""

from __future__ import annotations

import os
import threading
from typing import Any

from gcpfargate.clients.registry import MANIFEST_TYPES, _choose_platform, _is_loopback
from gcpfargate.errors import RegistryError

DOCKER_HUB = "docker.io"
PUBLIC_ECR = "public.ecr.aws"
# Names Docker accepts for Docker Hub in an image reference; registry-1 is where its API lives.
_HUB_NAMES = ("docker.io", "index.docker.io", "registry-1.docker.io", "registry.hub.docker.com")
_API = {DOCKER_HUB: "https://registry-1.docker.io", PUBLIC_ECR: "https://public.ecr.aws"}
_INDEX_TYPES = (
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.index.v1+json",
)
_MAX_JSON = 4 * 1024 * 1024  # a manifest or an image config is a few KiB; refuse anything huge


def locate(image: str) -> tuple[str, str, str] | None:
    """`image` as (public registry, repository, tag or digest); None when it is in no public
    registry this module reads. Docker's rules: no host means Docker Hub, whose one-part names
    live under `library/`."""
    name, _, digest = image.partition("@")
    first, slash, rest = name.partition("/")
    if slash and ("." in first or ":" in first or first == "localhost"):
        host, path = first.lower(), rest
    else:
        host, path = DOCKER_HUB, name
    if host in _HUB_NAMES:
        host = DOCKER_HUB
    if host not in _API:
        return None
    repository, tag = path, ""
    if ":" in path.rsplit("/", 1)[-1]:
        repository, _, tag = path.rpartition(":")
    if host == DOCKER_HUB and "/" not in repository:
        repository = f"library/{repository}"
    return host, repository, digest or tag or "latest"


def _overrides() -> dict[str, str]:
    found: dict[str, str] = {}
    for item in os.environ.get("GCPFARGATE_PUBLIC_REGISTRIES", "").split(","):
        name, sep, url = item.strip().partition("=")
        if sep and url.strip():
            found[DOCKER_HUB if name.strip() in _HUB_NAMES else name.strip()] = url.strip()
    return found


def _challenge(header: str) -> dict[str, str]:
    """The parameters of a `Bearer realm="…",service="…"` challenge; {} for another scheme."""
    scheme, _, rest = header.strip().partition(" ")
    if scheme.lower() != "bearer":
        return {}
    params: dict[str, str] = {}
    while rest:
        key, _, rest = rest.strip().partition("=")
        if rest.startswith('"'):
            value, _, rest = rest[1:].partition('"')
        else:
            value, _, rest = rest.partition(",")
        params[key.strip().lower()] = value
        rest = rest.lstrip().removeprefix(",")
    return params


class PublicRegistry:
    """Reads image configs anonymously; one instance per process keeps its tokens."""

    def __init__(self, verify: str | bool = True) -> None:
        self._verify = verify
        self._session: Any = None
        self._tokens: dict[tuple[str, str], str] = {}
        self._configs: dict[tuple[str, str], dict[str, Any]] = {}
        self._lock = threading.Lock()

    def _http(self) -> Any:
        if self._session is None:
            import requests

            self._session = requests.Session()
        return self._session

    def _base(self, registry: str) -> str:
        return _overrides().get(registry, _API[registry]).rstrip("/")

    def run_config(self, image: str, platform: str = "linux/amd64") -> dict[str, Any]:
        """The image config's "config" section (Entrypoint, Cmd, User, Env, …) of `image` for
        `platform`; RegistryError when it cannot be read."""
        where = locate(image)
        if where is None:
            raise RegistryError(f"image {image} is in no public registry gcpfargate reads")
        with self._lock:
            if (image, platform) not in self._configs:
                config = self._read(image, where, platform)
                self._configs[(image, platform)] = dict(config.get("config") or {})
            return self._configs[(image, platform)]

    def _read(self, image: str, where: tuple[str, str, str], platform: str) -> dict[str, Any]:
        registry, repository, reference = where
        try:
            manifest = self._json(registry, repository, f"manifests/{reference}", image)
            if manifest.get("mediaType") in _INDEX_TYPES or "manifests" in manifest:
                chosen = _choose_platform(list(manifest.get("manifests") or []), platform)
                if chosen is None:
                    raise RegistryError(
                        f"image {image} has no {platform} variant in {registry}",
                        "Use an image built for the task's platform (image.platform)",
                    )
                manifest = self._json(registry, repository, f"manifests/{chosen['digest']}", image)
            digest = manifest["config"]["digest"]
            return self._json(registry, repository, f"blobs/{digest}", image)
        except (KeyError, TypeError, AttributeError, ValueError):
            raise RegistryError(
                f"{registry}'s answer for {image} is not an image manifest gcpfargate "
                "understands (Docker v2 schema 2 or OCI)"
            ) from None

    def _json(self, registry: str, repository: str, path: str, image: str) -> dict[str, Any]:
        response = self._get(registry, repository, path, image)
        if response.status_code == 404:
            raise RegistryError(
                f"image {image} is not in {registry} (404 for its {path.split('/')[0]})",
                "Check the image name and tag in the template",
            )
        if response.status_code >= 400:
            raise RegistryError(
                f"failed to read image {image} from {registry}: it answered {response.status_code}",
                "A private image: set its entryPoint/command (and user) in the template",
            )
        if len(response.content) > _MAX_JSON:
            raise RegistryError(f"{registry}'s answer for {image} is too large to be an image")
        data = response.json()
        if not isinstance(data, dict):
            raise ValueError("not an object")
        return data

    def _get(self, registry: str, repository: str, path: str, image: str) -> Any:
        url = f"{self._base(registry)}/v2/{repository}/{path}"
        headers = {"Accept": MANIFEST_TYPES}
        token = self._tokens.get((registry, repository))
        response = self._send(url, headers, token, registry)
        if response.status_code == 401:
            token = self._token(registry, repository, response, image)
            self._tokens[(registry, repository)] = token
            response = self._send(url, headers, token, registry)
        return response

    def _send(self, url: str, headers: dict[str, str], token: str | None, registry: str) -> Any:
        import requests

        sent = {**headers, **({"Authorization": f"Bearer {token}"} if token else {})}
        try:
            # requests drops the Authorization header when a blob redirects to another host (a
            # CDN), so the token goes only to the registry that issued it.
            return self._http().get(url, headers=sent, timeout=30, verify=self._verify)
        except requests.RequestException as exc:
            raise RegistryError(
                f"cannot reach registry {registry}: {type(exc).__name__}",
                "Check the network (a proxy or firewall may block it), or set the container's "
                "entryPoint/command (and user) in the template",
            ) from None

    def _token(self, registry: str, repository: str, refused: Any, image: str) -> str:
        """An anonymous pull token from the realm the registry's 401 names."""
        import requests

        params = _challenge(str(refused.headers.get("WWW-Authenticate", "")))
        realm = params.get("realm", "")
        if not realm.startswith(("https://", "http://")) or (
            realm.startswith("http://") and not _is_loopback(realm[7:].split("/", 1)[0])
        ):
            raise RegistryError(
                f"registry {registry} refused an anonymous read of {image} (401) and names no "
                "token service gcpfargate can use",
                "A private image: set its entryPoint/command (and user) in the template",
            )
        query = {"scope": params.get("scope") or f"repository:{repository}:pull"}
        if params.get("service"):
            query["service"] = params["service"]
        try:
            answer = self._http().get(realm, params=query, timeout=30, verify=self._verify)
        except requests.RequestException as exc:
            raise RegistryError(
                f"cannot reach the token service of {registry}: {type(exc).__name__}",
                "Check the network, or set the container's entryPoint/command in the template",
            ) from None
        token = ""
        if answer.status_code == 200:
            try:
                data = answer.json()
                token = str(data.get("token") or data.get("access_token") or "")
            except ValueError:
                token = ""
        if not token:
            raise RegistryError(
                f"registry {registry} gave no anonymous token for {image} "
                f"({answer.status_code}): the image is private or does not exist",
                "Check the image name, or set its entryPoint/command (and user) in the template",
            )
        return token
