"""The HTTP face: token endpoint, the emulated API, Google's x509 metadata, and test control.

Routes (all on 127.0.0.1):
  POST /token                           OAuth2 JWT-bearer grant (token_endpoint.py)
  GET  /v1/whoami                       a "Google API" that answers valid access tokens only
  GET  /robot/v1/metadata/x509/EMAIL    public certificates of the account's keys
  GET  /admin/...  POST /admin/...      test control; see ADMIN_POST and IamEmulator for each knob
  anything mounted with IamEmulator.mount(): further Google surfaces as their own modules (the
  keyless work: workload identity pools REST, STS /v1/token, generateAccessToken)
Nothing is logged: requests carry bearer tokens and the admin answers can carry key material.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import urllib.parse
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

from tests.stack.iam.errors import UNAUTHENTICATED_MESSAGE

if TYPE_CHECKING:
    from tests.stack.iam.emulator import IamEmulator

_NOT_FOUND = {"error": {"code": 404, "message": "Not Found", "status": "NOT_FOUND"}}


@dataclass(frozen=True)
class HttpRequest:
    """What a mounted route sees of a request."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: Mapping[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body) if self.body.strip() else {}


class _Headers(dict[str, str]):
    """Request headers by lower-cased name; look-ups ignore case."""

    def get(self, key: str, default: Any = None) -> Any:  # type: ignore[override]
        return super().get(key.lower(), default)

    def __getitem__(self, key: str) -> str:
        return super().__getitem__(key.lower())

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and super().__contains__(key.lower())


# A mounted route answers (HTTP status, JSON body), or None to let the next matching route answer.
RouteHandler = Callable[[HttpRequest], tuple[int, Any] | None]


def _opt_str(body: dict[str, Any], name: str) -> str | None:
    value = body.get(name)
    return None if value is None else str(value)


def _opt_float(body: dict[str, Any], name: str) -> float | None:
    value = body.get(name)
    return None if value is None else float(value)


def _add_account(emu: IamEmulator, body: dict[str, Any]) -> dict[str, Any]:
    account = emu.add_service_account(
        str(body["project"]),
        str(body["account_id"]),
        str(body.get("display_name", "")),
        str(body.get("description", "")),
    )
    return {"name": account.name, "email": account.email, "unique_id": account.unique_id}


# POST /admin/<path> -> action(emulator, JSON body); an action may return a JSON answer.
ADMIN_POST: dict[str, Callable[[IamEmulator, dict[str, Any]], dict[str, Any] | None]] = {
    "/admin/fail": lambda emu, b: emu.fail_nth(
        str(b["method"]),
        int(b.get("nth", 1)),
        str(b.get("code", "UNAVAILABLE")),
        str(b.get("message", "The service is currently unavailable.")),
        str(b.get("when", "before")),
    ),
    "/admin/refuse-grants": lambda emu, b: emu.refuse_grants(int(b.get("count", 1))),
    "/admin/clear-faults": lambda emu, b: emu.clear_faults(),
    "/admin/reset-knobs": lambda emu, b: emu.reset_knobs(),
    "/admin/reset-stats": lambda emu, b: emu.reset_stats(),
    "/admin/service-accounts": _add_account,
    "/admin/disable-service-account": lambda emu, b: emu.set_service_account_disabled(
        str(b["email"]), bool(b.get("disabled", True))
    ),
    "/admin/deny-key-creation": lambda emu, b: emu.deny_key_creation(
        str(b["project"]), bool(b.get("deny", True)), _opt_str(b, "constraint")
    ),
    "/admin/propagation": lambda emu, b: emu.set_propagation_delay(
        float(b.get("seconds", 0)), int(b.get("refusals", 0)), email=_opt_str(b, "email")
    ),
    "/admin/key-expiry": lambda emu, b: emu.set_key_expiry_hours(
        _opt_float(b, "hours"), email=_opt_str(b, "email")
    ),
    "/admin/key-valid-before": lambda emu, b: emu.set_key_valid_before(
        str(b["email"]),
        str(b["key_id"]),
        dt.datetime.fromisoformat(str(b["valid_before"]).replace("Z", "+00:00")),
    ),
    "/admin/key-limit": lambda emu, b: emu.set_key_limit(
        int(b.get("max_keys", 10)), str(b.get("code", "FAILED_PRECONDITION"))
    ),
    "/admin/exhaust-key-quota": lambda emu, b: emu.exhaust_key_quota(
        int(b.get("count", 1)), project=_opt_str(b, "project")
    ),
    "/admin/disable-service": lambda emu, b: emu.disable_service(
        str(b["project"]), bool(b.get("disabled", True))
    ),
    "/admin/vpc-perimeter": lambda emu, b: emu.enclose_in_perimeter(
        str(b["project"]), bool(b.get("enclosed", True))
    ),
    "/admin/deny-permission": lambda emu, b: emu.deny_permission(
        str(b["permission"]), project=_opt_str(b, "project"), deny=bool(b.get("deny", True))
    ),
    "/admin/account-visibility": lambda emu, b: emu.set_account_visibility_delay(
        float(b.get("seconds", 0)), int(b.get("calls", 0))
    ),
    "/admin/token-lifetime": lambda emu, b: emu.set_token_lifetime(float(b["seconds"])),
    "/admin/operation-polls": lambda emu, b: emu.set_operation_polls(int(b.get("polls", 1))),
}


