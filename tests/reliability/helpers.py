"""Shared helpers for the reliability suite: deployable projects, the call log, and the invariants
every fault, race and rerun must leave intact.

The invariants (checked against the real stack, never against what the CLI says):
1. no orphan: every enabled user-managed key of the account is referenced by a staged version
   (AWSCURRENT, AWSPREVIOUS, any stage) of some gcpfargate secret of the account (tagged with its
   email), or is the key AWSCURRENT held before the command (`previous`: the key lifecycle keeps the
   previous key enabled until it is superseded twice);
2. the secret's AWSCURRENT holds a key of the account that authenticates with google-auth against
   the emulator's token endpoint;
3. the secret's tags agree with AWSCURRENT (gcpfargate:key-id, what doctor --no-get-secret judges
   by, issue 14; gcpfargate:service-account);
4. when a task definition is registered, its latest revision (the highest revision number, read
   over every page: moto ignores sort=DESC) takes the key from the secret's ARN.
`test_invariants_catch_planted_defects` plants each defect once and requires it reported.
"""

from __future__ import annotations

import json
import os
import re
import time
import urllib.request
from collections import Counter
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from tests import conftest
from tests.conftest import (
    Project,
    Result,
    assert_one_clean_line,
    gets_token,
    record_figure,
    secret_key,
)
from tests.reliability import leakscan
from tests.stack.faultproxy import FaultProxy, Rule
from tests.stack.images import write_busybox_context
from tests.stack.local import LocalStack

STAGES = ("AWSCURRENT", "AWSPREVIOUS")


# -- projects --------------------------------------------------------------------------------------
def new_project(stack: LocalStack, directory: Path) -> Project:
    """A fresh project like conftest's `project` fixture, for tests that need several of them."""
    return conftest.new_project(stack, directory, prefix="r")


def make_deployable(
    project: Project, steps: tuple[str, ...] = ('CMD ["/bin/true"]',), tag: str = "v1"
) -> None:
    """Give `project` an image context, an [image] section and the default template, so `deploy`
    runs.

    The tag is fixed: a derived (timestamp) tag would make every rerun look like a new image.
    """
    write_busybox_context(project.dir / "image", steps=steps)
    config = project.dir / "gcpfargate.toml"
    config.write_text(
        config.read_text() + f'\n[image]\nrepository = "{project.family}"\ncontext = "image"\n'
        f'tag = "{tag}"\n'
    )
    template = (
        resources.files("gcpfargate.templates").joinpath("task-definition.json.j2").read_text()
    )
    (project.dir / "task-definition.json.j2").write_text(template)


# -- the call log ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Call:
    system: str  # aws or gcp
    service: str  # secretsmanager, iam, ecr, ...
    operation: str  # CreateSecret, CreateServiceAccountKey, ...
    write: bool


def run_logged(
    project: Project, *args: str, env: dict[str, str | None] | None = None
) -> tuple[Result, list[Call]]:
    """Run the CLI with GCPFARGATE_CALL_LOG and return its result and every AWS/GCP call it made."""
    log = project.dir / ".calls"
    log.unlink(missing_ok=True)
    result = project.run(*args, env={**(env or {}), "GCPFARGATE_CALL_LOG": str(log)})
    calls = []
    for line in log.read_text().splitlines() if log.exists() else []:
        parts = line.split()
        if parts[0] == "registry":  # `registry GET manifests`: the product's own registry reads
            calls.append(
                Call(
                    "registry",
                    "registry",
                    f"{parts[1]} {parts[2]}",
                    parts[1] not in ("GET", "HEAD"),
                )
            )
        else:
            system, service, operation, kind = parts
            calls.append(Call(system, service, operation, kind == "write"))
    log.unlink(missing_ok=True)
    return result, calls


def mutating(calls: list[Call]) -> list[Call]:
    """Each mutating call once per occurrence, in order: (call, nth occurrence of that
    operation)."""
    return [call for call in calls if call.write]


# -- the state of the world ------------------------------------------------------------------------
def secret_versions(project: Project) -> dict[str, dict[str, Any]]:
    """stage -> the key JSON that version holds, for every staged version of the secret."""
    sm = project.aws("secretsmanager")
    found: dict[str, dict[str, Any]] = {}
    for stage in STAGES:
        try:
            value = sm.get_secret_value(SecretId=project.secret_name, VersionStage=stage)
        except sm.exceptions.ResourceNotFoundException:
            continue
        found[stage] = json.loads(value["SecretString"])
    return found


