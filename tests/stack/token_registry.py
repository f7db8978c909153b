"""A loopback stand-in for public ECR and Docker Hub: the Registry HTTP API v2 behind token auth.

It answers as the two public registries do for an anonymous client (Docker distribution
"Token Authentication Specification"; public ECR's realm is https://public.ecr.aws/token, Docker
Hub's https://auth.docker.io/token):

- `GET /v2/<name>/manifests/<ref>` or `/blobs/<digest>` without a valid bearer token: 401 with
  `WWW-Authenticate: Bearer realm="<this server>/token",service="<service>",
  scope="repository:<name>:pull"`;
- `GET /token?service=…&scope=repository:<name>:pull` without credentials: `{"token": …}` (an
  anonymous pull token for that one repository); with an `Authorization` header, or for an image
  it does not hold (a private one), 401 `{"errors": [{"code": "UNAUTHORIZED", …}]}` as public ECR
  answers;
- with the token: the image's OCI index, its linux/amd64 manifest, its config blob.

Images are added with `publish(name, tag, config)`; only configs are served (no layers): reading an
image's ENTRYPOINT/CMD/USER needs nothing more. Every request is recorded in `requests`, so a test
can check that no credential was ever sent. Binds 127.0.0.1 only.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

INDEX = "application/vnd.oci.image.index.v1+json"
MANIFEST = "application/vnd.oci.image.manifest.v1+json"
CONFIG = "application/vnd.oci.image.config.v1+json"


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass
class Seen:
    method: str
    path: str
    authorization: str


@dataclass
class TokenRegistry:
    service: str = "public.ecr.aws"
    blobs: dict[str, tuple[str, bytes]] = field(default_factory=dict)  # digest -> (type, bytes)
    tags: dict[tuple[str, str], str] = field(default_factory=dict)  # (name, tag) -> index digest
    tokens: dict[str, str] = field(default_factory=dict)  # token -> repository
    requests: list[Seen] = field(default_factory=list)
    _server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def publish(self, name: str, tag: str, run_config: dict[str, Any]) -> str:
        """Hold image `name:tag` (linux/amd64) whose config's "config" section is `run_config`."""
        config = json.dumps(
            {"architecture": "amd64", "os": "linux", "config": run_config, "rootfs": {}}
        ).encode()
        manifest = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": MANIFEST,
                "config": {"mediaType": CONFIG, "digest": _digest(config), "size": len(config)},
                "layers": [],
            }
        ).encode()
        index = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": INDEX,
                "manifests": [
                    {
                        "mediaType": MANIFEST,
                        "digest": _digest(manifest),
                        "size": len(manifest),
                        "platform": {"os": "linux", "architecture": "amd64"},
                    }
                ],
            }
        ).encode()
        for kind, data in ((CONFIG, config), (MANIFEST, manifest), (INDEX, index)):
            self.blobs[_digest(data)] = (kind, data)
        self.tags[(name, tag)] = _digest(index)
        return _digest(index)

    def start(self) -> TokenRegistry:
        registry = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                return None

            def _send(self, status: int, body: bytes, kind: str, extra: dict[str, str]) -> None:
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                for key, value in extra.items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                auth = self.headers.get("Authorization", "")
                registry.requests.append(Seen("GET", self.path, auth))
                parts = urlsplit(self.path)
                if parts.path == "/token":
                    return self._token(parse_qs(parts.query), auth)
                return self._v2(parts.path, auth)

            def _token(self, query: dict[str, list[str]], auth: str) -> None:
                scope = (query.get("scope") or [""])[0]
                name = scope.removeprefix("repository:").removesuffix(":pull")
                known = any(held == name for held, _ in registry.tags)
                if auth or not scope.endswith(":pull") or not known:
                    body = {"errors": [{"code": "UNAUTHORIZED", "message": "Not Authorized"}]}
                    return self._send(401, json.dumps(body).encode(), "application/json", {})
                token = secrets.token_urlsafe(16)
                registry.tokens[token] = name
                body = json.dumps({"token": token}).encode()
                return self._send(200, body, "application/json", {})

            def _v2(self, path: str, auth: str) -> None:
                rest = path.removeprefix("/v2/")
                kind = "manifests" if "/manifests/" in rest else "blobs"
                name, _, reference = rest.partition(f"/{kind}/")
                token = auth.removeprefix("Bearer ")
                if not auth.startswith("Bearer ") or registry.tokens.get(token) != name:
                    challenge = (
                        f'Bearer realm="{registry.url}/token",service="{registry.service}",'
                        f'scope="repository:{name}:pull"'
                    )
                    body = b'{"errors":[{"code":"UNAUTHORIZED"}]}'
                    return self._send(
                        401, body, "application/json", {"WWW-Authenticate": challenge}
                    )
                digest = registry.tags.get((name, reference), reference)
                if digest not in registry.blobs:
                    return self._send(404, b'{"errors":[]}', "application/json", {})
                media, data = registry.blobs[digest]
                return self._send(200, data, media, {"Docker-Content-Digest": digest})

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
