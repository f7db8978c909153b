"""Helpers for tests that need a deployed project: an image context, a template, and deploy."""

from __future__ import annotations

import json
import os
import select
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import docker
import requests

from gcpfargate.credentials.keyless.config import credential_config
from gcpfargate.taskdef.exported import DESCRIBE_ONLY
from tests.conftest import ACCOUNT_ID, REGION, Project, secret_key
from tests.stack.images import write_busybox_context

ROOT = Path(__file__).resolve().parents[2]  # the repository
# What DescribeTaskDefinition adds and RegisterTaskDefinition refuses (the product's own list:
# here a convenience for re-registering, not an oracle).
READ_ONLY = DESCRIBE_ONLY


def prepare(
    project: Project, steps: tuple[str, ...] = ('CMD ["echo", "job ran"]',), tag: str = "v1"
) -> None:
    """An [image] section, a busybox build context and the default template."""
    write_busybox_context(project.dir, steps)
    shutil.copyfile(
        ROOT / "templates" / "task-definition.json.j2", project.dir / "task-definition.json.j2"
    )
    config = project.dir / "gcpfargate.toml"
    config.write_text(
        config.read_text() + f'\n[image]\nrepository = "{project.family}"\ntag = "{tag}"\n'
    )


def deploy(project: Project, *args: str) -> dict[str, Any]:
    result = project.run("deploy", "--output", "json", *args)
    assert result.returncode == 0, result.output
    return dict(result.json)


def latest(project: Project) -> dict[str, Any]:
    return dict(
        project.aws("ecs").describe_task_definition(taskDefinition=project.family)["taskDefinition"]
    )


def register_variant(project: Project, change: Any) -> dict[str, Any]:
    """Register a changed copy of the latest revision (as a user editing it by hand would)."""
    definition = {k: v for k, v in latest(project).items() if k not in READ_ONLY}
    change(definition)
    return dict(project.aws("ecs").register_task_definition(**definition)["taskDefinition"])


def secret_policy(project: Project, region: str = REGION) -> str:
    """The execution role's inline policy that lets tasks read the project's secret in `region`."""
    from gcpfargate.iam.policy import secret_policy_name

    return secret_policy_name(region, project.secret_name)


def secret_json(project: Project) -> dict[str, Any]:
    value = project.aws("secretsmanager").get_secret_value(
        SecretId=project.secret_name, VersionStage="AWSCURRENT"
    )
    return dict(json.loads(value["SecretString"]))


def add_service(project: Project, task_definition_arn: str) -> str:
    """A cluster and a service `web` on it running `task_definition_arn`, and the [service]
    section."""
    ecs = project.aws("ecs")
    cluster = project.family  # unique per test
    ecs.create_cluster(clusterName=cluster)
    # desiredCount 0: moto starts no tasks, so its deployment is COMPLETED at once (see the module
    # docstring).
    ecs.create_service(
        cluster=cluster,
        serviceName="web",
        taskDefinition=task_definition_arn,
        desiredCount=0,
        launchType="FARGATE",
    )
    config = project.dir / "gcpfargate.toml"
    config.write_text(config.read_text() + f'\n[service]\nname = "web"\ncluster = "{cluster}"\n')
    return cluster


CALLER = f"arn:aws:iam::{ACCOUNT_ID}:user/moto"  # moto's identity for the stack's keys


def keyless_demo(project: Project, base: str) -> None:
    """The demo project, unmodified but for keyless mode and a base image with google-auth 2.x."""
    for name in ("gcpfargate.toml", "task-definition.json.j2", "Dockerfile", "app.py"):
        shutil.copyfile(ROOT / "examples" / "demo" / name, project.dir / name)
    dockerfile = (project.dir / "Dockerfile").read_text()
    (project.dir / "Dockerfile").write_text(
        dockerfile.replace("python-base:bookworm\n", f"{base.split('/')[-1]}\n")
    )
    text = (project.dir / "gcpfargate.toml").read_text()
    text = text.replace('"demo-project"', f'"{project.gcp_project}"').replace(
        '"nightly-batch"', f'"{project.account_id}"'
    )
    text = text.replace('"demo-nightly"', f'"{project.family}"').replace(
        "[gcp]\n", '[gcp]\nauth = "keyless"\n'
    )
    (project.dir / "gcpfargate.toml").write_text(text)
    project.extra_env["GCPFARGATE_IMAGE_SHIM_BASE_IMAGE"] = base
    # run-local assumes the task role as the person running it: the trust statement for that
    # person is opt-in (moto's identity for the stack's test keys).
    project.extra_env["GCPFARGATE_GCP_LOCAL_PRINCIPAL"] = CALLER