def secret_exists(project: Project) -> bool:
    sm = project.aws("secretsmanager")
    try:
        sm.describe_secret(SecretId=project.secret_name)
    except sm.exceptions.ResourceNotFoundException:
        return False
    return True


current_key = secret_key  # the AWSCURRENT key
authenticates = gets_token


def enabled_keys(project: Project) -> list[str]:
    emulator = project.stack.emulator
    return [
        key_id
        for key_id in emulator.key_ids(project.email)
        if emulator.key_state(project.email, key_id) == "enabled"
    ]


def pages(client: Any, operation: str, key: str, **kwargs: Any) -> list[Any]:
    """Every item of a paginated list (moto pages at 100 for several lists)."""
    return [
        item for page in client.get_paginator(operation).paginate(**kwargs) for item in page[key]
    ]


def referenced_keys(project: Project) -> set[str]:
    """Key ids held by a staged version of any gcpfargate secret of the account (this one
    included)."""
    sm = project.aws("secretsmanager")
    tagged = pages(  # the truth, without the simulated ListSecrets lag
        project.aws("secretsmanager", truth=True),
        "list_secrets",
        "SecretList",
        Filters=[{"Key": "tag-value", "Values": [project.email]}],
    )
    arns = {s["ARN"] for s in tagged}
    if secret_exists(project):
        arns.add(sm.describe_secret(SecretId=project.secret_name)["ARN"])
    found = set()
    for arn in arns:
        for version_id, stages in (
            sm.describe_secret(SecretId=arn).get("VersionIdsToStages", {}).items()
        ):
            if not stages:
                continue
            text = (
                sm.get_secret_value(SecretId=arn, VersionId=version_id).get("SecretString") or "{}"
            )
            try:
                found.add(json.loads(text).get("private_key_id"))
            except (ValueError, AttributeError):
                continue  # not a key (a foreign secret's value)
    return found


def orphans(project: Project, previous: str | None = None) -> list[str]:
    """Enabled keys of the account that no staged version of a gcpfargate secret references."""
    referenced = referenced_keys(project) | ({previous} if previous else set())
    return [key_id for key_id in enabled_keys(project) if key_id not in referenced]


def tag_problems(project: Project) -> list[str]:
    """The secret's tags must name the key and account AWSCURRENT holds (doctor trusts the tag)."""
    from gcpfargate.credentials.key.secret import TAG_ACCOUNT, TAG_KEY_ID

    tags = {
        t["Key"]: t["Value"]
        for t in project.aws("secretsmanager")
        .describe_secret(SecretId=project.secret_name)
        .get("Tags", [])
    }
    key = current_key(project)
    problems = []
    if tags.get(TAG_KEY_ID) != key.get("private_key_id"):
        problems.append(
            f"tag {TAG_KEY_ID} is {tags.get(TAG_KEY_ID)}, AWSCURRENT holds "
            f"{key.get('private_key_id')}"
        )
    if tags.get(TAG_ACCOUNT) != key.get("client_email"):
        problems.append(
            f"tag {TAG_ACCOUNT} is {tags.get(TAG_ACCOUNT)}, AWSCURRENT is of "
            f"{key.get('client_email')}"
        )
    return problems


def check_invariants(
    project: Project, expect_secret: bool = True, previous: str | None = None
) -> list[str]:
    """The invariants as a list of broken ones (empty: all hold). `previous`: the key AWSCURRENT
    held before the command, which the key lifecycle may keep enabled."""
    broken = []
    leftover = orphans(project, previous)
    if leftover:
        broken.append(f"orphan keys (enabled, referenced by no staged version): {leftover}")
    if not secret_exists(project):
        if expect_secret:
            broken.append("the secret does not exist")
        return broken
    key = current_key(project)
    if key.get("client_email") != project.email:
        broken.append(f"AWSCURRENT holds a key of {key.get('client_email')}")
    else:
        # The emulator's grant refusals are cleared before this runs, so a key that does not
        # authenticate now is one the command disabled or deleted while AWSCURRENT still holds it.
        try:
            state = project.stack.emulator.key_state(project.email, key.get("private_key_id", ""))
        except KeyError:
            state = "unknown to the account"
        if state != "enabled":
            broken.append(f"AWSCURRENT key {key.get('private_key_id')} is {state}, not enabled")
        elif not authenticates(key):
            broken.append(f"AWSCURRENT key {key.get('private_key_id')} does not authenticate")
    broken.extend(tag_problems(project))
    broken.extend(task_definition_problems(project))
    return broken