class HttpServer(ThreadingHTTPServer):
    daemon_threads = True
    emulator: IamEmulator
    # (method, path prefix, handler), tried in order after the built-in routes.
    mounted: list[tuple[str, str, RouteHandler]]


class HttpHandler(BaseHTTPRequestHandler):
    server: HttpServer
    server_version = "IamEmulator/1"

    # Requests may carry bearer tokens; never log them (or anything else) to stderr.
    def log_message(self, format: str, *args: Any) -> None:
        return

    @property
    def emulator(self) -> IamEmulator:
        return self.server.emulator

    def _send_json(self, status: int, body: Any, headers: Iterable[tuple[str, str]] = ()) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        for name, value in headers:
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def _read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _read_json(self) -> dict[str, Any]:
        raw = self._read_body()
        body = json.loads(raw) if raw.strip() else {}
        if not isinstance(body, dict):
            raise ValueError("JSON object expected")
        return body

    def do_GET(self) -> None:
        url = urllib.parse.urlsplit(self.path)
        path, query = url.path, urllib.parse.parse_qs(url.query)
        if path == "/v1/whoami":
            identity = self.emulator.tokens.authenticate(self.headers.get("Authorization"))
            if identity is None:
                self._send_json(
                    401,
                    {
                        "error": {
                            "code": 401,
                            "message": UNAUTHENTICATED_MESSAGE,
                            "status": "UNAUTHENTICATED",
                        }
                    },
                    [
                        (
                            "WWW-Authenticate",
                            'Bearer realm="https://accounts.google.com/", error="invalid_token"',
                        )
                    ],
                )
            else:
                self._send_json(200, identity)
        elif path == "/admin/stats":
            self._send_json(200, self.emulator.stats())
        elif path == "/admin/keys":
            email = query.get("email", [""])[0]
            try:
                ids = self.emulator.key_ids(email, include_deleted=True)
                states = {key_id: self.emulator.key_state(email, key_id) for key_id in ids}
            except KeyError:
                self._send_json(404, {"error": f"no service account {email}"})
                return
            self._send_json(200, {"keys": states})
        elif path == "/admin/minted-keys":
            minted = [
                {
                    "key_id": m.key_id,
                    "email": m.email,
                    "private_key_pem": m.private_key_pem,
                    "private_key_data_b64": base64.b64encode(m.private_key_data).decode(),
                }
                for m in self.emulator.minted_keys()
            ]
            self._send_json(200, {"keys": minted}, [("Cache-Control", "no-store")])
        elif path.startswith("/robot/v1/metadata/x509/"):
            certs = self.emulator.tokens.public_certificates(
                urllib.parse.unquote(path.rsplit("/", 1)[1])
            )
            if certs is None:
                self._send_json(404, _NOT_FOUND)
            else:
                self._send_json(200, certs)
        elif path == "/healthz":
            self._send_json(200, {"ok": True})
        else:
            self._dispatch_mounted("GET")

    def do_POST(self) -> None:
        path = urllib.parse.urlsplit(self.path).path
        if path == "/token":
            self._token()
            return
        action = ADMIN_POST.get(path)
        if action is None:
            self._dispatch_mounted("POST")
            return
        try:
            answer = action(self.emulator, self._read_json())
        except (KeyError, ValueError, TypeError) as exc:
            self._send_json(400, {"error": str(exc)})
            return
        self._send_json(200, answer if answer is not None else {"ok": True})

    def do_PATCH(self) -> None:
        self._dispatch_mounted("PATCH")

    def do_DELETE(self) -> None:
        self._dispatch_mounted("DELETE")

    def _dispatch_mounted(self, method: str) -> None:
        url = urllib.parse.urlsplit(self.path)
        request: HttpRequest | None = None
        for route_method, prefix, handler in self.server.mounted:
            if route_method == method and url.path.startswith(prefix):
                if request is None:
                    # HTTP header names are case-insensitive (google-auth sends "authorization").
                    headers = _Headers(
                        {name.lower(): value for name, value in self.headers.items()}
                    )
                    request = HttpRequest(
                        method,
                        url.path,
                        urllib.parse.parse_qs(url.query),
                        headers,
                        self._read_body(),
                    )
                answer = handler(request)
                if answer is None:  # not this route's path after all: try the next one
                    continue
                self._send_json(*answer)
                return
        self._send_json(404, _NOT_FOUND)

    def _token(self) -> None:
        raw = self._read_body().decode("utf-8", "replace")
        if "application/json" in self.headers.get("Content-Type", ""):
            try:
                parsed = json.loads(raw)
            except ValueError:
                parsed = None
            form = {k: str(v) for k, v in parsed.items()} if isinstance(parsed, dict) else {}
        else:
            form = {k: v[0] for k, v in urllib.parse.parse_qs(raw).items()}
        if "assertion" not in form:
            missing = {
                "error": "invalid_request",
                "error_description": "Missing required parameter: assertion",
            }
            self._send_json(400, missing)
            return
        status, body = self.emulator.tokens.exchange(form.get("grant_type", ""), form["assertion"])
        self._send_json(status, body, [("Cache-Control", "no-store")])