def deploy_logging_calls(project: Project) -> dict[str, Any]:
    """deploy, with every call the product makes appended to `project.dir / "calls"`."""
    result = project.run(
        "deploy", "--output", "json", env={"GCPFARGATE_CALL_LOG": str(project.dir / "calls")}
    )
    assert result.returncode == 0, result.output
    return dict(result.json)


DOCKER_V2 = "application/vnd.docker.distribution.manifest.v2+json"


def fake_key_json() -> str:
    """A key-shaped JSON document made at run time, so no key-looking text is ever committed."""
    pem = "-----BEGIN " + "PRIVATE KEY-----\nMIIfake\n-----END " + "PRIVATE KEY-----\n"
    return json.dumps(
        {
            "type": "service_account",
            "project_id": "proj-fake",
            "private_key_id": "0" * 40,
            "private_key": pem,
            "client_email": "fake@proj-fake.iam.gserviceaccount.com",
        }
    )


def configure_image(project: Project, **image: Any) -> str:
    """Append an [image] section (repository unique to the test); returns the repository."""
    values = {"repository": project.family, "context": ".", **image}
    lines = "".join(f"{key} = {json.dumps(value)}\n" for key, value in values.items())
    config = project.dir / "gcpfargate.toml"
    config.write_text(config.read_text() + "\n[image]\n" + lines)
    return str(values["repository"])