def latest_revision_arn(project: Project) -> str | None:
    """The family's highest revision, from every page: moto returns ascending order whatever `sort`
    says (the strict layer's ecs.list_sort rule fixes that, but it is off by default)."""
    arns = pages(
        project.aws("ecs"),
        "list_task_definitions",
        "taskDefinitionArns",
        familyPrefix=project.family,
    )
    arns = [arn for arn in arns if arn.rsplit("/", 1)[-1].rsplit(":", 1)[0] == project.family]
    return max(arns, key=lambda arn: int(arn.rsplit(":", 1)[-1])) if arns else None


def task_definition_problems(project: Project) -> list[str]:
    """When the family has a revision, its latest must take the credentials from the secret's
    ARN."""
    ecs = project.aws("ecs")
    latest = latest_revision_arn(project)
    if latest is None:
        return []
    definition = ecs.describe_task_definition(taskDefinition=latest)["taskDefinition"]
    secret_arn = project.aws("secretsmanager").describe_secret(SecretId=project.secret_name)["ARN"]
    value_from = [
        s["valueFrom"] for c in definition["containerDefinitions"] for s in c.get("secrets", [])
    ]
    if value_from != [secret_arn]:
        return [
            f"latest revision {definition['revision']} takes secrets from {value_from}, not "
            f"{secret_arn}"
        ]
    return []


def unchanged_everywhere(result: Result) -> list[str]:
    """The steps of a `deploy --output json` that report changed: true (empty: a true no-op)."""
    assert result.returncode == 0, result.output
    return [step for step, out in result.json.items() if out.get("changed") is not False]


# -- a second, disposable Docker engine ------------------------------------------------------------
class PrivateDockerd:
    """A dockerd of its own (the approach of tests/stack/local.py), for tests that stop the engine.

    `stop(kill=...)` ends it; `cleanup()` then makes sure nothing of it is left: no process that
    names its directories (dockerd, containerd, shims), no process of its containers, no mount,
    no directory.
    """

    def __init__(self) -> None:
        import tempfile

        self.root = Path(tempfile.mkdtemp(prefix="gcpf-dkd-"))
        self.socket = self.root / "docker.sock"
        self.host = f"unix://{self.socket}"
        self.process: Any = None
        self.container_ids: set[str] = set()

    def start(self) -> PrivateDockerd:
        import shutil
        import subprocess

        from tests.stack.local import _docker_ping, _wait

        log = self.root / "dockerd.log"
        self.process = subprocess.Popen(
            [
                shutil.which("dockerd") or "dockerd",
                "--host",
                self.host,
                "--data-root",
                str(self.root / "data"),
                "--exec-root",
                str(self.root / "exec"),
                "--pidfile",
                str(self.root / "docker.pid"),
                "--bridge=none",
                "--iptables=false",
                "--ip6tables=false",
                "--ip-masq=false",
                "--userland-proxy=false",
                "--storage-driver=overlay2",
                "--shutdown-timeout=1",
            ],
            stdout=log.open("wb"),
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        _wait(lambda: _docker_ping(self.host), "private dockerd", 60, self.process, log)
        return self

    def note_containers(self) -> set[str]:
        """Remember the engine's containers (build steps included), to find their processes
        later."""
        import docker

        client = docker.DockerClient(base_url=self.host)
        try:
            self.container_ids |= {c.id for c in client.containers.list(all=True)}
        finally:
            client.close()
        return self.container_ids

    def leftover_pids(self) -> list[int]:
        """Processes that still belong to this engine: they name its root, or run in one of its
        containers."""

        found = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit() or int(entry) == os.getpid():
                continue
            try:
                cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
                cgroup = Path(f"/proc/{entry}/cgroup").read_text()
            except OSError:
                continue
            if str(self.root).encode() in cmdline or any(
                cid in cgroup for cid in self.container_ids
            ):
                found.append(int(entry))
        return found

    def mounts(self) -> list[str]:
        return [
            line.split()[1]
            for line in Path("/proc/mounts").read_text().splitlines()
            if line.split()[1].startswith(str(self.root))
        ]

    def stop(self, sig: int) -> None:

        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, sig)

    def cleanup(self) -> None:
        import contextlib
        import shutil
        import signal
        import subprocess
        import time

        if self.process is not None:
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)
        deadline = time.monotonic() + 15
        while (pids := self.leftover_pids()) and time.monotonic() < deadline:
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.2)
        for mount in sorted(self.mounts(), reverse=True):
            subprocess.run(["umount", "-l", mount], check=False, capture_output=True)
        shutil.rmtree(self.root, ignore_errors=True)


