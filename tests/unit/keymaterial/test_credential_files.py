"""Google credential files other than keys (gcpfargate/keymaterial/keyscan.py's `stream_has_secret`
and `credential_file_name`): refused as files of a build context or an image layer, while strings
(a task definition's keyless `external_account` configuration) keep the key rules only."""

from __future__ import annotations

import gzip
import io
import json
import time
from pathlib import Path

import pytest

from gcpfargate.credentials.keyless.config import credential_config
from gcpfargate.image.context_scan import CleanFiles, scan_files
from gcpfargate.keymaterial.keyscan import (
    credential_file_name,
    has_key,
    key_text,
    stream_has_key,
    stream_has_secret,
)
from tests.unit.helpers import AUTHORIZED_USER, GHA_CREDS, IMPERSONATED, TOKEN, tar_of

WORKFORCE_USER = {
    "type": "external_account_authorized_user",
    "audience": "//iam.googleapis.com/locations/global/workforcePools/p/providers/q",
    "refresh_token": TOKEN,
    "token_url": "https://sts.googleapis.com/v1/oauthtoken",
}
CREDENTIALS = {
    "gha-creds": GHA_CREDS,
    "authorized_user": AUTHORIZED_USER,
    "impersonated": IMPERSONATED,
    "workforce user": WORKFORCE_USER,
}


def secret(data: bytes) -> bool:
    return stream_has_secret(io.BytesIO(data))


@pytest.mark.parametrize("name", sorted(CREDENTIALS))
def test_credential_files_are_refused_as_files(name: str) -> None:
    document = json.dumps(CREDENTIALS[name], indent=2).encode()
    assert secret(document)
    assert secret(b"\xef\xbb\xbf" + document)  # with a UTF-8 byte-order mark
    assert secret(gzip.compress(document))
    assert secret(tar_of({"ci/creds.json": document}))
    # The key rules alone do not see them: strings keep those.
    assert not stream_has_key(io.BytesIO(document))


def test_keyless_configuration_in_a_task_definition_string_is_not_a_key() -> None:
    """Keyless mode's own external_account configuration reaches the task through `environment`:
    the task-definition guard (strings) must keep accepting it."""
    config = credential_config(
        project_number="123",
        pool_id="gcpfargate",
        provider_id="aws-jobs",
        service_account_email="job@p.iam.gserviceaccount.com",
    )
    text = json.dumps(config)
    assert not has_key(text) and not key_text(text)
    assert secret(text.encode())  # as a file in an image, though, it is refused


@pytest.mark.parametrize(
    "document",
    [
        {"type": "service_account_info"},
        {"type": "external"},
        {"kind": "authorized_user"},
        ["external_account"],
        {"note": "type external_account files are refused"},
    ],
)
def test_other_json_is_not_a_credential_file(document: object) -> None:
    assert not secret(json.dumps(document).encode())


def test_credential_json_past_the_whole_file_limit_is_not_parsed() -> None:
    big = json.dumps({**AUTHORIZED_USER, "padding": "x" * (2 << 20)}).encode()
    assert not secret(big)


@pytest.mark.parametrize(
    "path, named",
    [
        ("gha-creds-4f1a2b3c.json", True),
        ("app/gha-creds-4f1a2b3c.json", True),
        ("/workspace/src/gha-creds-x.json", True),
        ("gha-creds-.json", True),
        ("gha-creds-4f1a.json.bak", False),
        ("notgha-creds-1.json", False),
        ("gha-creds-1/readme.txt", False),
    ],
)
def test_ci_credential_file_names(path: str, named: bool) -> None:
    assert credential_file_name(path) is named


def test_a_named_file_is_found_without_being_read(tmp_path: Path) -> None:
    """Whatever a `gha-creds-*.json` holds (empty, unreadable), it is refused by name."""
    (tmp_path / "gha-creds-1.json").write_text("")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "gha-creds-2.json").write_text("{}")
    (tmp_path / "sub" / "gha-creds-2.json").chmod(0)
    (tmp_path / "app.py").write_text("print('hi')\n")
    record = CleanFiles(tmp_path, tmp_path.parent / f"{tmp_path.name}.record.json")
    read: list[str] = []

    def reader(handle: io.BufferedReader) -> bool:
        read.append(Path(handle.name).name)
        return stream_has_secret(handle)

    found = scan_files(
        tmp_path,
        ["app.py", "gha-creds-1.json", "sub/gha-creds-2.json"],
        reader,
        record,
        now=lambda: time.time() + 10,
        is_named=credential_file_name,
    ).found
    assert found == ["gha-creds-1.json", "sub/gha-creds-2.json"]
    assert read == ["app.py"]
