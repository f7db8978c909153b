"""Pure parts of push-image: the key guard's scanning, build-log reading, tag derivation."""

from __future__ import annotations

import io
import tarfile
from datetime import UTC, datetime
from pathlib import Path

from gcpfargate.clients.engine.docker import BuildLog, DockerEngine
from gcpfargate.clients.engine.image_tar import layer_files, legacy_chain_id
from gcpfargate.clients.engine.layers import chain_ids
from gcpfargate.image.context_scan import CleanFiles
from gcpfargate.image.push import derive_tag, scan_context
from gcpfargate.keymaterial.keyscan import stream_has_key
from tests.unit.helpers import fake_key


def tar_of(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for name, content in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            archive.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


def chunks(data: bytes, size: int = 777) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


def test_layer_files_walks_legacy_and_oci_layouts_in_a_stream() -> None:
    layer1 = tar_of({"bin/tool": b"\x7fELF" + b"\0" * 3000, "etc/app.json": b'{"a": 1}'})
    layer2 = tar_of(
        {"./app/creds.json": fake_key(), "app/.wh.creds.json": b"", "big.json": b"{" + b" " * 5000}
    )
    saved = tar_of(
        {
            "manifest.json": b"[]",
            "abc/layer.tar": layer1,
            "blobs/sha256/" + "c" * 64: b'{"architecture": "amd64", "padding": "'
            + b"x" * 2000
            + b'"}',
            "blobs/sha256/" + "d" * 64: layer2,
        }
    )
    found = [
        (path, stream_has_key(content)) for _, path, content in layer_files(iter(chunks(saved)))
    ]
    assert found == [
        ("/bin/tool", False),
        ("/etc/app.json", False),
        ("/app/creds.json", True),
        ("/big.json", False),
    ]


def test_scan_context_honours_dockerignore(tmp_path: Path) -> None:
    (tmp_path / "Dockerfile").write_text("FROM scratch\n")
    (tmp_path / "keys").mkdir()
    (tmp_path / "keys" / "sa.json").write_bytes(fake_key())
    (tmp_path / "other.json").write_bytes(b'{"type": "app_settings"}')
    # A user's refresh token (authorized_user) is a credential file too (test_credential_files.py).
    (tmp_path / "keys" / "adc.json").write_bytes(b'{"type": "authorized_user"}')
    record = CleanFiles(tmp_path, tmp_path.parent / f"{tmp_path.name}-record.json")
    assert scan_context(tmp_path, "Dockerfile", record) == ["keys/adc.json", "keys/sa.json"]
    (tmp_path / ".dockerignore").write_text("# secrets\nkeys/\n")
    assert scan_context(tmp_path, "Dockerfile", record) == []


def test_build_log_names_the_failing_step_and_its_last_lines_without_key_text() -> None:
    lines: list[str] = []
    log = BuildLog(lines.append)
    for chunk in [
        {"stream": "Step 1/2 : FROM scratch\n"},
        {"stream": " ---> \n"},
        {"stream": "Step 2/2 : RUN ./fetch\n"},
        {"stream": " ---> Running in 1234\n"},
        {"stream": "fetching\n" + fake_key().decode() + "\n"},
        {"stream": "Removing intermediate container 1234\n"},
        {
            "error": "The command '/bin/sh -c ./fetch' returned a non-zero code: 7",
            "errorDetail": {
                "code": 7,
                "message": "The command '/bin/sh -c ./fetch' returned a non-zero code: 7",
            },
        },
    ]:
        log.feed(chunk)
    assert log.failed
    message = log.failure.message()
    assert message.startswith("image build failed at step 2/2 `RUN ./fetch`: The command")
    assert "last output: fetching | " in message
    assert "MIIfake" not in message and "Removing intermediate" not in message
    assert lines[0] == "Step 1/2 : FROM scratch"


def test_build_log_takes_the_image_id_from_the_aux_record() -> None:
    log = BuildLog(lambda line: None)
    log.feed({"aux": {"ID": "sha256:" + "a" * 64}})
    log.feed({"stream": "Successfully built aaaaaaaaaaaa\n"})
    assert log.image_id == "sha256:" + "a" * 64 and not log.failed


def test_registry_refusal_is_worded_as_access_denied() -> None:
    error = DockerEngine._registry_error(
        "push", "host/repo:v1", {"error": "denied: not authorized"}
    )
    assert "AccessDenied" in error.message and "ecr:InitiateLayerUpload" in error.hint
    other = DockerEngine._registry_error(
        "push", "host/repo:v1", {"error": "received unexpected HTTP status: 500"}
    )
    assert "AccessDenied" not in other.message and "500" in other.message


def test_derived_tag_outside_git_is_a_utc_timestamp(tmp_path: Path) -> None:
    assert derive_tag(tmp_path, datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC)) == "20240506070809"