def session_processes(sid: int) -> list[int]:
    """Processes still in session `sid` (field 6 of /proc/PID/stat): what a process left running."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[3]) == sid:
                found.append(int(entry))
    return found


# -- the world as content
# ---------------------------------------------------------------------------- The state of the
# world as content, for comparisons: after a clean run vs after fault + rerun (`shape`, one
# project), and before vs after a failed command (`snapshot`, everything in the stack).
#
# Both read real content (policy documents, tags, repository and log-group settings, schedules,
# registry manifests), every page of every list, and hide only what legitimately differs between two
# projects (their names, key ids, image digests, timestamps).

VOLATILE = (
    "registeredAt",
    "createdAt",
    "creationTime",
    "CreateDate",
    "LastModifiedDate",
    "CreatedDate",
    "LastChangedDate",
    "LastAccessedDate",
    "registeredBy",
    "RoleId",
    "VersionId",
    "ResponseMetadata",
    "arn",
    "storedBytes",
    "metricFilterCount",
    "registryId",
)


def _strip(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _strip(v) for k, v in sorted(value.items()) if k not in VOLATILE}
    if isinstance(value, list):
        return [_strip(v) for v in value]
    return value


def _anonymous(project: Project, value: Any) -> Any:
    """`value` with the project's own names replaced, so two projects' worlds compare equal."""
    text = json.dumps(_strip(value), sort_keys=True, default=str)
    for name, placeholder in (
        (project.email, "<email>"),
        (project.family, "<family>"),
        (project.gcp_project, "<gcp-project>"),
        (project.account_id, "<account>"),
    ):
        text = text.replace(name, placeholder)
    text = re.sub(r"sha256:[0-9a-f]{64}", "sha256:<digest>", text)
    # The execution role's per-secret policy name ends in a digest of the region and secret name.
    text = re.sub(r'(gcpfargate-secret-[^"]*)-[0-9a-f]{8}(?=")', r"\1-<digest>", text)
    # Secrets Manager's random six-character suffix of an ARN.
    text = re.sub(r"(:secret:[^\"\s]+)-[A-Za-z0-9]{6}(?=\")", r"\1-<suffix>", text)
    return json.loads(text)


def role_content(iam: Any, name: str) -> dict[str, Any] | None:
    try:
        role = iam.get_role(RoleName=name)["Role"]
    except iam.exceptions.NoSuchEntityException:
        return None
    inline = {
        p: iam.get_role_policy(RoleName=name, PolicyName=p)["PolicyDocument"]
        for p in pages(iam, "list_role_policies", "PolicyNames", RoleName=name)
    }
    attached = sorted(
        p["PolicyArn"]
        for p in pages(iam, "list_attached_role_policies", "AttachedPolicies", RoleName=name)
    )
    return {
        "trust": role["AssumeRolePolicyDocument"],
        "description": role.get("Description"),
        "max_session": role.get("MaxSessionDuration"),
        "tags": iam.list_role_tags(RoleName=name)["Tags"],
        "inline": inline,
        "attached": attached,
    }


def shape(project: Project) -> dict[str, Any]:
    """One project's world: what a clean run leaves and a fault + rerun must reach."""
    sm, ecs, iam, ecr, logs = (
        project.aws(s) for s in ("secretsmanager", "ecs", "iam", "ecr", "logs")
    )
    emulator = project.stack.emulator
    states = [
        emulator.key_state(project.email, key_id) for key_id in emulator.key_ids(project.email)
    ]  # live keys
    world: dict[str, Any] = {
        "keys": {state: states.count(state) for state in sorted(set(states))},
        "stages": sorted(secret_versions(project)),
    }
    if secret_exists(project):
        described = sm.describe_secret(SecretId=project.secret_name)
        world["secret"] = {
            "description": described.get("Description"),
            "kms": described.get("KmsKeyId"),
            "tags": sorted(
                (_tag_key(t), _tag_value(t))
                for t in described.get("Tags", [])
                if t["Key"] != "gcpfargate:key-id"
            ),
        }
    arns = pages(ecs, "list_task_definitions", "taskDefinitionArns", familyPrefix=project.family)
    world["revisions"] = len(arns)
    latest = latest_revision_arn(project)
    if latest:
        answer = ecs.describe_task_definition(taskDefinition=latest, include=["TAGS"])
        world["task_definition"] = {**answer["taskDefinition"], "tags": answer.get("tags", [])}
        world["task_definition"].pop("revision", None)
        world["task_definition"].pop("taskDefinitionArn", None)
    repositories = [
        r
        for r in pages(ecr, "describe_repositories", "repositories")
        if r["repositoryName"] == project.family
    ]
    world["repository"] = [
        {**r, "tags": ecr.list_tags_for_resource(resourceArn=r["repositoryArn"])["tags"]}
        for r in repositories
    ]
    world["role"] = role_content(iam, f"gcpfargate-{project.family}-execution")
    groups = pages(
        logs, "describe_log_groups", "logGroups", logGroupNamePrefix=f"/ecs/{project.family}"
    )
    world["log_groups"] = [
        {**g, "tags": logs.list_tags_log_group(logGroupName=g["logGroupName"])["tags"]}
        for g in groups
    ]
    return _anonymous(project, world)


