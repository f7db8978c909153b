"""run-local keeps secret values out of the container's config and the engine's disk (issue 13 item
5).

While the rehearsal runs, `docker inspect` (Env, Cmd, Entrypoint, Labels) and every file under the
engine's data root for containers hold none of the key's material or another secret's value; the
wrapper still finds the key in its variable and writes the file; Ctrl-C removes the container.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.conftest import Project
from tests.integration.helpers import deploy, prepare, register_variant, secret_json

OTHER_VALUE = "other-secret-value-4b1d"
# The app proves it got both values without printing them (its output lands in the engine's log
# file).
APP = (
    'echo "ready key-file=$(wc -c < "$GOOGLE_APPLICATION_CREDENTIALS") other-length=${#OTHER}'
    ' key-var=${GCP_CREDENTIALS_JSON:-unset}"; i=0; while [ $i -lt 60 ]; do sleep 1; i=$((i+1)); '
    "done"
)


def _key_fragments(project: Project) -> list[bytes]:
    """Lines of the private key's body (base64, 64 columns): any one of them on disk is a leak."""
    body = [
        line
        for line in secret_json(project)["private_key"].splitlines()
        if line and "-----" not in line
    ]
    assert len(body) > 10
    return [line.encode() for line in body[1:-1]] + [
        OTHER_VALUE.encode(),
        secret_json(project)["private_key_id"].encode(),
    ]


def _files_holding(root: Path, needles: list[bytes]) -> list[str]:
    found = []
    for path in root.rglob("*"):
        if path.is_file() and not path.is_symlink():
            data = path.read_bytes()
            found += [f"{path} ({needle[:12]!r}…)" for needle in needles if needle in data]
    return found


def _wait_for(proc: subprocess.Popen, text: str, timeout: float = 120) -> str:
    seen = ""
    deadline = time.monotonic() + timeout
    assert proc.stderr is not None
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line:
            break
        seen += line
        if text in line:
            return line
    proc.kill()
    raise AssertionError(f"{text!r} never appeared; output so far:\n{seen}")


def test_run_local_keeps_secrets_out_of_the_container_config_and_the_engines_disk(
    project: Project,
) -> None:
    import docker

    prepare(project, steps=(f'ENTRYPOINT ["/bin/sh", "-c", {json.dumps(APP)}]',))
    deploy(project)
    other = project.aws("secretsmanager").create_secret(
        Name=f"{project.family}/other", SecretString=OTHER_VALUE
    )

    def add_secret(definition: dict) -> None:
        definition["containerDefinitions"][0]["secrets"].append(
            {"name": "OTHER", "valueFrom": other["ARN"]}
        )

    register_variant(project, add_secret)
    needles = _key_fragments(project)
    engine = docker.DockerClient(base_url=project.stack.docker_host)
    proc = subprocess.Popen(
        [sys.executable, "-m", "gcpfargate", "run-local", "--skip-role-check"],
        cwd=project.dir,
        env=project.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        ready = _wait_for(proc, "ready key-file=")
        # The wrapper got the key in its variable, wrote the file and unset the variable; OTHER
        # arrived.
        assert f"other-length={len(OTHER_VALUE)} key-var=unset" in ready
        assert int(ready.split("key-file=")[1].split()[0]) > 1000
        (running,) = engine.containers.list(filters={"label": "gcpfargate=run-local"})
        config = engine.api.inspect_container(running.id)
        shown = json.dumps(
            {part: config["Config"].get(part) for part in ("Env", "Cmd", "Entrypoint", "Labels")}
        )
        assert "GCP_CREDENTIALS_JSON=" not in shown and "OTHER=" not in shown
        assert [needle for needle in needles if needle.decode() in shown] == []
        assert [needle for needle in needles if needle.decode() in json.dumps(config)] == []
        data_root = Path(engine.info()["DockerRootDir"])
        assert (data_root / "containers" / running.id / "config.v2.json").exists()
        assert _files_holding(data_root / "containers", needles) == []
        upper = config["GraphDriver"]["Data"].get("UpperDir")
        if upper:
            assert _files_holding(Path(upper), needles) == []
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=60)
    # Ctrl-C during the run: exit 130 and the container is gone.
    assert proc.returncode == 130
    assert engine.containers.list(all=True, filters={"label": "gcpfargate=run-local"}) == []


def test_run_local_passes_the_task_argv_and_exit_code_behind_the_prestep(project: Project) -> None:
    """The image's own ENTRYPOINT + CMD (no task entryPoint) still run, with their arguments, after
    the pre-step."""
    prepare(
        project,
        steps=(
            'ENTRYPOINT ["/bin/sh", "-c", "echo \\"args:$*\\" stdin:$(cat | wc -c); exit 3", '
            '"job"]',
            'CMD ["a b", "c"]',
        ),
    )
    deploy(project)
    result = project.run("run-local")
    assert result.returncode == 3, result.output
    # stdin is empty once the secrets are read, as on Fargate.
    assert "args:a b c stdin:0" in result.stderr
