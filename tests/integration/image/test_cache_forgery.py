"""A forged layer-scan record planted in the user's cache, then a real push-image.

The record of clean layers decides which layers the key guard skips. A forger who can write the
cache (a CI cache restore, a shared XDG_CACHE_HOME) lists every layer of an image that carries a
key, with the checksum they can compute: a plain SHA-256 of the record (the old format), or an
HMAC under a secret of their own. push-image must refuse the record, read the layers again, find
the key and push nothing; the record it leaves is signed with the user's secret and does not name
the layer with the key. The control, the same record signed with the user's own secret (under
$XDG_STATE_HOME/gcpfargate, outside the cache), shows the record is what the guard relies on: with
that secret the forger wins, so the secret is the defence.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
from pathlib import Path

import pytest

from gcpfargate.clients.engine.buildkit import BuildOptions
from gcpfargate.clients.engine.docker import DockerEngine
from gcpfargate.image.layer_scan import RULES_VERSION, CleanLayers
from tests.conftest import Project, assert_one_clean_line, cache_home
from tests.integration.helpers import configure_image, fake_key_json, registry_tags
from tests.stack.images import write_busybox_context


def _record_path(project: Project) -> Path:
    return cache_home(project.dir) / "gcpfargate" / f"clean-layers-v{RULES_VERSION}.json"


def _user_state(project: Project) -> Path:
    return project.dir / ".home" / ".local" / "state"


def _plant(
    path: Path, layers: list[str], how: str, state: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    body = f"clean-layers\n{RULES_VERSION}\n" + "\n".join(layers)
    if how == "plain-sha256":
        checksum = hashlib.sha256(body.encode()).hexdigest()
        path.write_text(
            json.dumps({"rules": RULES_VERSION, "layers": layers, "checksum": checksum})
        )
        return
    # An HMAC under the cache module's own code, keyed by the secret under `state`.
    monkeypatch.setenv("XDG_STATE_HOME", str(state))
    monkeypatch.setenv("XDG_CACHE_HOME", str(path.parent.parent))
    CleanLayers(path).add(layers)
    assert json.loads(path.read_text())["layers"] == layers  # planted as meant


@pytest.mark.parametrize("how", ["plain-sha256", "forger-secret", "user-secret"])
def test_a_forged_clean_layer_record_is_refused_and_the_key_still_caught(
    project: Project, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, how: str
) -> None:
    repository = configure_image(project, tag="v1")
    encoded = base64.b64encode(gzip.compress(fake_key_json().encode())).decode()
    write_busybox_context(
        project.dir,
        [
            f"RUN mkdir -p /app && echo {encoded} | base64 -d | gunzip > /app/creds.json",
            "RUN rm /app/creds.json",
        ],
    )
    # The same build push-image makes (the engine's cache makes it the same layers): every layer
    # of the image, the key's included, goes into the forged record.
    monkeypatch.setenv("DOCKER_HOST", project.stack.docker_host)
    engine = DockerEngine()
    # BuildKit's cache keys hold the RUN steps' network: build as push-image does (the stack's
    # network setting, the inline cache), or the layers would be new ones.
    options = BuildOptions(
        network=project.stack.env.get("GCPFARGATE_IMAGE_NETWORK", "default"), inline_cache=True
    )
    image = engine.build(project.dir, "Dockerfile", f"forgery-{project.family}:v1", options=options)
    layers = list((engine.inspect(image) or {})["RootFS"]["Layers"])
    assert len(layers) == 4  # busybox, --install, the RUN that wrote the key, its rm
    keyed = layers[2]

    record = _record_path(project)
    user_state = _user_state(project)
    state = user_state if how == "user-secret" else tmp_path / "forger-state"
    _plant(record, layers, how, state, monkeypatch)

    env: dict[str, str | None] = {"XDG_STATE_HOME": str(user_state)}
    result = project.run("push-image", env=env)
    pushed = engine.inspect(f"{project.stack.registry}/{repository}:v1") or {}
    assert pushed["RootFS"]["Layers"] == layers  # push-image's build is the forged image

    if how == "user-secret":
        # The control: a record signed with the user's secret is trusted, the key's layer skipped.
        assert result.returncode == 0, result.output
        assert registry_tags(project, repository) == ["v1"]
        return

    assert_one_clean_line(
        result,
        1,
        "refusing to push",
        f"image {project.stack.registry}/{repository}:v1",
        "/app/creds.json",
    )
    assert "MIIfake" not in result.output
    assert registry_tags(project, repository) == []
    # Rebuilt: the record now is the user's, signed with their secret, without the key's layer.
    monkeypatch.setenv("XDG_STATE_HOME", str(user_state))
    rebuilt = CleanLayers(record).load()
    assert rebuilt and keyed not in rebuilt
    assert set(rebuilt) <= set(layers) - {keyed}