def _tag_key(tag: dict[str, str]) -> str:
    """Key ids differ between projects: a key's ownership record compares by its state alone."""
    from gcpfargate.credentials.key.lifecycle import TAG_OWNED

    return f"{TAG_OWNED}<id>" if tag["Key"].startswith(TAG_OWNED) else tag["Key"]


def _tag_value(tag: dict[str, str]) -> str:
    """Key ids differ between projects: the retired-keys record compares by how many it holds."""
    from gcpfargate.credentials.key.lifecycle import TAG_RETIRED

    return f"{len(tag['Value'].split())} key id(s)" if tag["Key"] == TAG_RETIRED else tag["Value"]


def registry_content(registry: str) -> dict[str, Any]:
    """Repository -> its tags, from the registry's own API, following every `Link: rel="next"`
    page."""

    def walk(path: str, key: str) -> list[str]:
        found: list[str] = []
        while path:
            with urllib.request.urlopen(f"http://{registry}{path}", timeout=10) as answer:
                found += json.loads(answer.read() or b"{}").get(key) or []
                link = re.match(r'<([^>]+)>;\s*rel="next"', answer.headers.get("Link") or "")
            path = link.group(1) if link else ""
        return found

    return {
        repository: sorted(walk(f"/v2/{repository}/tags/list?n=100", "tags"))
        for repository in walk("/v2/_catalog?n=100", "repositories")
    }


def snapshot(project: Project) -> dict[str, Any]:
    """Everything in the stack a failed command could have half-made or changed."""
    sm, iam, ecr, ecs, logs = (
        project.aws(s) for s in ("secretsmanager", "iam", "ecr", "ecs", "logs")
    )
    emulator = project.stack.emulator
    secrets = {}
    every = project.aws("secretsmanager", truth=True)  # ListSecrets without the simulated lag
    for secret in pages(every, "list_secrets", "SecretList", IncludePlannedDeletion=True):
        described = sm.describe_secret(SecretId=secret["ARN"])
        secrets[secret["Name"]] = {
            "stages": described.get("VersionIdsToStages"),
            "tags": described.get("Tags"),
            "description": described.get("Description"),
        }
    roles = {
        r["RoleName"]: role_content(iam, r["RoleName"]) for r in pages(iam, "list_roles", "Roles")
    }
    repositories = {
        r["repositoryName"]: r for r in pages(ecr, "describe_repositories", "repositories")
    }
    groups = {g["logGroupName"]: g for g in pages(logs, "describe_log_groups", "logGroups")}
    world = {
        "keys": {
            key_id: emulator.key_state(project.email, key_id)
            for key_id in emulator.key_ids(project.email, include_deleted=True)
        },
        "secrets": secrets,
        "roles": roles,
        "repositories": repositories,
        "task_definitions": pages(ecs, "list_task_definitions", "taskDefinitionArns"),
        "log_groups": groups,
        "schedules": _schedules(project),
        "registry": registry_content(project.stack.registry),
    }
    return json.loads(json.dumps(world, sort_keys=True, default=str))


