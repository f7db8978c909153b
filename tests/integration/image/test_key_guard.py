"""push-image's key guard against the stack (issue 13 items 1 and 10): a key in the image config, in
a build argument, or in the build context under any common wrapping is refused before anything is
pushed; each refusal is one clean line that never shows the key."""

from __future__ import annotations

import base64
import gzip
import io
import json
import tarfile

import docker

from gcpfargate.keymaterial.keyscan import RULES_VERSION
from tests.conftest import Project, assert_one_clean_line, cache_home, record_figure
from tests.integration.helpers import configure_image, prepare, registry_tags
from tests.stack.images import BUSYBOX_STEPS, write_busybox_context
from tests.unit.helpers import AUTHORIZED_USER, EVASIONS, GHA_CREDS, IMPERSONATED, TOKEN, key_json

FIGURES = "key guard"


def no_key_text(output: str) -> None:
    body = "".join(key_json().decode().split("\\n")[1:3])
    assert "PRIVATE KEY" not in output and body[:40] not in output


def test_a_build_argument_holding_a_key_is_refused_before_anything_is_built(
    project: Project,
) -> None:
    repository = configure_image(project, tag="v1")
    config = project.dir / "gcpfargate.toml"
    config.write_text(
        config.read_text()
        + "\n[image.build_args]\nGKEY = "
        + json.dumps(key_json().decode())
        + "\n"
    )
    write_busybox_context(project.dir, ["ARG GKEY", "ENV GOOGLE_CREDENTIALS=$GKEY"])
    client = docker.DockerClient(base_url=project.stack.docker_host)
    before = {image.id for image in client.images.list()}
    refused = project.run("push-image")
    assert_one_clean_line(refused, 2, "image.build_args GKEY", "looks like a private key")
    no_key_text(refused.output)
    assert {image.id for image in client.images.list()} == before  # nothing was built
    assert not project.exists("repository", repository)
    record_figure(FIGURES, "evasions caught")


def test_a_key_in_the_image_config_is_refused(project: Project) -> None:
    """The classic builder's `ARG` + `ENV` + `LABEL`: the key is in Env, Labels and history, in no
    file. The base image is built straight on the engine (as a registry base image would be), so
    only the config scan can see it."""
    client = docker.DockerClient(base_url=project.stack.docker_host)
    base_dir = project.dir / "base"
    write_busybox_context(
        base_dir, ["ARG GKEY", "ENV GOOGLE_CREDENTIALS=$GKEY", 'LABEL creds="$GKEY"']
    )
    base = f"keybase-{project.family}:1"
    client.images.build(
        path=str(base_dir), tag=base, buildargs={"GKEY": key_json().decode()}, rm=True
    )
    repository = configure_image(project, tag="v1")
    (project.dir / "Dockerfile").write_text(f'FROM {base}\nCMD ["true"]\n')
    (project.dir / ".dockerignore").write_text("base\n")

    refused = project.run("push-image")
    line = assert_one_clean_line(
        refused, 1, "refusing to push", "config Env GOOGLE_CREDENTIALS", "config Labels creds"
    )
    assert "history step" in line
    no_key_text(refused.output)
    assert registry_tags(project, repository) == []
    record_figure(FIGURES, "evasions caught", 3)


def test_every_wrapping_in_the_build_context_is_refused(project: Project) -> None:
    configure_image(project, tag="v1")
    write_busybox_context(project.dir)
    caught = 0
    for number, (name, data) in enumerate(sorted(EVASIONS.items())):
        path = project.dir / "data" / f"file{number}.bin"
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(data)
        refused = project.run("push-image")
        assert refused.returncode == 1, name
        assert_one_clean_line(refused, 1, "refusing to push", f"data/file{number}.bin")
        no_key_text(refused.output)
        path.unlink()
        caught += 1
        record_figure(FIGURES, "evasions caught")
    assert caught == len(EVASIONS)
    # With nothing left, the same context pushes.
    assert project.run("push-image").returncode == 0


def test_a_wrapped_key_made_by_a_run_step_is_found_in_its_layer(project: Project) -> None:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        info = tarfile.TarInfo("sa.json")
        info.size = len(key_json())
        archive.addfile(info, io.BytesIO(key_json()))
    bundle = base64.b64encode(gzip.compress(buffer.getvalue())).decode()
    repository = configure_image(project, tag="v1")
    # Not in the context (the Dockerfile holds only base64 of compressed bytes): only the layer
    # shows it.
    write_busybox_context(
        project.dir, [f"RUN mkdir -p /app && echo {bundle} | base64 -d > /app/bundle.tgz"]
    )
    assert BUSYBOX_STEPS[0] == "FROM scratch"
    refused = project.run("push-image")
    assert_one_clean_line(refused, 1, "refusing to push", "/app/bundle.tgz")
    no_key_text(refused.output)
    assert registry_tags(project, repository) == []
    record_figure(FIGURES, "evasions caught")


