"""push-image through BuildKit on the stack's engine (Debian's docker.io 20.10: the docker CLI's
embedded BuildKit, DOCKER_BUILDKIT=1): cache, bind and secret mounts, COPY --chmod, a multi-stage
build, build secrets that never reach a layer, the inline cache on a cold engine, and the classic
builder's fallback for a docker CLI without BuildKit."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pytest

from tests.conftest import Project, assert_one_clean_line
from tests.integration.helpers import (
    configure_image,
    deploy,
    engine,
    fake_key_json,
    latest,
    prepare,
    registry_tags,
)
from tests.stack.images import no_buildkit_path, write_busybox_context

MULTI_STAGE = [
    "FROM scratch AS builder",
    "COPY busybox /bin/busybox",
    'RUN ["/bin/busybox", "--install", "-s", "/bin"]',
    "RUN --mount=type=cache,target=/cache echo from-the-cache > /cache/note && cp /cache/note "
    "/note",
    "RUN --mount=type=bind,source=data.txt,target=/mnt/data.txt cp /mnt/data.txt /data",
    # The secrets are read (their sizes kept), never copied: the image must hold no trace of them.
    "RUN --mount=type=secret,id=token,required=true wc -c < /run/secrets/token > /token-size",
    "RUN --mount=type=secret,id=fromenv,required=true wc -c < /run/secrets/fromenv > /env-size",
    "FROM scratch",
    "COPY --from=builder /bin/busybox /bin/busybox",
    "COPY --from=builder /note /data /token-size /env-size /app/",
    "COPY --chmod=0750 run.sh /app/run.sh",
    'CMD ["/bin/busybox", "sh", "/app/run.sh"]',
]
RUN_SH = (
    "/bin/busybox cat /app/note /app/data\n"
    "/bin/busybox echo sizes $(/bin/busybox cat /app/token-size) $(/bin/busybox cat "
    "/app/env-size)\n/bin/busybox stat -c 'mode %a' /app/run.sh\n"
)
ENV_SECRET = "env-secret-value-gcpf"


def outside(project: Project, name: str) -> Path:
    """A path beside the project, not in its build context (the project is the context)."""
    return project.dir.parent / f"{project.dir.name}.{name}"


def write_multi_stage(project: Project) -> None:
    write_busybox_context(project.dir, files={"data.txt": "bound-data\n", "run.sh": RUN_SH})
    (project.dir / "Dockerfile").write_text("\n".join(MULTI_STAGE) + "\n")


def add_secrets(project: Project, token: Path) -> None:
    config = project.dir / "gcpfargate.toml"
    config.write_text(
        config.read_text()
        + f'\n[image.secrets]\ntoken = "{token}"\nfromenv = {{ env = "GCPF_BUILD_TOKEN" }}\n'
    )
    project.extra_env["GCPF_BUILD_TOKEN"] = ENV_SECRET


def image_bytes(project: Project, image: str) -> bytes:
    """Every file of every layer of `image`, and its config, as one blob to search."""
    saved = b"".join(engine(project).api.get_image(image))
    blob = io.BytesIO()
    with tarfile.open(fileobj=io.BytesIO(saved)) as outer:
        for member in outer.getmembers():
            data = outer.extractfile(member)
            if data is None:
                continue
            content = data.read()
            blob.write(content)
            if member.name.endswith("layer.tar"):
                with tarfile.open(fileobj=io.BytesIO(content)) as layer:
                    for inner in layer.getmembers():
                        if (handle := layer.extractfile(inner)) is not None:
                            blob.write(handle.read())
    return blob.getvalue()


def run_image(project: Project, image: str) -> str:
    output = engine(project).containers.run(image, network_mode="none", remove=True)
    return bytes(output).decode()


def test_buildkit_mounts_chmod_multi_stage_and_secrets(project: Project) -> None:
    repository = configure_image(project, tag="v1")
    write_multi_stage(project)
    token = outside(project, "token.json")  # not in the build context, as a secret file belongs
    token.write_text(fake_key_json())
    add_secrets(project, token)

    result = project.run("push-image", "--output", "json")
    assert result.returncode == 0, result.output
    assert "warning" not in result.stderr  # BuildKit: no fallback warning
    assert "[builder 3/6] RUN --mount=type=cache" in result.stderr  # BuildKit's progress, shown
    assert registry_tags(project, repository) == ["v1"]
    image = result.json["image"]

    output = run_image(project, image)
    assert "from-the-cache" in output and "bound-data" in output
    assert f"sizes {len(fake_key_json())} {len(ENV_SECRET)}" in output
    assert "mode 750" in output
    blob = image_bytes(project, image)
    assert b"MIIfake" not in blob and ENV_SECRET.encode() not in blob
    assert "MIIfake" not in result.output and ENV_SECRET not in result.output
    history = json.dumps(engine(project).api.history(image))
    assert "token.json" not in history and ENV_SECRET not in history

    # The same build again: the same image, nothing pushed.
    again = project.run("push-image", "--output", "json")
    assert again.returncode == 0, again.output
    assert again.json == {**result.json, "changed": False}


def test_key_a_run_step_copies_from_a_secret_mount_is_refused(project: Project) -> None:
    repository = configure_image(project, tag="v1")
    write_busybox_context(
        project.dir, ["RUN --mount=type=secret,id=token cp /run/secrets/token /leaked.json"]
    )
    token = outside(project, "token.json")
    token.write_text(fake_key_json())
    config = project.dir / "gcpfargate.toml"
    config.write_text(config.read_text() + f'\n[image.secrets]\ntoken = "{token}"\n')
    refused = project.run("push-image")
    line = assert_one_clean_line(refused, 1, "refusing to push", "/leaked.json", "[image.secrets]")
    assert "MIIfake" not in refused.output and "MIIfake" not in line
    assert registry_tags(project, repository) == []


def test_missing_secret_sources_are_one_line_each(project: Project) -> None:
    configure_image(project, tag="v1")
    write_busybox_context(project.dir)
    config = project.dir / "gcpfargate.toml"
    base = config.read_text()
    config.write_text(base + '\n[image.secrets]\ntoken = "nowhere.json"\n')
    missing_file = project.run("push-image")
    assert_one_clean_line(missing_file, 2, "image.secrets.token", "nowhere.json", "readable file")
    config.write_text(base + '\n[image.secrets]\ntoken = { env = "GCPF_UNSET_VAR" }\n')
    missing_var = project.run("push-image", env={"GCPF_UNSET_VAR": None})
    assert_one_clean_line(missing_var, 2, "GCPF_UNSET_VAR is not set")
    config.write_text(base + '\n[image.secrets]\ntoken = { file = "x" }\n')
    malformed = project.run("push-image")
    assert_one_clean_line(malformed, 2, "image.secrets", "token must be a file path")


def test_failed_step_is_named_with_its_stage(project: Project) -> None:
    configure_image(project, tag="v1")
    write_busybox_context(project.dir)
    dockerfile = project.dir / "Dockerfile"
    steps = dockerfile.read_text().replace("FROM scratch", "FROM scratch AS tools")
    dockerfile.write_text(
        steps + "RUN echo half-way && exit 5\nFROM scratch\nCOPY --from=tools /bin /bin\n"
    )
    result = project.run("push-image")
    assert_one_clean_line(
        result,
        1,
        "image build failed at step tools 3/3 `RUN echo half-way && exit 5`",
        "returned a non-zero code: 5",
        "last output: half-way",
        "Fix that step",
    )


@pytest.fixture
def without_buildkit(project: Project) -> None:
    project.extra_env["PATH"] = no_buildkit_path(outside(project, "bin"))


def test_classic_fallback_warns_and_builds(project: Project, without_buildkit: None) -> None:
    repository = configure_image(project, tag="v1")
    write_busybox_context(project.dir, ['CMD ["echo", "classic"]'])
    result = project.run("push-image", "--output", "json")
    assert result.returncode == 0, result.output
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1, result.stderr
    assert "classic builder" in warnings[0] and "RUN --mount" in warnings[0]
    assert "Step 4/4" in result.stderr  # the classic builder's progress
    assert registry_tags(project, repository) == ["v1"]


def test_classic_fallback_refuses_secrets(project: Project, without_buildkit: None) -> None:
    configure_image(project, tag="v1")
    write_busybox_context(project.dir)
    token = outside(project, "token")
    token.write_text("t")
    config = project.dir / "gcpfargate.toml"
    config.write_text(config.read_text() + f'\n[image.secrets]\ntoken = "{token}"\n')
    result = project.run("push-image")
    assert_one_clean_line(result, 2, "image.secrets needs BuildKit", "buildx")


def test_classic_fallback_names_the_mount_it_cannot_build(
    project: Project, without_buildkit: None
) -> None:
    configure_image(project, tag="v1")
    write_busybox_context(project.dir, ["RUN --mount=type=cache,target=/c true"])
    result = project.run("push-image")
    assert result.returncode == 1
    assert "image build failed at step 4/4" in result.stderr
    assert "requires BuildKit" in result.stderr
    assert "classic builder" in result.stderr  # the warning said why beforehand


def _layers(project: Project, image: str) -> list[str]:
    return list(engine(project).api.inspect_image(image)["RootFS"]["Layers"])


def _cold_engine(project: Project, image: str) -> None:
    """Forget the image and every build cache record, as a fresh CI runner's engine has none."""
    client = engine(project)
    for each in client.api.images(name=image.split("@")[0]):
        client.api.remove_image(each["Id"], force=True)
    client.api.prune_builds(all=True)


def test_cold_engine_rebuilds_only_the_app_layer_from_the_inline_cache(project: Project) -> None:
    prepare(
        project,
        (
            # A step whose output differs on every run: only the cache can give back the same layer.
            "RUN head -c 16 /dev/urandom | od -x > /dependencies",
            "COPY app.txt /app.txt",
            'CMD ["cat", "/app.txt"]',
        ),
    )
    (project.dir / "app.txt").write_text("one\n")
    first = deploy(project)
    image = latest(project)["containerDefinitions"][0]["image"]
    assert image.endswith(first["push-image"]["digest"])
    before = _layers(project, image)

    _cold_engine(project, image)
    (project.dir / "app.txt").write_text("two\n")
    config = project.dir / "gcpfargate.toml"
    config.write_text(config.read_text().replace('tag = "v1"', 'tag = "v2"'))
    result = project.run("deploy", "--output", "json")
    assert result.returncode == 0, result.output
    assert f"importing cache manifest from {image}" in result.stderr
    second = latest(project)["containerDefinitions"][0]["image"]
    after = _layers(project, second)
    assert after[:-1] == before[:-1] and after[-1] != before[-1]  # only the app layer is new
