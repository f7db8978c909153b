"""Leak scan: run every command at --debug (and the key-handling ones at --verbose), through success
and failure paths, then search everything they printed or wrote for key material.

Key material is taken from the secret itself (every version, read with boto3), in the forms a leak
would take: each line of the PEM body, the private_key as a JSON string (with \\n escapes), the
whole key JSON, and its base64. The private_key_id is an identifier, not a secret, and is not
searched for. Searched: stdout and stderr of every run, every file under the project directory
and $HOME (project.run sets HOME inside the project), and the stack's service logs.
"""

from __future__ import annotations

import base64
import json

import pytest

from tests.conftest import Project, Result, record_figure
from tests.reliability.helpers import make_deployable
from tests.stack.faultproxy import FaultProxy, Rule

FIGURES = "leak scan"
SUBNET = "subnet-0123456789abcdef0"


def key_forms(secret_text: str) -> dict[str, bytes]:
    """The searchable forms of one key (name -> bytes)."""
    key = json.loads(secret_text)
    private_key = key["private_key"]
    forms = {"key JSON": secret_text.encode(), "private_key JSON string": json.dumps(private_key)[1:-1].encode()}
    for variant in (secret_text, json.dumps(key), json.dumps(key, separators=(",", ":"))):
        forms[f"base64 of key JSON ({len(variant)})"] = base64.b64encode(variant.encode())
    body = [line for line in private_key.splitlines() if line and not line.startswith("-----")]
    for index, line in enumerate(body):
        if len(line) >= 16:  # the short last line could match by chance; 16 base64 chars cannot
            forms[f"PEM line {index}"] = line.encode()
    return forms


def all_key_texts(project: Project) -> set[str]:
    sm = project.aws("secretsmanager")
    versions = sm.list_secret_version_ids(SecretId=project.secret_name, IncludeDeprecated=True)["Versions"]
    return {sm.get_secret_value(SecretId=project.secret_name, VersionId=v["VersionId"])["SecretString"]
            for v in versions}


class Scanner:
    def __init__(self, group: str = FIGURES) -> None:
        self.group = group
        self.outputs: list[tuple[str, bytes]] = []  # (what, bytes) of every run
        self.commands = 0

    def run(self, project: Project, label: str, *args: str, expect: tuple[int, ...] = (0,),
            env: dict[str, str | None] | None = None) -> Result:
        result = project.run(*args, env=env, timeout=180)
        assert result.returncode in expect, f"{label}: {result.output}"
        self.outputs.append((f"{label} stdout", result.stdout.encode()))
        self.outputs.append((f"{label} stderr", result.stderr.encode()))
        self.commands += 1
        return result

    def scan(self, project: Project, keys: set[str]) -> list[str]:
        forms = {f"{name} of key {n}": form for n, text in enumerate(sorted(keys))
                 for name, form in key_forms(text).items()}
        sources = list(self.outputs)
        for path in sorted(project.dir.rglob("*")):
            if path.is_file() and not path.is_symlink():
                sources.append((str(path.relative_to(project.dir)), path.read_bytes()))
        for log in sorted(project.stack.root.glob("*.log")):
            sources.append((f"stack log {log.name}", log.read_bytes()))
        hits = [f"{form_name} in {what}" for what, data in sources for form_name, form in forms.items()
                if form in data]
        record_figure(self.group, "commands scanned", self.commands)
        record_figure(self.group, "sources scanned", len(sources))
        record_figure(self.group, "bytes scanned", sum(len(data) for _, data in sources))
        record_figure(self.group, "key forms searched", len(forms))
        # In the self-check every hit is a planted key the scanner was meant to find.
        record_figure(self.group, "planted forms found" if "self-check" in self.group else "hits", len(hits))
        return hits


def configure(project: Project) -> None:
    make_deployable(project, steps=('CMD ["/bin/sh", "-c", "echo hello from the task"]',))
    config = project.dir / "gcpfargate.toml"
    config.write_text(config.read_text() + f'\n[run]\ncluster = "default"\nsubnets = ["{SUBNET}"]\n'
                                           '\n[schedule]\ntimezone = "Asia/Tokyo"\n')
    (project.dir / "broken.json.j2").write_text('{"family": {{ nope }}}\n')


@pytest.fixture
def scanner() -> Scanner:
    return Scanner()