def _schedules(project: Project) -> dict[str, Any]:
    scheduler = project.aws("scheduler")
    found = {}
    for item in pages(scheduler, "list_schedules", "Schedules"):
        group = item.get("GroupName", "default")
        found[f"{group}/{item['Name']}"] = _strip(
            scheduler.get_schedule(Name=item["Name"], GroupName=group)
        )
    return found


def differences(left: Any, right: Any, path: str = "") -> list[str]:
    """The paths where two worlds differ, with both values (for a readable assertion message)."""
    if isinstance(left, dict) and isinstance(right, dict):
        return [
            d
            for key in sorted(set(left) | set(right), key=str)
            for d in differences(left.get(key), right.get(key), f"{path}.{key}")
        ]
    if isinstance(left, list) and isinstance(right, list) and len(left) == len(right):
        return [
            d
            for index, (a, b) in enumerate(zip(left, right, strict=True))
            for d in differences(a, b, f"{path}[{index}]")
        ]
    return [] if left == right else [f"{path}: {left!r} != {right!r}"]


def mint(stack: LocalStack, email: str, count: int) -> list[Any]:
    """Keys straight from the emulator (not through gcpfargate): the material to plant."""
    import grpc
    from google.cloud import iam_admin_v1
    from google.cloud.iam_admin_v1.services.iam.transports import IAMGrpcTransport

    channel = grpc.insecure_channel(stack.emulator.grpc_address)
    client = iam_admin_v1.IAMClient(transport=IAMGrpcTransport(channel=channel))
    for _ in range(count):
        client.create_service_account_key(name=f"projects/-/serviceAccounts/{email}")
    minted = [key for key in stack.emulator.minted_keys() if key.email == email][-count:]
    leakscan.PLANTED.update(key.key_id for key in minted)
    return minted


FIGURES = "fault matrix"


@dataclass(frozen=True)
class Fault:
    command: str
    call: Call
    nth: int  # the nth call of this operation in the run
    when: str = "before"
    denied: bool = (
        False  # a permission error (AccessDeniedException / PERMISSION_DENIED), not a 500
    )

    @property
    def label(self) -> str:
        when = "" if self.when == "before" else f" ({self.when})"
        denied = " denied" if self.denied else ""
        return (
            f"{self.command}: {self.call.system} {self.call.service} {self.call.operation} "
            f"#{self.nth}{when}{denied}"
        )

    @property
    def kind(self) -> str:
        """For the figures: which kind of fault this is."""
        if self.denied:
            return "permission denied"
        return (
            f"{self.call.system} lost answer"
            if self.when == "after"
            else f"{self.call.system} error"
        )


def faults_of(command: str, calls: list[Call]) -> list[Fault]:
    seen: Counter[str] = Counter()
    faults = []
    for call in mutating(calls):
        seen[call.operation] += 1
        faults.append(Fault(command, call, seen[call.operation]))
        if call.system == "gcp" and call.operation in AFTER_TOO:
            faults.append(Fault(command, call, seen[call.operation], "after"))
    return faults


def run_fault(
    fault: Fault,
    project: Project,
    stack: LocalStack,
    proxy: FaultProxy,
    args: tuple[str, ...] | None = None,
    env: dict[str, str | None] | None = None,
) -> tuple[Result, list[str]]:
    """Run the command with `fault`; return its result and what is wrong afterwards (empty:
    survived)."""
    forget_shared_log_policy(project)
    before = injected(stack, proxy)
    previous = current_key(project)["private_key_id"] if secret_exists(project) else None
    args = args or (("rotate-key",) if fault.command == "rotate-key" else ("deploy",))
    try:
        result = project.run(*args, env={**(env or {}), **inject(fault, stack, proxy)}, timeout=180)
    finally:
        proxy.clear()
        stack.emulator.clear_faults()
    record_figure(FIGURES, "faults injected")
    record_figure(FIGURES, f"faults injected: {fault.kind}")
    problems = []
    if injected(stack, proxy) != before + 1:
        problems.append("the fault did not fire")
    if result.returncode != 0:
        try:
            last = assert_one_clean_line(result, 1)
            assert any(name in last for name in failure_names(fault)), (
                f"none of {failure_names(fault)} in {last!r}"
            )
        except AssertionError as exc:
            problems.append(f"not one clean line naming the step: {exc}")
    problems += check_invariants(
        project,
        expect_secret=result.returncode == 0 or fault.command != "deploy",
        previous=previous,
    )
    return result, problems


