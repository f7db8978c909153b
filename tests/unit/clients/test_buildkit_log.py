"""BuildKit's plain progress read into the same failure line as the classic builder's, build
secrets and the other image settings checked at load, and the docker CLIs found on PATH."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gcpfargate.clients.engine.build_log import PlainBuildLog
from gcpfargate.clients.engine.buildkit import cli_version, docker_clis, embeds_buildkit, has_buildx
from gcpfargate.settings import problem
from tests.unit.helpers import fake_key

FAILED_RUN = """#1 [internal] load build definition from Dockerfile
#1 transferring dockerfile: 140B done
#1 DONE 0.1s

#4 [builder 2/3] RUN ./fetch
#4 sha256:eedd752aaa2aa00b1d33063fb2f0fa28f9891ad79510cd121e117da290b26572
#4 0.257 fetching
#4 0.258 {key}
#4 0.259 done fetching
#4 ERROR: executor failed running [/bin/sh -c ./fetch]: exit code: 7
------
 > [builder 2/3] RUN ./fetch:
------
executor failed running [/bin/sh -c ./fetch]: exit code: 7
"""


def test_plain_progress_names_the_failed_step_in_the_classic_words_without_key_text() -> None:
    lines: list[str] = []
    log = PlainBuildLog(lines.append)
    for line in FAILED_RUN.format(key=fake_key().decode().replace("\n", " ")).splitlines():
        log.feed(line)
    message = log.failure().message()
    assert message.startswith(
        "image build failed at step builder 2/3 `RUN ./fetch`: The command '/bin/sh -c ./fetch' "
        "returned a non-zero code: 7; last output: fetching | "
    )
    assert message.endswith("| done fetching")
    assert "MIIfake" not in message
    assert lines[0] == "#1 [internal] load build definition from Dockerfile"


def test_plain_progress_of_a_newer_buildkit_and_a_failure_outside_any_step() -> None:
    log = PlainBuildLog(lambda line: None)
    for line in [
        "#5 [2/2] RUN false",
        '#5 ERROR: process "/bin/sh -c false" did not complete successfully: exit code: 1',
    ]:
        log.feed(line)
    assert log.failure().message() == (
        "image build failed at step 2/2 `RUN false`: The command '/bin/sh -c false' returned a "
        "non-zero code: 1"
    )
    log = PlainBuildLog(lambda line: None)
    for line in ["#2 [internal] load .dockerignore", "#2 DONE 0.0s", "error: failed to solve: x"]:
        log.feed(line)
    assert log.failure().message() == "image build failed: failed to solve: x"


def test_image_settings_are_checked() -> None:
    assert problem("image.network", "bridge")
    assert problem("image.network", "none") is None
    assert problem("image.cache", "registry")
    assert problem("image.secrets", {"token": "a/b.json", "npm": {"env": "NPM_TOKEN"}}) is None
    assert "must be a file path" in str(problem("image.secrets", {"token": {"file": "x"}}))
    assert "not a valid secret id" in str(problem("image.secrets", {"a b": "x"}))
    assert problem("image.secrets", {"token": {"env": "1BAD"}})


def test_docker_clis_are_told_apart_by_what_they_answer(tmp_path: Path) -> None:
    old, new = tmp_path / "old", tmp_path / "new"
    for directory, version in ((old, "20.10.24"), (new, "28.2.2")):
        directory.mkdir()
        cli = directory / "docker"
        cli.write_text(
            "#!/bin/sh\n"
            f'[ "$1" = --version ] && {{ echo "Docker version {version}, build x"; exit 0; }}\n'
            "exit 1\n"
        )
        cli.chmod(0o755)
    assert docker_clis(f"{new}:{old}:{new}") == [str(new / "docker"), str(old / "docker")]
    assert embeds_buildkit(str(old / "docker")) and not embeds_buildkit(str(new / "docker"))
    plugins = tmp_path / "cli-plugins"
    plugins.mkdir()
    assert not has_buildx([str(plugins)])
    (plugins / "docker-buildx").write_text("#!/bin/sh\n")
    assert not has_buildx([str(plugins)])  # not executable: the CLI would not run it
    (plugins / "docker-buildx").chmod(0o755)
    assert has_buildx([str(tmp_path / "nowhere"), str(plugins)])


def test_a_cli_is_asked_its_version_once_while_it_is_unchanged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`docker --version` is recorded against the program's stat (buildkit.cli_version)."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    cli, asked = tmp_path / "docker", tmp_path / "asked"

    def write(version: str) -> None:
        cli.write_text(
            "#!/bin/sh\n"
            f'echo x >> "{asked}"\n'
            f'[ "$1" = --version ] && {{ echo "Docker version {version}, build x"; exit 0; }}\n'
            "exit 1\n"
        )
        cli.chmod(0o755)

    def times() -> int:
        return len(asked.read_text().splitlines()) if asked.exists() else 0

    write("20.10.24")
    assert cli_version(str(cli)) == (20, 10) and times() == 1
    assert embeds_buildkit(str(cli)) and cli_version(str(cli)) == (20, 10)
    assert times() == 1  # answered from the record
    write("28.2.2")  # an upgrade: the program changed (size, ctime)
    assert cli_version(str(cli)) == (28, 2) and not embeds_buildkit(str(cli))
    assert times() == 2
    # A record that does not verify (edited, or signed with another secret) is not believed.
    (record,) = (tmp_path / "cache").rglob("docker-cli/*.json")
    data = json.loads(record.read_text())
    data["value"] = [20, 10]
    record.write_text(json.dumps(data))
    assert cli_version(str(cli)) == (28, 2) and times() == 3