def registry_digest(project: Project, repository: str, tag: str) -> str | None:
    request = urllib.request.Request(
        f"http://{project.stack.registry}/v2/{repository}/manifests/{tag}",
        method="HEAD",
        headers={"Accept": DOCKER_V2},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.headers["Docker-Content-Digest"]
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            return None
        raise


def registry_tags(project: Project, repository: str) -> list[str]:
    try:
        with urllib.request.urlopen(
            f"http://{project.stack.registry}/v2/{repository}/tags/list", timeout=10
        ) as r:
            return sorted(json.load(r).get("tags") or [])
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            return []
        raise


class Terminal:
    """The CLI with a pseudo-terminal as stdin, stdout and stderr (so it sees a TTY, as a person's
    shell)."""

    def __init__(self, args: list[str], cwd: Path, env: dict[str, str]) -> None:
        self.master, slave = os.openpty()
        self.process = subprocess.Popen(
            args, cwd=cwd, env=env, stdin=slave, stdout=slave, stderr=slave, start_new_session=True
        )
        os.close(slave)
        self.seen = ""
        self.before = ""

    def _read(self, timeout: float) -> str:
        ready, _, _ = select.select([self.master], [], [], timeout)
        if not ready:
            return ""
        try:
            return os.read(self.master, 4096).decode("utf-8", "replace")
        except OSError:  # the other side closed: the process ended
            return ""

    def expect(self, text: str) -> None:
        """Wait until `text` has appeared since the last expectation."""
        deadline = time.monotonic() + PROMPT_TIMEOUT_S
        while text not in self.seen:
            assert time.monotonic() < deadline, f"no {text!r} in {self.seen!r}"
            chunk = self._read(0.5)
            if not chunk and self.process.poll() is not None:
                raise AssertionError(
                    f"exited {self.process.returncode} before {text!r}: {self.seen!r}"
                )
            self.seen += chunk
        self.before = self.seen[: self.seen.index(text)]  # what came out ahead of `text`
        self.seen = self.seen[self.seen.index(text) + len(text) :]

    def answer(self, prompt: str, reply: str) -> None:
        self.expect(prompt)
        os.write(self.master, reply.encode() + b"\r")

    def finish(self) -> tuple[int, str]:
        rest = self.seen
        while (chunk := self._read(1.0)) or self.process.poll() is None:
            rest += chunk
        os.close(self.master)
        return self.process.wait(timeout=30), rest


def terminal_env(home: Path) -> dict[str, str]:
    """A developer's shell: no gcpfargate or AWS settings, no region anywhere (so init must ask),
    not CI. init talks to no cloud, so no stack is needed."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GCPFARGATE_", "AWS_", "CI"))}
    home.mkdir(exist_ok=True)
    return {
        **env,
        "HOME": str(home),
        "AWS_CONFIG_FILE": str(home / "none"),
        "TERM": "xterm",
        "COLUMNS": "120",
        "NO_COLOR": "1",
    }


def prepare_schedule(project: Project, extra_schedule: str = "") -> dict[str, str]:
    ec2 = project.aws("ec2")
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.1.0/24")["Subnet"]["SubnetId"]
    group = ec2.create_security_group(GroupName=f"sg-{project.family}", Description="t", VpcId=vpc)[
        "GroupId"
    ]
    cluster = f"cluster-{project.family}"
    cluster_arn = project.aws("ecs").create_cluster(clusterName=cluster)["cluster"]["clusterArn"]
    execution_role = f"arn:aws:iam::{ACCOUNT}:role/gcpfargate-{project.family}-execution"
    task_role = f"arn:aws:iam::{ACCOUNT}:role/{project.family}-task"
    registered = project.aws("ecs").register_task_definition(
        family=project.family,
        networkMode="awsvpc",
        requiresCompatibilities=["FARGATE"],
        cpu="256",
        memory="512",
        executionRoleArn=execution_role,
        taskRoleArn=task_role,
        containerDefinitions=[
            {
                "name": "app",
                "image": "busybox",
                "essential": True,
                "memory": 512,
                "logConfiguration": {
                    "logDriver": "awslogs",
                    "options": {
                        "awslogs-group": f"/ecs/{project.family}",
                        "awslogs-region": REGION,
                        "awslogs-stream-prefix": "job",
                    },
                },
            }
        ],
    )
    project.write_config(
        project.base_config
        + f"""
        [run]
        cluster = "{cluster}"
        subnets = ["{subnet}"]
        security_groups = ["{group}"]
        platform_version = "1.4.0"

        [schedule]
        timezone = "Asia/Tokyo"
        {extra_schedule}
        """
    )
    return {
        "subnet": subnet,
        "group": group,
        "cluster_arn": cluster_arn,
        "execution_role": execution_role,
        "task_role": task_role,
        "revision_arn": registered["taskDefinition"]["taskDefinitionArn"],
        "family_arn": f"arn:aws:ecs:{REGION}:{ACCOUNT}:task-definition/{project.family}",
    }


def prepare_run(project: Project, extra_run: str = "") -> Ecs:
    """A VPC, a cluster, a log group and a registered Fargate task definition, plus [run] in the
    config."""
    ec2 = project.aws("ec2")
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    # moto describes the task's ENI with a private DNS name, which exists only with DNS hostnames
    # on.
    ec2.modify_vpc_attribute(VpcId=vpc, EnableDnsHostnames={"Value": True})
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.1.0/24")["Subnet"]["SubnetId"]
    group = ec2.create_security_group(
        GroupName=f"sg-{project.family}", Description="run test", VpcId=vpc
    )["GroupId"]
    cluster = f"cluster-{project.family}"
    project.aws("ecs").create_cluster(clusterName=cluster)
    log_group = f"/ecs/{project.family}"
    project.aws("logs").create_log_group(logGroupName=log_group)
    registered = project.aws("ecs").register_task_definition(
        family=project.family,
        networkMode="awsvpc",
        requiresCompatibilities=["FARGATE"],
        cpu="256",
        memory="512",
        executionRoleArn=f"arn:aws:iam::123456789012:role/gcpfargate-{project.family}-execution",
        containerDefinitions=[
            {
                "name": CONTAINER,
                "image": "busybox",
                "essential": True,
                "memory": 512,  # moto sums container memory to place the task
                "logConfiguration": {
                    "logDriver": "awslogs",
                    "options": {
                        "awslogs-group": log_group,
                        "awslogs-region": REGION,
                        "awslogs-stream-prefix": PREFIX,
                    },
                },
            }
        ],
    )
    project.write_config(
        project.base_config
        + f"""
        [run]
        cluster = "{cluster}"
        subnets = ["{subnet}"]
        security_groups = ["{group}"]
        poll_interval = 1
        {extra_run}
        """
    )
    return Ecs(cluster, subnet, group, log_group, registered["taskDefinition"]["taskDefinitionArn"])


def remove_role_permission(project: Project) -> None:
    project.aws("iam").delete_role_policy(
        RoleName=f"gcpfargate-{project.family}-execution", PolicyName=secret_policy(project)
    )


def active(project: Project) -> list[int]:
    arns = project.aws("ecs").list_task_definitions(familyPrefix=project.family, status="ACTIVE")[
        "taskDefinitionArns"
    ]
    return sorted(int(arn.rsplit(":", 1)[-1]) for arn in arns)


def manifest_status(project: Project, digest: str) -> int:
    url = f"http://{project.stack.registry}/v2/{project.family}/manifests/{digest}"
    accept = (
        "application/vnd.docker.distribution.manifest.v2+json, "
        "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, "
        "application/vnd.docker.distribution.manifest.list.v2+json"
    )
    return requests.get(url, headers={"Accept": accept}, timeout=10).status_code


REGION = "ap-northeast-1"


VERIFICATION_URL = f"https://sts.{REGION}.amazonaws.com?Action=GetCallerIdentity&Version=2011-06-15"


def subject_token_through_adc(config_path: Path, shim_port: int) -> dict:
    import google.auth
    import google.auth.aws
    from google.auth.transport.requests import Request

    config_path.write_text(
        json.dumps(
            credential_config(
                project_number="123456789",
                pool_id="gcpfargate",
                provider_id="aws-tasks",
                service_account_email="runner@demo-project.iam.gserviceaccount.com",
                shim_port=shim_port,
            )
        )
    )
    credentials, _ = google.auth.default()
    assert isinstance(credentials, google.auth.aws.Credentials)
    return json.loads(urllib.parse.unquote(credentials.retrieve_subject_token(Request())))


PROMPT_TIMEOUT_S = 30.0


CONTAINER = "app"


PREFIX = "job"


@dataclass
class Ecs:
    cluster: str
    subnet: str
    security_group: str
    log_group: str
    task_definition_arn: str


ACCOUNT = "123456789012"


current = secret_key  # other test modules import these two from here


def age(project: Project, key_ids: list[str], hours: float = 48) -> None:
    for key_id in key_ids:
        project.stack.emulator.set_key_valid_after(
            project.email, key_id, datetime.now(UTC) - timedelta(hours=hours)
        )


def own(project: Project, key_ids: list[str]) -> None:
    """Record keys as the secret's own, as a run that died after minting them would have: only such
    keys are gcpfargate's to retire or prune (foreign ones: test_sharing.py)."""
    project.aws("secretsmanager").tag_resource(
        SecretId=project.secret_name,
        Tags=[{"Key": f"gcpfargate:key:{key_id}", "Value": "minted"} for key_id in key_ids],
    )


def engine(project: Project) -> docker.DockerClient:
    return docker.DockerClient(base_url=project.stack.docker_host)


def publish_config_image(
    project: Project, repository: str, tag: str, run_config: dict[str, Any]
) -> str:
    """Push to the stack's registry an image (linux/amd64, no layers) whose config's "config"
    section is `run_config`, as `repository:tag`; returns its manifest digest. Reading an image's
    ENTRYPOINT/CMD/USER needs nothing more."""
    import hashlib

    base = f"http://{project.stack.registry}/v2/{repository}"
    config = json.dumps(
        {"architecture": "amd64", "os": "linux", "config": run_config, "rootfs": {}}
    ).encode()
    config_digest = "sha256:" + hashlib.sha256(config).hexdigest()
    with urllib.request.urlopen(
        urllib.request.Request(f"{base}/blobs/uploads/", method="POST"), timeout=10
    ) as started:
        location = started.headers["Location"]
    if location.startswith("/"):
        location = f"http://{project.stack.registry}{location}"
    separator = "&" if "?" in location else "?"
    urllib.request.urlopen(
        urllib.request.Request(
            f"{location}{separator}digest={config_digest}",
            data=config,
            method="PUT",
            headers={"Content-Type": "application/octet-stream"},
        ),
        timeout=10,
    ).close()
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": config_digest,
                "size": len(config),
            },
            "layers": [],
        }
    ).encode()
    with urllib.request.urlopen(
        urllib.request.Request(
            f"{base}/manifests/{tag}",
            data=manifest,
            method="PUT",
            headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"},
        ),
        timeout=10,
    ) as put:
        return str(put.headers["Docker-Content-Digest"])


def in_process(
    project: Project, monkeypatch: Any, apply: bool, env: dict[str, str] | None = None
) -> Any:
    """A Context for calling a command's core function in this process, against the project's
    stack: previewing (`apply` False) or applying, as the CLI's --dry-run chooses."""
    from gcpfargate.config import load_settings
    from gcpfargate.core.context import Context
    from gcpfargate.core.plan import Plan

    for name in [k for k in os.environ if k.startswith(("AWS_", "GCPFARGATE_"))]:
        monkeypatch.delenv(name)
    for name, value in {**project.env, **(env or {})}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(project.dir)
    return Context(
        settings=load_settings(str(project.dir / "gcpfargate.toml")), plan=Plan(apply=apply)
    )


def change_kinds(changes: list[Any]) -> list[tuple[str, str, str]]:
    """What a plan's changes do, to what: (action, resource, name) each."""
    return [(change.action, change.resource, change.name) for change in changes]
