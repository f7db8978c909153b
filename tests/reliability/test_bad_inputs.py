"""Run the bad-input corpus: every case is one clean line, exit 1 or 2, and changes nothing.

"Nothing" is judged by the stack's write journal (tests/reliability/helpers.py `write_mark`): no
successful AWS write through the strict layer, no mutating IAM emulator call, no change to the
account's keys, no registry upload, no engine event. Its cost does not grow with what the worker's
earlier tests left, as a snapshot of the whole stack did; test_invariants.py proves it sees each
kind of write. Without the strict layer (GCPF_STACK_STRICT=0) the snapshot is compared instead.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import Any

import pytest

from tests.conftest import Project, assert_one_clean_line, record_figure
from tests.reliability.corpus import CASES, WHY, Case
from tests.reliability.helpers import WriteMark, snapshot, write_mark, writes_since
from tests.stack.faultproxy import FaultProxy, Rule


def fake_key(email: str) -> str:
    # Built at run time so no committed file holds key-looking text.
    pem = "-----BEGIN " + "PRIVATE KEY-----\nMIIfake\n-----END " + "PRIVATE KEY-----\n"
    return json.dumps(
        {
            "type": "service_account",
            "private_key": pem,
            "private_key_id": "0" * 40,
            "client_email": email,
            "project_id": "other",
        }
    )


def _secret(value: str) -> Callable[[Project], dict[str, Any]]:
    def setup(project: Project) -> dict[str, Any]:
        project.aws("secretsmanager").create_secret(Name=project.secret_name, SecretString=value)
        return {}

    return setup


SETUPS: dict[str, Callable[[Project], dict[str, Any]]] = {
    "no_aws_credentials": lambda p: {
        "AWS_ACCESS_KEY_ID": None,
        "AWS_SECRET_ACCESS_KEY": None,
        "AWS_SESSION_TOKEN": None,
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI": None,
    },
    "aws_down": lambda p: {"AWS_ENDPOINT_URL": "http://127.0.0.1:9", "AWS_MAX_ATTEMPTS": "1"},
    "secret_not_json": _secret("just a password"),
    "secret_not_a_key": _secret(json.dumps({"type": "authorized_user", "refresh_token": "x"})),
    "secret_wrong_account": _secret(fake_key("someone-else@other-project.iam.gserviceaccount.com")),
    "fifo_config": lambda p: (os.mkfifo(p.dir / "fifo.toml"), {})[1],
}


# Cases whose command builds the image on the user's engine before the remote step that fails
# (push-image asks ECR for a token after the build): the local image is the user's, and the
# registry, AWS and the IAM emulator must still be untouched. Every other case leaves the engine
# as it was too.
BUILDS_FIRST = {"ecr-token-expired"}


def test_corpus_is_large_enough() -> None:
    assert len(CASES) >= 40
    assert len({case.id for case in CASES}) == len(CASES)
    # Every case says why its input is wrong, with a reason that is more than the setting's name.
    assert sorted(WHY) == sorted(case.id for case in CASES)
    for case in CASES:
        assert WHY[case.id] and not set(WHY[case.id]) <= set(case.names), case.id


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_bad_input(case: Case, project: Project) -> None:
    config = project.dir / "gcpfargate.toml"
    if case.config is None:
        config.unlink()
    else:
        config.write_text(
            case.config.format(
                project=project.gcp_project, account=project.account_id, family=project.family
            )
            + case.extra_config
        )
    for name, content in case.files.items():
        path = project.dir / name
        path.write_bytes(content) if isinstance(content, bytes) else path.write_text(content)
    env: dict[str, str | None] = dict(case.env)
    proxy = None
    if case.setup == "ecr_token_expired":
        proxy = FaultProxy(project.stack.moto_url).start()
        proxy.add(
            Rule(
                "GetAuthorizationToken",
                status=400,
                code="ExpiredTokenException",
                message="The security token included in the request is expired",
                times=-1,
            )
        )
        env["AWS_ENDPOINT_URL"] = proxy.url
    elif case.setup:
        env.update(SETUPS[case.setup](project))
    journal = project.stack.strict is not None
    before = write_mark(project) if journal else snapshot(project)
    try:
        result = project.run(*case.args, env=env, timeout=120)
    finally:
        if proxy is not None:
            proxy.stop()
    record_figure("bad-input corpus", "cases tried")
    assert_one_clean_line(result, case.code, *case.names, *WHY[case.id])
    if journal:
        assert isinstance(before, WriteMark)
        written = writes_since(project, before)
        if case.id in BUILDS_FIRST:
            written = [entry for entry in written if not entry.startswith("engine ")]
        assert written == [], "a failed command changed something"
    else:
        assert snapshot(project) == before, "a failed command changed something"
    record_figure("bad-input corpus", "clean errors")