def test_no_key_material_anywhere(project: Project, scanner: Scanner) -> None:
    configure(project)
    debug = "--debug"
    run = scanner.run
    # -- success paths, every command at --debug ------------------------------------------------
    scaffold = Project(dir=project.dir / "scaffold", stack=project.stack, gcp_project=project.gcp_project,
                       account_id=project.account_id, family=project.family)
    (scaffold.dir / ".home").mkdir(parents=True)
    run(scaffold, "init", debug, "init", "--family", project.family, "--gcp-project", project.gcp_project,
        "--service-account", project.account_id, "--repository", project.family)
    run(project, "bootstrap", debug, "bootstrap")
    run(project, "bootstrap --new-key", debug, "bootstrap", "--new-key")
    run(project, "push-image", debug, "push-image")
    run(project, "render", debug, "render")
    run(project, "diff (differs)", debug, "diff", expect=(1,))
    run(project, "register-task", debug, "register-task")
    run(project, "diff", debug, "diff")
    run(project, "deploy", debug, "deploy", "--new-key")
    run(project, "run-local", debug, "run-local")
    run(project, "rotate-key", debug, "rotate-key")
    run(project, "doctor", debug, "doctor", expect=(0, 3))
    run(project, "schedule --show (none)", debug, "schedule", "--show", expect=(0, 1))
    run(project, "run --dry-run", debug, "run", "--dry-run", "--output", "json")
    run(scaffold, "init --from-family", debug, "init", "--from-family", project.family, "--force",
        "--gcp-project", project.gcp_project, "--service-account", project.account_id)
    # -- the key-handling commands at --verbose ----------------------------------------------------
    for args in (("deploy", "--new-key"), ("run-local",), ("rotate-key", "--delete-previous"), ("doctor",)):
        run(project, f"{args[0]} --verbose", "--verbose", *args, expect=(0, 3) if args[0] == "doctor" else (0,))
    # -- failure paths at --debug: tracebacks while a key is in memory ---------------------------
    with FaultProxy(project.stack.moto_url) as proxy:
        faulty = {"AWS_ENDPOINT_URL": proxy.url, "AWS_MAX_ATTEMPTS": "1"}
        proxy.add(Rule("PutSecretValue", code="InternalFailure"))
        run(project, "rotate-key, store fails", debug, "rotate-key", expect=(1,), env=faulty)
        proxy.add(Rule("RegisterTaskDefinition", code="InternalFailure"))
        (project.dir / "image" / "changed").write_text("a new layer, so register-task has work\n")
        (project.dir / "image" / "Dockerfile").write_text((project.dir / "image" / "Dockerfile").read_text()
                                                          + "COPY changed /changed\n")
        run(project, "deploy --new-key, register fails", debug, "deploy", "--new-key", "--tag", "v2",
            expect=(1,), env=faulty)
        proxy.add(Rule("GetSecretValue", code="InternalFailure", times=-1))
        run(project, "run-local, secret unreadable", debug, "run-local", expect=(1,), env=faulty)
        run(project, "doctor, secret unreadable", "--verbose", "doctor", expect=(1, 3), env=faulty)
    # A definitive refusal (not the "not yet" Invalid JWT Signature, which is waited out): roll back.
    project.stack.emulator.refuse_grants(100, "Invalid grant: account not found")
    try:
        run(project, "rotate-key, verification refused", debug, "rotate-key", expect=(1,))
    finally:
        project.stack.emulator.clear_faults()
    run(project, "run-local, engine down", debug, "run-local", expect=(1,),
        env={"DOCKER_HOST": "unix:///nonexistent/docker.sock"})
    run(project, "render, broken template", debug, "render", "--template", "broken.json.j2", expect=(2,))
    project.stack.emulator.set_service_account_disabled(project.email)
    try:
        run(project, "doctor, account disabled", debug, "doctor", expect=(1, 3))
        run(project, "rotate-key, account disabled", debug, "rotate-key", expect=(1,))
    finally:
        project.stack.emulator.set_service_account_disabled(project.email, False)

    keys = all_key_texts(project)
    assert len(keys) >= 6  # every success above that made a key left a version behind
    hits = scanner.scan(project, keys)
    assert hits == []


def test_the_scanner_finds_a_planted_key(project: Project) -> None:
    """The scan is only worth its zero if it finds a leak: plant each form and expect each found."""
    assert project.run("bootstrap").returncode == 0
    keys = all_key_texts(project)
    (text,) = keys
    forms = key_forms(text)
    for name, form in forms.items():
        (project.dir / ".home" / f"planted-{len(name)}-{abs(hash(name))}").write_bytes(b"noise " + form + b" noise")
    hits = Scanner(group="leak scan self-check (planted keys)").scan(project, keys)
    missed = [name for name in forms if not any(hit.startswith(f"{name} of key") for hit in hits)]
    assert missed == []