# GCP calls whose lost response ("after") is worth its own case.
AFTER_TOO = {"DisableServiceAccountKey", "DeleteServiceAccountKey"}


def inject(fault: Fault, stack: LocalStack, proxy: FaultProxy) -> dict[str, str | None]:
    if fault.call.system == "aws":
        if fault.denied:
            iam = fault.call.service == "iam"
            action = f"{fault.call.service}:{fault.call.operation}"
            proxy.add(
                Rule(
                    fault.call.operation,
                    status=403 if iam else 400,
                    code="AccessDenied" if iam else "AccessDeniedException",
                    message=DENIED_TEXT.format(action=action),
                    skip=fault.nth - 1,
                    times=1,
                )
            )
        else:
            proxy.add(
                Rule(
                    fault.call.operation,
                    status=500,
                    code="InternalFailure",
                    message="injected fault",
                    skip=fault.nth - 1,
                    times=1,
                )
            )
        return {"AWS_ENDPOINT_URL": proxy.url, "AWS_MAX_ATTEMPTS": "1"}
    if fault.denied:
        stack.emulator.fail_nth(
            fault.call.operation,
            fault.nth,
            "PERMISSION_DENIED",
            f"Permission denied on resource (or it may not exist) for {fault.call.operation}.",
        )
        return {}
    # INTERNAL rather than UNAVAILABLE: the adapter retries UNAVAILABLE, which would hide the fault.
    stack.emulator.fail_nth(
        fault.call.operation, fault.nth, "INTERNAL", "injected fault", when=fault.when
    )
    return {}


def injected(stack: LocalStack, proxy: FaultProxy) -> int:
    return sum(proxy.injected.values()) + int(stack.emulator.stats()["injected_faults"])


def failure_names(fault: Fault) -> tuple[str, ...]:
    """What the failure line of `fault` must name (one of): the deploy step, or the rotate-key
    step."""
    if fault.command == "deploy":
        return tuple(f"{step} failed" for step in STEP_OF[(fault.call.system, fault.call.service)])
    return ROTATE_STEP.get(fault.call.operation, (fault.call.operation,))


# Which deploy steps make calls to which service: the failure line must name one of them. Logs
# serves two: register-task (the containers' awslogs groups) and run-history (its own group and the
# resource policy letting EventBridge write it); the call log names the operation, not the group.
STEP_OF: dict[tuple[str, str], tuple[str, ...]] = {
    ("gcp", "iam"): ("bootstrap",),
    ("aws", "secretsmanager"): ("bootstrap",),
    ("aws", "iam"): ("bootstrap",),
    ("aws", "ecr"): ("push-image",),
    ("aws", "logs"): ("register-task", "run-history"),
    ("aws", "ecs"): ("register-task",),
    ("aws", "events"): ("run-history",),
}


def forget_shared_log_policy(project: Project) -> None:
    """Remove the region's Logs resource policy that deploy shares between projects (the run
    history's), so every deploy of a fault run makes the calls the clean run made: in a region
    where another project deployed first the policy exists and its write never happens."""
    from botocore.exceptions import ClientError

    try:
        project.aws("logs").delete_resource_policy(policyName="gcpfargate-events-to-logs")
    except ClientError as exc:
        if exc.response["Error"]["Code"] != "ResourceNotFoundException":
            raise


# Permission errors as the services send them (botocore models: AccessDeniedException, HTTP 400 on
# the JSON services; IAM's query protocol says AccessDenied, HTTP 403). The user is the stack's moto
# user.
DENIED_TEXT = "User: arn:aws:iam::123456789012:user/moto is not authorized to perform: {action}"