def test_layer_files_skips_known_layers_and_stops_once_done() -> None:
    keyed = tar_of({"app/creds.json": fake_key()})
    names = ["blobs/sha256/" + c * 64 for c in "abc"]
    saved = tar_of({names[0]: keyed, names[1]: keyed, names[2]: keyed})
    opened: list[str] = []

    def skip(name: str) -> bool:
        if name == names[0]:
            return True  # a layer known to be clean: passed over unread
        opened.append(name)
        return False

    found = list(layer_files(iter(chunks(saved)), skip, lambda: names[1] in opened))
    assert [(layer, path) for layer, path, _ in found] == [(names[1], "/app/creds.json")]
    assert opened == [names[1]]  # the export was not read past the last layer it needed


# Two layer descriptions exactly as Docker 20.10's `docker save` wrote them (the bench image's base
# and its second layer), with the diff IDs `docker inspect` reported for those layers.
_CONFIG = (
    '"container_config":{"Hostname":"","Domainname":"","User":"","AttachStdin":false,"AttachStdout":false,'
    '"AttachStderr":false,"Tty":false,"OpenStdin":false,"StdinOnce":false,"Env":null,"Cmd":null,"Image":"",'
    '"Volumes":null,"WorkingDir":"","Entrypoint":null,"OnBuild":null,"Labels":null},"os":"linux"}'
)
_BASE_V1 = "dca3d6ab8bbf2971e8b25599c41a5156d22f4d65936c3f02a572b3d6eb9453fa"
_SECOND_V1 = "2559c18750d8c4bbfbcd6f99f4ae18597d047172ec41e871f2e1919c4a29cd56"
_DESCRIBED = {
    _BASE_V1: f'{{"id":"{_BASE_V1}","created":"1970-01-01T00:00:00Z",{_CONFIG}',
    _SECOND_V1: (
        f'{{"id":"{_SECOND_V1}","parent":"{_BASE_V1}","created":"1970-01-01T00:00:00Z",{_CONFIG}'
    ),
}
_DIFF_IDS = [
    "sha256:5c7865e95058f92e9d22c9f8dc5ec94e0d610ba16c3151bdb6aaa43684045e5f",
    "sha256:db64e96e94bdaa290b2f7b51a85802016dca108197e95b0b6e56d6944e9b9e91",
]


def test_a_legacy_layer_is_told_by_its_v1_id_recomputed_from_a_chain_id() -> None:
    chains = chain_ids(_DIFF_IDS)
    assert legacy_chain_id(_DESCRIBED[_BASE_V1].encode(), chains) == chains[0]
    assert legacy_chain_id(_DESCRIBED[_SECOND_V1].encode(), chains) == chains[1]
    assert (
        legacy_chain_id(_DESCRIBED[_SECOND_V1].encode(), chains[:1]) is None
    )  # not a layer of this image
    # Fail closed: anything but the engine's own computation names no layer, so the layer is read.
    forged = _DESCRIBED[_SECOND_V1].replace('"os":"linux"', '"os":"linux","x":1')
    renamed = _DESCRIBED[_SECOND_V1].replace(_SECOND_V1, _BASE_V1, 1)
    for description in (
        forged.encode(),
        renamed.encode(),
        b"{}",
        b"[1]",
        b"not json",
        b"\xff{",
        b'{"id":1}',
    ):
        assert legacy_chain_id(description, chains) is None


def test_layer_files_hands_each_legacy_description_over_before_its_layer() -> None:
    seen: list[str] = []
    saved = tar_of(
        {
            f"{_BASE_V1}/VERSION": b"1.0",
            f"{_BASE_V1}/json": _DESCRIBED[_BASE_V1].encode(),
            f"{_BASE_V1}/layer.tar": tar_of({"etc/hostname": b"box\n"}),
            "manifest.json": b"[]",
        }
    )
    found = list(
        layer_files(
            iter(chunks(saved)),
            skip=lambda name: bool(seen.append(name)),
            described=lambda directory, description: seen.append(directory),
        )
    )
    assert seen == [_BASE_V1, f"{_BASE_V1}/layer.tar"]
    assert [(layer, path) for layer, path, _ in found] == [
        (f"{_BASE_V1}/layer.tar", "/etc/hostname")
    ]