def test_ci_credential_files_in_the_context_are_refused_until_dockerignored(
    project: Project,
) -> None:
    """google-github-actions/auth writes gha-creds-*.json into the workspace, the usual build
    context: with `COPY . /app` it would be pushed. Refused by name and by content; the
    .dockerignore docs/ci.md gives lets the push through."""
    repository = configure_image(project, tag="v1")
    creds = json.dumps(GHA_CREDS, indent=2)
    write_busybox_context(
        project.dir,
        ["COPY . /app"],
        files={"gha-creds-0a1b2c3d.json": creds, "config/adc.json": json.dumps(AUTHORIZED_USER)},
    )
    refused = project.run("push-image")
    line = assert_one_clean_line(
        refused,
        1,
        "refusing to push: the build context holds",
        "gha-creds-0a1b2c3d.json",
        "config/adc.json",
        "gha-creds-*.json included",
    )
    assert TOKEN not in refused.output and "Bearer" not in line
    assert registry_tags(project, repository) == []
    (project.dir / ".dockerignore").write_text("gha-creds-*.json\nconfig/adc.json\n.home\n")
    assert project.run("push-image").returncode == 0
    assert registry_tags(project, repository) == ["v1"]


def test_a_credential_file_made_by_a_run_step_is_found_in_its_layer(project: Project) -> None:
    """An impersonated-ADC file written by a RUN step (not in the context): only the layer shows
    it."""
    repository = configure_image(project, tag="v1")
    encoded = base64.b64encode(json.dumps(IMPERSONATED).encode()).decode()
    write_busybox_context(
        project.dir,
        [
            f"RUN mkdir -p /root/.config/gcloud && echo {encoded} | base64 -d "
            "> /root/.config/gcloud/application_default_credentials.json",
            'RUN mkdir -p /tmp && echo \'{"audience": "x"}\' > /tmp/gha-creds-99.json',
        ],
    )
    refused = project.run("push-image")
    assert_one_clean_line(
        refused,
        1,
        "refusing to push: image",
        "root/.config/gcloud/application_default_credentials.json",
        "tmp/gha-creds-99.json",
    )
    assert TOKEN not in refused.output
    assert registry_tags(project, repository) == []


def test_deploy_takes_the_context_search_of_its_second_process_and_refuses_a_key_there(
    project: Project,
) -> None:
    """deploy starts the build context's key search in a forked child before the SDKs load
    (image/scan_ahead.py) and takes its answer: a key in the context is refused with push-image's
    line before anything is built or pushed; once it is gone, `--verbose` says the child answered
    (a fresh, single-threaded CLI process forks it; a process with threads searches itself)."""
    prepare(project)
    client = docker.DockerClient(base_url=project.stack.docker_host)
    before = {image.id for image in client.images.list()}
    (project.dir / "conf").mkdir()
    (project.dir / "conf" / "sa.json").write_bytes(key_json())
    refused = project.run("deploy")
    assert_one_clean_line(refused, 1, "refusing to push", "conf/sa.json")
    no_key_text(refused.output)
    assert {image.id for image in client.images.list()} == before  # nothing was built
    assert not project.exists("repository", project.family)
    (project.dir / "conf" / "sa.json").unlink()
    done = project.run("--verbose", "deploy")
    assert done.returncode == 0, done.output
    assert "searched by a second process while the SDKs loaded" in done.output


def test_deploy_searches_the_base_image_while_building_and_still_refuses_a_key_in_it(
    project: Project,
) -> None:
    """deploy searches the final stage's base image's layers while the engine builds
    (image/base_scan.py), recording the clean ones; the search after the build still decides: a
    base layer holding a key is not recorded, and the deploy is refused with push-image's line."""
    prepare(project)
    client = docker.DockerClient(base_url=project.stack.docker_host)
    record = cache_home(project.dir) / "gcpfargate" / f"clean-layers-v{RULES_VERSION}.json"

    def base(name: str, files: dict[str, str | bytes]) -> list[str]:
        context = project.dir.parent / f"{project.dir.name}-{name}"
        write_busybox_context(context, [f"COPY {each} /etc/{each}" for each in files], files)
        tag = f"gcpf-base-{project.family}-{name}:1"
        client.images.build(path=str(context), tag=tag, network_mode="none", rm=True)
        (project.dir / "Dockerfile").write_text(f'FROM {tag}\nCMD ["echo", "job ran"]\n')
        return list(client.images.get(tag).attrs["RootFS"]["Layers"])

    dirty = base("dirty", {"sa.json": key_json()})
    refused = project.run("deploy")
    assert_one_clean_line(refused, 1, "refusing to push", "/etc/sa.json")
    no_key_text(refused.output)
    assert not project.exists("repository", project.family) or not registry_tags(
        project, project.family
    )
    recorded = json.loads(record.read_text())["layers"] if record.exists() else []
    assert dirty[-1] not in recorded  # the key's layer: never recorded clean
    clean = base("clean", {"app.cfg": "debug = false\n"})
    done = project.run("deploy")
    assert done.returncode == 0, done.output
    assert set(clean) <= set(json.loads(record.read_text())["layers"])