# What a rotate-key failure line must name: the step of the rotation that failed (the operation's
# own words, as the product's adapters describe each call). UpdateSecretVersionStage serves two
# steps: the promotion ("make the new key current") and the rollback ("moving AWSCURRENT back").
ROTATE_STEP: dict[str, tuple[str, ...]] = {
    "CreateServiceAccountKey": ("key",),
    "PutSecretValue": ("store the new key",),
    "CreateSecret": ("create secret",),
    "TagResource": ("tag",),
    "UpdateSecretVersionStage": ("make the new key current", "moving AWSCURRENT back"),
    "DisableServiceAccountKey": ("disable",),
    "DeleteServiceAccountKey": ("delete",),
}


# -- the write journal -----------------------------------------------------------------------------
# "A failed command changed nothing", at a cost that does not grow with the stack: instead of
# comparing a snapshot of everything (every secret, role, schedule and registry tag the worker's
# earlier tests left), count the writes each part of the stack saw while the command ran.
# test_invariants.py plants one write of each kind and requires the journal to report it.
REGISTRY_WRITE = re.compile(rb'"(PUT|POST|PATCH|DELETE) (/v2/\S*)')


@dataclass(frozen=True)
class WriteMark:
    aws: int  # length of the strict layer's journal of successful AWS writes
    emulator: int  # the IAM emulator's count of mutating calls (gRPC and REST)
    keys: dict[str, str]  # the project account's keys and their states
    registry: int  # size of the registry's access log
    engine: float  # time.time() (the engine runs on this host: its events use the same clock)
    containers: frozenset[str]  # the engine's containers then (their own life goes on, see below)


def write_mark(project: Project) -> WriteMark:
    stack = project.stack
    assert stack.strict is not None, "the write journal is the strict layer's (GCPF_STACK_STRICT=1)"
    emulator = stack.emulator
    with stack.strict._lock:
        aws = len(stack.strict.writes)
    log = stack.root / "registry.log"
    import docker

    client = docker.APIClient(base_url=stack.docker_host)
    try:
        containers = frozenset(c["Id"] for c in client.containers(all=True))
    finally:
        client.close()
    return WriteMark(
        aws=aws,
        emulator=int(emulator.stats()["mutating_calls"]),
        keys={
            key_id: emulator.key_state(project.email, key_id)
            for key_id in emulator.key_ids(project.email, include_deleted=True)
        },
        registry=log.stat().st_size,
        engine=time.time(),
        containers=containers,
    )


# What a container that existed before the mark may still do on its own (an earlier test's container
# exiting, being removed by --rm, reporting its health check): its life, not the command's write.
# Changes made to it from outside (a rename, an update, a copy into it, a commit) still count.
CHANGED_FROM_OUTSIDE = ("rename", "update", "extract-to-dir", "commit")


def _ambient(event: dict[str, Any], mark: WriteMark) -> bool:
    return (
        event.get("Type") == "container"
        and event.get("Actor", {}).get("ID") in mark.containers
        and not str(event.get("Action", "")).startswith(CHANGED_FROM_OUTSIDE)
    )


def writes_since(project: Project, mark: WriteMark) -> list[str]:
    """Every write the stack saw since `mark`, one line each (empty: nothing changed)."""
    import docker

    stack = project.stack
    assert stack.strict is not None
    now = write_mark(project)
    with stack.strict._lock:
        found = [f"AWS {name}" for name in stack.strict.writes[mark.aws :]]
    if now.emulator != mark.emulator:
        found.append(f"IAM emulator: {now.emulator - mark.emulator} mutating call(s)")
    if now.keys != mark.keys:
        found.append(f"IAM emulator keys: {mark.keys} -> {now.keys}")
    with (stack.root / "registry.log").open("rb") as log:
        log.seek(mark.registry)
        found += [
            f"registry {m.group(1).decode()} {m.group(2).decode()}"
            for m in REGISTRY_WRITE.finditer(log.read())
        ]
    client = docker.APIClient(base_url=stack.docker_host)
    try:
        # Every engine event (image tag/push/delete, container create, build steps' containers,
        # volume, network); `until` is now, so the stream ends at once instead of following.
        events = client.events(since=f"{mark.engine:.9f}", until=f"{time.time():.9f}", decode=True)
        found += [
            f"engine {event.get('Type')} {event.get('Action')} {event.get('Actor', {}).get('ID')}"
            for event in events
            if not _ambient(event, mark)
        ]
    finally:
        client.close()
    return found
