"""Keyless mode end to end on the stack: deploy (bootstrap, push-image with the shim,
register-task), then run-local, where the unmodified demo job authenticates through the shim, STS
and generateAccessToken, and no key is ever created."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from typing import Any

import pytest

from tests.conftest import ACCOUNT_ID, Project, assert_one_clean_line
from tests.integration.helpers import CALLER, deploy_logging_calls, keyless_demo, latest

SHIM = "gcpfargate-credential-shim"


def test_keyless_deploy_wires_the_shim_and_the_config_and_reruns_as_a_no_op(
    project: Project, modern_base: str
) -> None:
    keyless_demo(project, modern_base)
    before = project.stack.emulator.stats()["keys_minted"]
    first = deploy_logging_calls(project)
    assert first["push-image"]["shim_image"].startswith(f"{project.stack.registry}/{SHIM}@sha256:")
    definition = latest(project)
    assert (
        definition["taskRoleArn"]
        == f"arn:aws:iam::{ACCOUNT_ID}:role/gcpfargate-{project.family}-task"
    )
    job, shim = definition["containerDefinitions"]
    assert (
        shim["name"] == SHIM
        and shim["essential"] is False
        and shim["image"] == first["push-image"]["shim_image"]
    )
    assert shim["healthCheck"]["command"][:4] == ["CMD", "python3", "-m", "shim"]
    assert "secrets" not in job or job["secrets"] == []
    assert job["dependsOn"] == [{"containerName": SHIM, "condition": "HEALTHY"}]
    environment = {e["name"]: e["value"] for e in job["environment"]}
    assert environment["GOOGLE_CLOUD_PROJECT"] == project.gcp_project
    assert environment["GOOGLE_APPLICATION_CREDENTIALS"] == "/tmp/gcp/credentials.json"
    config = json.loads(environment["GCP_CREDENTIALS_JSON"])
    assert config["type"] == "external_account"
    assert config["token_url"] == project.stack.emulator.http_url + "/v1/token"
    assert config["audience"].endswith(
        f"/workloadIdentityPools/gcpfargate/providers/aws-{ACCOUNT_ID}"
    )
    assert project.stack.emulator.stats()["keys_minted"] == before

    project.stack.emulator.reset_stats()
    (project.dir / "calls").unlink()
    second = deploy_logging_calls(project)
    assert not any(second[step]["changed"] for step in second), second
    assert [
        line for line in (project.dir / "calls").read_text().splitlines() if line.endswith(" write")
    ] == []
    assert project.stack.emulator.stats()["mutating_calls"] == 0

    # The text summary a person reads names the federation, not a key (it once asked for a key id).
    text = project.run("deploy")
    assert text.returncode == 0, text.output
    assert (
        f"task role arn:aws:iam::{ACCOUNT_ID}:role/gcpfargate-{project.family}-task via"
        in text.output
    )


@pytest.mark.parametrize("length", [44, 55])
def test_long_families_deploy_run_and_pass_doctor(
    project: Project, modern_base: str, length: int
) -> None:
    """Long families stay within IAM's 64-character role names and Google STS's 127-byte
    google.subject: the task role is named within the limit, the unmodified demo authenticates,
    and doctor judges the mapping with a session named as ECS names one (32 hex)."""
    from gcpfargate.credentials.keyless.bootstrap import task_role_name

    project.family = (project.family + "-" + "f" * length)[:length]
    project.write_config(project.base_config)
    keyless_demo(project, modern_base)
    deploy_logging_calls(project)
    role = task_role_name(project.family)
    assert len(role) <= 64 and role.endswith("-task")
    assert latest(project)["taskRoleArn"] == f"arn:aws:iam::{ACCOUNT_ID}:role/{role}"
    result = project.run("run-local", "--network", "host")
    assert result.returncode == 0, result.output
    assert "(no key: workload identity federation): HTTP 200" in result.stderr, result.output
    doctor = project.run("doctor", "--output", "json")
    assert doctor.returncode == 0, doctor.output
    admits = next(
        c for c in doctor.json["checks"] if c["name"] == "mapping and condition admit the task role"
    )
    size = len(f"{role}/0123456789abcdef0123456789abcdef")
    assert admits["status"] == "OK" and f"a {size}-byte google.subject" in admits["detail"]

    # Google's default mapping (the whole ARN) is too long for these families: doctor says so, as
    # the exchange would fail, and bootstrap puts gcpfargate's mapping back.
    import requests

    from gcpfargate.credentials.keyless.bootstrap import AWS_MAPPING

    provider = (
        f"{project.stack.emulator.http_url}/v1/projects/{project.gcp_project}/locations/global/"
        f"workloadIdentityPools/gcpfargate/providers/aws-{ACCOUNT_ID}"
    )
    patched = requests.patch(
        provider,
        params={"updateMask": "attributeMapping"},
        timeout=10,
        json={"attributeMapping": {**AWS_MAPPING, "google.subject": "assertion.arn"}},
    )
    assert patched.status_code == 200, patched.text
    failed = project.run("doctor", "--output", "json")
    assert failed.returncode == 3, failed.output
    admits = next(
        c for c in failed.json["checks"] if c["name"] == "mapping and condition admit the task role"
    )
    arn = f"arn:aws:sts::{ACCOUNT_ID}:assumed-role/{role}/0123456789abcdef0123456789abcdef"
    assert admits["status"] == "FAIL"
    assert f"google.subject of {len(arn)} bytes, which Google STS refuses" in admits["detail"]
    assert project.run("bootstrap", env={"GCPFARGATE_GCP_AUTH": "keyless"}).returncode == 0
    assert project.run("doctor").returncode == 0


def test_a_read_only_root_gets_its_credential_configuration_on_tmpfs(
    project: Project, modern_base: str
) -> None:
    """Fargate has tmpfs since 2026-01: the wrapper writes the configuration to memory, so a
    read-only root deploys and starts (without the mount it could not write it)."""
    keyless_demo(project, modern_base)
    template = project.dir / "task-definition.json.j2"
    template.write_text(
        template.read_text().replace(
            '"essential": true,', '"essential": true,\n      "readonlyRootFilesystem": true,'
        )
    )
    result = project.run("deploy")
    assert result.returncode == 0, result.output
    arns = project.aws("ecs").list_task_definitions(familyPrefix=project.family)
    definition = project.aws("ecs").describe_task_definition(
        taskDefinition=arns["taskDefinitionArns"][-1]
    )["taskDefinition"]
    job = next(c for c in definition["containerDefinitions"] if c["name"] == "job")
    assert job["readonlyRootFilesystem"] is True
    assert job["linuxParameters"]["tmpfs"] == [
        {"containerPath": "/tmp/gcp", "size": 4, "mountOptions": ["mode=0700"]}
    ]
    ran = project.run("run-local", "--network", "host")
    assert ran.returncode == 0, ran.output


def test_a_fresh_provider_and_binding_are_refused_until_google_propagates_them(
    project: Project, modern_base: str
) -> None:
    """Google: new pools, providers and bindings take minutes to work. bootstrap cannot wait it out
    (only a task holding the task role can exchange a token), so it says so; the rehearsal then
    fails the way the task would, and works once the change has propagated."""
    keyless_demo(project, modern_base)
    emulator = project.stack.emulator
    emulator.set_keyless_propagation(binding_refusals=1, provider_refusals=1)
    try:
        deployed = project.run("deploy")
        assert deployed.returncode == 0, deployed.output
        assert "a few minutes (up to 7) to propagate" in deployed.stderr, deployed.stderr
        unknown = project.run("run-local", "--network", "host")
        assert unknown.returncode == 1 and "invalid_target" in unknown.output, unknown.output
        denied = project.run("run-local", "--network", "host")
        assert denied.returncode == 1, denied.output
        assert "iam.serviceAccounts.getAccessToken" in denied.output, denied.output
        ran = project.run("run-local", "--network", "host")
        assert ran.returncode == 0, ran.output
        assert "called the GCP API as" in ran.stderr, ran.output
    finally:
        emulator.reset_knobs()
    again = project.run("deploy")  # nothing new to propagate: no warning
    assert again.returncode == 0 and "to propagate" not in again.stderr, again.output


def test_a_shim_base_holding_a_key_is_refused_by_the_key_guard(
    project: Project, modern_base: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    import docker

    from tests.unit.helpers import key_json

    context = tmp_path_factory.mktemp("poisoned-base")  # outside the project's build context
    (context / "leaked.json").write_bytes(key_json())
    (context / "Dockerfile").write_text(f"FROM {modern_base}\nCOPY leaked.json /etc/leaked.json\n")
    engine = docker.DockerClient(base_url=project.stack.docker_host)
    poisoned = f"gcpfargate-test/poisoned-base:{project.family}"
    engine.images.build(path=str(context), tag=poisoned, rm=True)
    keyless_demo(project, modern_base)
    project.extra_env["GCPFARGATE_IMAGE_SHIM_BASE_IMAGE"] = poisoned
    result = project.run("push-image")
    line = assert_one_clean_line(result, 1, "refusing to push", SHIM, "/etc/leaked.json")
    assert "PRIVATE KEY" not in result.output, line
    from gcpfargate.image.shim_image import build_context
    from gcpfargate.image.shim_push import REPOSITORY, shim_tag
    from tests.integration.helpers import registry_tags

    assert shim_tag(build_context(poisoned)) not in registry_tags(project, REPOSITORY)


def test_an_image_squatting_the_shims_tag_is_refused_before_anything_is_registered(
    project: Project, modern_base: str
) -> None:
    """Someone pushes another image under the tag gcpfargate computes for the shim: push-image,
    deploy and register-task refuse it (its config lacks the build's content label) in one line,
    and no task definition names it."""
    import docker

    from gcpfargate.image.shim_image import build_context
    from gcpfargate.image.shim_push import REPOSITORY, shim_tag

    engine = docker.DockerClient(base_url=project.stack.docker_host)
    # A base of this test's own, so the squatted tag is nobody else's on this stack.
    base = f"gcpfargate-test/shim-base:{project.family}"
    engine.images.get(modern_base).tag(base)
    tag = shim_tag(build_context(base))
    squatter = f"{project.stack.registry}/{REPOSITORY}:{tag}"
    engine.images.get(modern_base).tag(squatter)
    for _ in engine.api.push(squatter, stream=True, decode=True):
        pass
    keyless_demo(project, modern_base)
    project.extra_env["GCPFARGATE_IMAGE_SHIM_BASE_IMAGE"] = base
    for command in ("push-image", "deploy"):
        refused = project.run(command)
        assert_one_clean_line(
            refused, 1, f"{REPOSITORY}:{tag}", "is not the credential shim gcpfargate builds"
        )
        assert "batch-delete-image" in refused.stderr
    # register-task alone resolves the shim too, and refuses as well (any pushed app image will do).
    refused = project.run("register-task", "--image", squatter)
    assert_one_clean_line(refused, 1, "is not the credential shim gcpfargate builds")
    listed = project.aws("ecs").list_task_definitions(familyPrefix=project.family)
    assert listed["taskDefinitionArns"] == []


@pytest.fixture
def deployed(project: Project, modern_base: str) -> Project:
    keyless_demo(project, modern_base)
    deploy_logging_calls(project)
    return project


def test_run_local_authenticates_the_unmodified_demo_without_a_key(deployed: Project) -> None:
    stats = deployed.stack.emulator.stats()
    result = deployed.run("run-local", "--network", "host")
    assert result.returncode == 0, result.output
    assert (
        f"called the GCP API as {deployed.email} (no key: workload identity federation): HTTP 200"
        in result.stderr
    ), result.output
    after = deployed.stack.emulator.stats()
    assert after["keys_minted"] == stats["keys_minted"]
    # Leak scan: no task-role access key (moto's STS issues ASIA + 16) in anything printed.
    assert re.search(r"ASIA[0-9A-Z]{16}", result.output) is None
    assert after["impersonated_tokens_issued"] == stats["impersonated_tokens_issued"] + 1


def test_a_command_override_replaces_the_images_cmd_as_in_key_mode(deployed: Project) -> None:
    job = latest(deployed)["containerDefinitions"][0]
    # Docker's split, as key mode keeps it: the wrapper and the ENTRYPOINT, then the CMD.
    assert job["entryPoint"][3:] == ["gcpfargate-wrapper", "python3", "/app/app.py"]
    assert job["command"] == ["--date", "today", "--note", 'it\'s a "quoted" $ARG']
    result = deployed.run("run-local", "--network", "host", "--command", "--date yesterday")
    assert result.returncode == 0, result.output
    assert "job: args=['--date', 'yesterday'] credentials file" in result.stderr, result.output
    assert "(no key: workload identity federation): HTTP 200" in result.stderr


# A job that lives long enough for its token to go stale: one Credentials object, two API calls.
JOB_TWICE = """
import os, time
import google.auth
from google.auth.transport.requests import AuthorizedSession
credentials, _ = google.auth.default(scopes=["https://www.googleapis.com/auth/cloud-platform"])
session = AuthorizedSession(credentials)
for call in (1, 2):
    response = session.get(os.environ["DEMO_API_URL"] + "/v1/whoami", timeout=10)
    response.raise_for_status()
    print(f"job: call {call} as {response.json()['email']}", flush=True)
    if call == 1:
        time.sleep(8)
"""


def test_run_local_refreshes_twice_the_second_time_with_rotated_role_credentials(
    deployed: Project,
) -> None:
    """Issue 19 "Done when": short tokens make the job refresh twice in one run, and the second
    exchange is signed with task-role credentials the local ECS endpoint re-assumed meanwhile
    (rotated)."""
    from tests.integration.helpers import register_variant

    def job_twice(definition: dict[str, Any]) -> None:
        entry = definition["containerDefinitions"][0]["entryPoint"]
        at = entry.index("/app/app.py")
        entry[at : at + 1] = ["-c", JOB_TWICE]

    register_variant(deployed, job_twice)
    emulator, strict = deployed.stack.emulator, deployed.stack.strict
    assert strict is not None, "the rotation knob lives in the strict layer"
    # google-auth treats a token as stale 3 min 45 s before it expires: a 230 s token after ~5 s.
    # Role sessions advertised to expire in 5 min 4 s are re-assumed by run-local's endpoint (5 min
    # margin) after ~4 s, and the shim (10 min margin) asks that endpoint on every request.
    emulator.set_token_lifetime(230)
    strict.settings.assume_role_lifetime_s = 304
    emulator.reset_stats()
    fired = strict.report()["fired"].get("sts.assume_role_lifetime", 0)
    try:
        result = deployed.run("run-local", "--network", "host")
    finally:
        strict.settings.assume_role_lifetime_s = 0
        emulator.reset_knobs()
    assert result.returncode == 0, result.output
    assert (
        f"job: call 1 as {deployed.email}" in result.stderr
        and f"job: call 2 as {deployed.email}" in result.stderr
    )
    stats = emulator.stats()
    assert stats["federated_tokens_issued"] == 2 and stats["impersonated_tokens_issued"] == 2, stats
    first, second = stats["subject_access_keys"]
    assert first.startswith("ASIA") and second.startswith("ASIA") and first != second, stats[
        "subject_access_keys"
    ]
    assert (
        strict.report()["fired"]["sts.assume_role_lifetime"] >= fired + 2
    )  # assumed, then re-assumed
    assert re.search(r"ASIA[0-9A-Z]{16}", result.output) is None


def test_run_local_fails_as_the_task_would_when_the_role_is_not_bound(deployed: Project) -> None:
    """The rehearsal fails where Fargate would: in the app, with Google's refusal in its log, and
    run-local exits with the container's code and says so last (doctor's binding check names the
    cause before any run)."""
    emulator = deployed.stack.emulator
    with emulator.state.lock:
        emulator.keyless.policies.policies.pop(deployed.email, None)
    result = deployed.run("run-local", "--network", "host")
    assert result.returncode == 1, result.output
    assert "iam.serviceAccounts.getAccessToken" in result.output, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines[-1] == "container job exited with 1", result.output


def test_bootstrap_undeletes_a_soft_deleted_pool_before_run_local(deployed: Project) -> None:
    import requests

    pool = (
        f"{deployed.stack.emulator.http_url}/v1/projects/{deployed.gcp_project}/locations/global/"
        "workloadIdentityPools/gcpfargate"
    )
    assert requests.delete(pool, timeout=10).status_code == 200
    failed = deployed.run("run-local", "--network", "host")
    assert failed.returncode != 0 and "invalid_target" in failed.stderr, failed.output
    assert deployed.run("bootstrap").returncode == 0
    assert requests.get(pool, timeout=10).json()["state"] == "ACTIVE"
    assert deployed.run("run-local", "--network", "host").returncode == 0


def test_keyless_mode_has_no_keys_to_rotate(deployed: Project) -> None:
    for command in (("rotate-key",), ("rotate-key", "--prune")):
        result = deployed.run(*command)
        assert_one_clean_line(result, 2, "keyless mode")


def test_doctor_checks_every_keyless_link(deployed: Project) -> None:
    result = deployed.run("doctor", "--output", "json")
    assert result.returncode == 0, result.output
    checks = {check["name"]: check["status"] for check in result.json["checks"]}
    assert checks == {
        "config valid": "OK",
        "AWS identity": "OK",
        "service account exists and is enabled": "OK",
        "Google APIs for keyless are enabled": "OK",
        "workload identity pool is ACTIVE": "OK",
        "AWS provider trusts this account": "OK",
        "mapping and condition admit the task role": "OK",
        "task role trusts ecs-tasks.amazonaws.com": "OK",
        "workloadIdentityUser binding": "OK",
        "task definition is wired for keyless": "OK",
        "no key material": "OK",
        "image exists and matches runtimePlatform": "OK",
        "awslogs group exists": "OK",
        "run history is kept": "OK",
        "failed runs reach the alert topic": "SKIP",  # no [notify]
        "jobs' last runs succeeded": "SKIP",  # no job has run
    }

    import requests

    provider = (
        f"{deployed.stack.emulator.http_url}/v1/projects/{deployed.gcp_project}/locations/global/"
        f"workloadIdentityPools/gcpfargate/providers/aws-{ACCOUNT_ID}"
    )
    requests.patch(
        provider,
        params={"updateMask": "attributeCondition"},
        timeout=10,
        json={"attributeCondition": "attribute.aws_role.endsWith('-other')"},
    )
    failed = deployed.run("doctor", "--output", "json")
    assert failed.returncode == 3
    statuses = {check["name"]: check for check in failed.json["checks"]}
    assert statuses["mapping and condition admit the task role"]["status"] == "FAIL"
    assert (
        "the attribute condition rejects"
        in statuses["mapping and condition admit the task role"]["detail"]
    )
    # run-local fails the way the task would, in one line.
    run = deployed.run("run-local", "--network", "host")
    assert run.returncode != 0 and "rejected by the attribute condition" in run.stderr, run.output


def test_run_local_refuses_to_start_the_app_when_the_shim_is_down(deployed: Project) -> None:
    from tests.integration.helpers import register_variant

    def break_shim(definition: dict[str, Any]) -> None:
        shim = definition["containerDefinitions"][1]
        shim["command"] = [
            *shim["command"],
            "--refresh-margin",
            "-1",
        ]  # the shim refuses this and exits

    register_variant(deployed, break_shim)
    result = deployed.run("run-local", "--network", "host")
    assert_one_clean_line(result, 1, "the credential shim is stopped")
    assert (
        "job:" not in result.stderr
    )  # the app never started, as with dependsOn HEALTHY on Fargate
    network_none = deployed.run("run-local")
    assert_one_clean_line(network_none, 1, "the credential shim is stopped")


# Asks the shim for the task role the way google-auth does (IMDSv2), at the URL the credential
# configuration (written by the wrapper) names, then stays up while the test looks at the host.
PROBE = """
import json, os, sys, time, urllib.request
config = json.load(open(os.environ["GOOGLE_APPLICATION_CREDENTIALS"]))
source = config["credential_source"]
base = source["url"].split("/latest/")[0]
ttl = {"X-aws-ec2-metadata-token-ttl-seconds": "60"}
put = urllib.request.Request(base + "/latest/api/token", method="PUT", headers=ttl)
token = {"X-aws-ec2-metadata-token": urllib.request.urlopen(put, timeout=5).read().decode()}
role = urllib.request.urlopen(urllib.request.Request(source["url"], headers=token), timeout=5)
role = role.read().decode()
document = urllib.request.urlopen(
    urllib.request.Request(source["url"] + "/" + role, headers=token), timeout=5
)
key = json.loads(document.read())["AccessKeyId"]
print(f"job: shim at {base} role {role} key {key[:4]}", flush=True)
time.sleep(float(os.environ.get("PROBE_STAY", "8")))
"""


def _listening_inodes() -> dict[int, str]:
    """Inode -> local address of every listening TCP socket in this (the host's) namespace."""
    found: dict[int, str] = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as lines:
            for line in list(lines)[1:]:
                fields = line.split()
                if fields[3] == "0A":  # TCP_LISTEN
                    found[int(fields[9])] = fields[1]
    return found


def _socket_inodes(pid: int) -> set[int]:
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(int(target[8:-1]))
    return inodes


def test_run_local_runs_the_app_in_the_shims_network_and_nothing_listens_on_the_host(
    deployed: Project,
) -> None:
    """As with awsvpc: the app joins the shim's network namespace (network none by default) and
    reaches the shim on that namespace's 127.0.0.1 at the definition's own port; neither the shim
    nor gcpfargate's task-role endpoint listens on the host."""
    import docker

    from tests.integration.helpers import register_variant

    def probe(definition: dict[str, Any]) -> None:
        entry = definition["containerDefinitions"][0]["entryPoint"]
        at = entry.index("/app/app.py")
        entry[at : at + 1] = ["-c", PROBE]

    definition = register_variant(deployed, probe)
    port = definition["containerDefinitions"][1]["command"][1]
    engine = docker.DockerClient(base_url=deployed.stack.docker_host)
    proc = subprocess.Popen(
        [sys.executable, "-m", "gcpfargate", "run-local"],
        cwd=deployed.dir,
        env=deployed.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    seen = []
    try:
        assert proc.stderr is not None
        for line in proc.stderr:
            seen.append(line)
            if "job: shim at" in line:
                break
        ready = seen[-1]
        task_role = f"gcpfargate-{deployed.family}-task"
        assert f"job: shim at http://127.0.0.1:{port} role {task_role} key ASIA" in ready, seen
        containers = {
            c.name: engine.api.inspect_container(c.id)
            for c in engine.containers.list(filters={"label": "gcpfargate=run-local"})
        }
        ours = f"{deployed.stack.registry}/{SHIM}@"
        (shim,) = [c for c in containers.values() if c["Config"]["Image"].startswith(ours)]
        # The app, and only it, joined the shim's namespace.
        mode = f"container:{shim['Id']}"
        assert [c for c in containers.values() if c["HostConfig"]["NetworkMode"] == mode] != []
        assert shim["HostConfig"]["NetworkMode"] == "none"
        # Nothing of the run listens in the host's namespace: not the shim's port, and not one
        # socket of gcpfargate's own process (the task-role endpoint is inside the namespace).
        listening = _listening_inodes()
        loopback_port = f"0100007F:{int(port):04X}"
        assert loopback_port not in listening.values()
        assert _socket_inodes(proc.pid) & set(listening) == set()
        # The endpoint's path, token and the credentials are nowhere in the shim's config (the
        # agent makes them up inside the container).
        assert not [e for e in shim["Config"]["Env"] if e.startswith("AWS_CONTAINER_")]
        assert "ASIA" not in json.dumps(shim["Config"]) and "/v2/credentials/" not in json.dumps(
            shim["Config"]["Env"]
        )
    finally:
        out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, "".join(seen) + err
    assert engine.containers.list(all=True, filters={"label": "gcpfargate=run-local"}) == []
    assert re.search(r"ASIA[0-9A-Z]{16}", "".join(seen) + out + err) is None


def test_run_local_assumes_the_task_role_only_for_the_principal_asked_for(
    project: Project, modern_base: str
) -> None:
    """The task role trusts ECS tasks; a person may assume it for run-local only once they name
    themselves in gcp.local_principal (the strict layer evaluates the trust policy as STS does).
    The session is named as ECS names a task's (32 hex), and bootstrap keeps the statement while
    the setting is there and removes it when it is gone."""
    keyless_demo(project, modern_base)
    del project.extra_env["GCPFARGATE_GCP_LOCAL_PRINCIPAL"]
    deploy_logging_calls(project)
    iam = project.aws("iam")
    role = f"gcpfargate-{project.family}-task"

    def trust() -> list[dict[str, Any]]:
        return list(iam.get_role(RoleName=role)["Role"]["AssumeRolePolicyDocument"]["Statement"])

    assert [s["Principal"] for s in trust()] == [{"Service": "ecs-tasks.amazonaws.com"}]
    refused = project.run("run-local", "--network", "host")
    assert_one_clean_line(refused, 1, ":user/moto may not assume the task role")
    assert f'set local_principal = "{CALLER}" under [gcp]' in refused.stderr

    project.extra_env["GCPFARGATE_GCP_LOCAL_PRINCIPAL"] = CALLER
    assert project.run("bootstrap").returncode == 0
    statements = trust()
    assert statements[1] == {
        "Sid": "GcpfargateRunLocal",
        "Effect": "Allow",
        "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT_ID}:root"},
        "Action": "sts:AssumeRole",
        "Condition": {"ArnLike": {"aws:PrincipalArn": CALLER}},
    }
    project.stack.emulator.reset_stats()
    ran = project.run("run-local", "--network", "host")
    assert ran.returncode == 0, ran.output
    (subject,) = project.stack.emulator.stats()["subjects"]
    assert re.fullmatch(rf"{role}/[0-9a-f]{{32}}", subject), subject
    rerun = project.run("bootstrap", "--output", "json")
    assert rerun.returncode == 0 and rerun.json["changed"] is False, rerun.output

    # Another principal named: the trust policy admits that one, not this caller.
    other = f"arn:aws:iam::{ACCOUNT_ID}:role/someone-else"
    project.extra_env["GCPFARGATE_GCP_LOCAL_PRINCIPAL"] = other
    assert project.run("bootstrap").returncode == 0
    assert_one_clean_line(
        project.run("run-local", "--network", "host"), 1, "may not assume the task role"
    )
    del project.extra_env["GCPFARGATE_GCP_LOCAL_PRINCIPAL"]
    assert project.run("bootstrap").returncode == 0
    assert len(trust()) == 1
