"""bootstrap's IAM reads made ahead by a forked child (clients/google/ahead.py, core/forked.py),
against the stack's IAM emulator.

What must hold: an answer taken from the child is what the adapter would have read itself (the
account, the key, a missing account, a refusal with its wording and exit code), the parent then
imports no Google client library, a key the child did not read (another key, or any read after a
write) is asked again, a child never let go asks Google nothing, and a deploy says when its reads
came from the child (and still makes each read once: test_calls.py).
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import grpc

from gcpfargate.clients.google.gcp import IamAdmin
from tests.conftest import Project
from tests.integration.helpers import prepare

# Each case runs in a fresh interpreter, as the CLI does: a pytest worker has the stack's threads
# running, and nothing is forked once a thread runs.
DRIVER = """
import dataclasses, json, sys
from gcpfargate.clients.google.ahead import IamAhead
from gcpfargate.clients.google.gcp import IamAdmin
from gcpfargate.errors import GcpError

case, project, account, hint_email, hint_key, asked_key, other_key = sys.argv[1:8]
hint = {"email": hint_email, "key_id": hint_key} if hint_key else None
ahead = IamAhead.start("grpc", "", project, account, hint)
if ahead is None:
    print(json.dumps({"started": False}))
    sys.exit(0)
if case == "close":
    ahead.close()
    print(json.dumps({"started": True}))
    sys.exit(0)
ahead.go()


def outcome(call):
    try:
        value = call()
    except GcpError as exc:
        return {"error": type(exc).__name__, "message": exc.message, "hint": exc.hint,
                "code": exc.code, "exit": int(exc.exit_code)}
    return None if value is None else {k: str(v) for k, v in dataclasses.asdict(value).items()}


iam = IamAdmin()
iam.read_ahead_from(ahead)
out = {"started": True, "account": outcome(lambda: iam.get_service_account(project, account))}
email = (out["account"] or {}).get("email", account)
if case == "write":
    iam.disable_key(email, other_key)  # a write: what was read before may have changed
if asked_key:
    out["key"] = outcome(lambda: iam.get_key(email, asked_key))
out["answered_ahead"] = iam.answered_ahead
out["google_imported"] = "google.cloud.iam_admin_v1" in sys.modules
direct = IamAdmin()
out["direct_account"] = outcome(lambda: direct.get_service_account(project, account))
if asked_key:
    out["direct_key"] = outcome(lambda: direct.get_key(email, asked_key))
print(json.dumps(out))
"""


def drive(
    project: Project,
    case: str = "answer",
    account: str = "",
    hint: str = "",
    asked: str = "",
    other: str = "",
) -> dict[str, Any]:
    argv = [case, project.gcp_project, account or project.account_id, project.email, hint]
    out = subprocess.run(
        [sys.executable, "-c", DRIVER, *argv, asked, other],
        capture_output=True,
        text=True,
        env=project.env,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    answer = dict(json.loads(out.stdout))
    assert answer.pop("started"), "nothing forked in a fresh single-threaded interpreter"
    return answer


def new_key(project: Project) -> str:
    iam = IamAdmin(emulator_host=project.env["IAM_EMULATOR_HOST"])
    return iam.create_key(project.email).key_id


def calls(project: Project, method: str) -> int:
    return int(project.stack.emulator.stats()["calls"].get(method, 0))


def test_answers_from_the_child_are_the_adapters_own(project: Project) -> None:
    key = new_key(project)
    before = calls(project, "GetServiceAccountKey")
    answer = drive(project, hint=key, asked=key)
    assert answer["account"] == answer["direct_account"]
    assert answer["account"]["email"] == project.email
    assert answer["key"] == answer["direct_key"] and answer["key"]["key_id"] == key
    assert answer["answered_ahead"] == 2
    # Served from the child: the parent never imported Google's client library for them.
    assert answer["google_imported"] is False
    # One read by the child, one by the direct adapter: none asked twice.
    assert calls(project, "GetServiceAccountKey") - before == 2


def test_a_missing_account_is_answered_as_missing(project: Project) -> None:
    answer = drive(project, account="nobody-here")
    assert answer["account"] is None and answer["direct_account"] is None
    assert answer["answered_ahead"] == 1 and answer["google_imported"] is False


def test_a_refusal_is_raised_with_the_adapters_wording_and_exit_code(project: Project) -> None:
    emulator = project.stack.emulator
    for nth in (1, 2):  # the child's read and the direct one both meet it
        emulator.fail_nth(
            "GetServiceAccount", nth, grpc.StatusCode.PERMISSION_DENIED, "Permission denied."
        )
    try:
        answer = drive(project)
    finally:
        emulator.clear_faults()
    assert answer["account"]["code"] == "PERMISSION_DENIED"
    assert answer["account"] == answer["direct_account"]
    assert answer["answered_ahead"] == 1


def test_a_key_the_child_did_not_read_is_asked_here(project: Project) -> None:
    recorded, current = new_key(project), new_key(project)
    answer = drive(project, hint=recorded, asked=current)
    assert answer["key"] == answer["direct_key"] and answer["key"]["key_id"] == current
    assert answer["answered_ahead"] == 1  # the account only
    assert answer["google_imported"] is True


def test_a_read_after_a_write_is_asked_again(project: Project) -> None:
    key, other = new_key(project), new_key(project)
    before = calls(project, "GetServiceAccountKey")
    answer = drive(project, "write", hint=key, asked=key, other=other)
    assert answer["key"] == answer["direct_key"]
    assert answer["answered_ahead"] == 1  # the account: read before the write
    # The child's read, this process's own after the write, the direct one.
    assert calls(project, "GetServiceAccountKey") - before == 3


def test_a_child_never_let_go_asks_nothing(project: Project) -> None:
    before = calls(project, "GetServiceAccount")
    drive(project, "close")
    assert calls(project, "GetServiceAccount") == before


def test_deploy_takes_both_reads_from_the_child_once_the_key_is_recorded(project: Project) -> None:
    prepare(project)
    first = project.run("deploy", "--verbose")
    assert first.returncode == 0, first.output
    assert "1 GCP read(s) made by a second process" in first.output  # no key recorded yet
    again = project.run("deploy", "--verbose")
    assert again.returncode == 0, again.output
    assert "2 GCP read(s) made by a second process" in again.output
