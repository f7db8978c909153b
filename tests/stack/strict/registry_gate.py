"""Another account's ECR registry on the Registry HTTP API v2: a loopback gate in front of the
stack's registry that answers as ECR does for a registry the caller does not own.

The strict layer's `ecr.foreign_registry` rule decides the ECR API calls that name another
registry from `settings.foreign_registries` (registry id -> repository -> actions its repository
policy grants the caller's account); this gate decides the reads of the same registry's Registry
API from the same map, so a test sets one grant for both:
- no `Authorization` header → 401 (ECR accepts only its own token, as Basic auth);
- a repository the registry does not list → 404 NAME_UNKNOWN;
- a manifest without `ecr:BatchGetImage`, a blob without `ecr:GetDownloadUrlForLayer` → 403
  DENIED with IAM's "no resource-based policy" text;
- otherwise the read is forwarded to the stack's registry.
Binds 127.0.0.1 only.
"""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

_CALLER = "arn:aws:iam::{account}:user/moto"  # moto's caller for the stack's test credentials


class ForeignRegistryGate:
    def __init__(
        self,
        upstream: str,
        registry_id: str,
        registries: dict[str, dict[str, list[str]]],
        own_account: str,
        region: str,
    ) -> None:
        self.upstream = upstream  # host:port of the stack's registry (plain HTTP)
        self.registry_id = registry_id
        self.registries = registries  # the strict layer's settings.foreign_registries, live
        self.own_account = own_account
        self.region = region
        self.requests: list[tuple[str, str, str]] = []  # (method, path, status)
        self._server: ThreadingHTTPServer | None = None

    @property
    def address(self) -> str:
        assert self._server is not None
        host, port = self._server.server_address[:2]
        return f"{host}:{port}"

    def decide(self, method: str, path: str, authorization: str) -> tuple[int, dict[str, Any]]:
        """(0, {}) to forward; else ECR's status and error body."""
        if not authorization.startswith("Basic "):
            # Source: Docker distribution spec, "UNAUTHORIZED"; ECR answers it to a read without
            # its token ("no basic auth credentials" in docker's words).
            return 401, {"errors": [{"code": "UNAUTHORIZED", "message": "Not Authorized"}]}
        rest = path.removeprefix("/v2/")
        kind = "manifests" if "/manifests/" in rest else "blobs"
        name = rest.partition(f"/{kind}/")[0]
        repositories = self.registries.get(self.registry_id) or {}
        if name not in repositories:
            # Source: ECR's RepositoryNotFoundException text, which docker pull reports as
            # "name unknown: The repository with name 'x' does not exist in the registry with id
            # 'y'".
            message = (
                f"The repository with name '{name}' does not exist in the registry with id "
                f"'{self.registry_id}'"
            )
            return 404, {"errors": [{"code": "NAME_UNKNOWN", "message": message}]}
        action = "ecr:BatchGetImage" if kind == "manifests" else "ecr:GetDownloadUrlForLayer"
        if action not in repositories[name]:
            # Source: docker pull of another account's ECR image without a repository policy
            # grant (aws-actions/amazon-ecr-login#232, everything2/everything2#2562): "denied:
            # User: <arn> is not authorized to perform: ecr:BatchGetImage on resource: <repository
            # arn> because no resource-based policy allows the ecr:BatchGetImage action".
            arn = f"arn:aws:ecr:{self.region}:{self.registry_id}:repository/{name}"
            message = (
                f"User: {_CALLER.format(account=self.own_account)} is not authorized to perform: "
                f"{action} on resource: {arn} because no resource-based policy allows the "
                f"{action} action"
            )
            return 403, {"errors": [{"code": "DENIED", "message": message}]}
        return 0, {}

    def start(self) -> ForeignRegistryGate:
        gate = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                return None

            def _answer(self, head: bool) -> None:
                method = "HEAD" if head else "GET"
                status, error = gate.decide(
                    method, self.path, self.headers.get("Authorization", "")
                )
                if status:
                    gate.requests.append((method, self.path, str(status)))
                    return self._send(status, json.dumps(error).encode(), {}, head)
                request = urllib.request.Request(
                    f"http://{gate.upstream}{self.path}",
                    method=method,
                    headers={"Accept": self.headers.get("Accept", "*/*")},
                )
                try:
                    with urllib.request.urlopen(request, timeout=30) as answer:
                        code, headers, body = answer.status, answer.headers, answer.read()
                except urllib.error.HTTPError as exc:
                    code, headers, body = exc.code, exc.headers, exc.read()
                gate.requests.append((method, self.path, str(code)))
                kept = {
                    key: headers[key]
                    for key in ("Content-Type", "Docker-Content-Digest")
                    if headers.get(key)
                }
                return self._send(code, body, kept, head)

            def _send(self, status: int, body: bytes, headers: dict[str, str], head: bool) -> None:
                self.send_response(status)
                headers.setdefault("Content-Type", "application/json")
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if not head:
                    self.wfile.write(body)

            def do_GET(self) -> None:
                self._answer(head=False)

            def do_HEAD(self) -> None:
                self._answer(head=True)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
