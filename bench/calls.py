"""The calls each command makes, counted against the local stack; writes docs/calls.md.

Run under the stack: `python -m tests.stack.local run -- python bench/calls.py` (`make bench` runs
it after bench/run.py). Every command runs with GCPFARGATE_CALL_LOG, in which the product appends
one line per call: `aws <service> <Operation> read|write`, `gcp iam <Method> read|write`,
`registry <METHOD> <kind>`. A read counts as repeated when the same operation appears twice in one
command; the table says where that is two different resources.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import boto3

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.run import (  # noqa: E402
    GCPFARGATE,
    PROJECT,
    REQUIRED_ENV,
    add_service_account,
    tool_env,
    write_context,
)

# Reads a command makes more than once on purpose: different resources, or a read after a write.
TWO_RESOURCES = {
    "registry GET manifests": "different references: the new tag (absent before its push), the "
    "image the registered revision pins, the pushed digest",
    "registry GET blobs": "different images: the registered one and the new one",
    "aws scheduler GetSchedule": "before and after the write: the result shows what the scheduler "
    "stored",
    "aws ecs DescribeServices": "the rollout is polled until the service is stable",
    "aws secretsmanager DescribeSecret": "the stages are read again after each write (new version, "
    "promotion, tag): a concurrent run may have moved them",
    "aws secretsmanager GetSecretValue": "one per labelled version (AWSCURRENT, AWSPREVIOUS, a "
    "pending one), in the key survey before and after the new key",
    "aws secretsmanager ListSecrets": "the account's secrets, surveyed before the new key (delete "
    "retired keys) and after it (disable superseded keys)",
    "gcp iam ListServiceAccountKeys": "the room check, and the key survey before and after the new "
    "key",
}


def aws(service: str):  # type: ignore[no-untyped-def]
    return boto3.client(service, region_name=os.environ.get("AWS_REGION", "ap-northeast-1"))


def network(name: str) -> tuple[str, str, str]:
    """A VPC subnet, a security group and a cluster for `run` and `schedule` (moto)."""
    ec2 = aws("ec2")
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    ec2.modify_vpc_attribute(VpcId=vpc, EnableDnsHostnames={"Value": True})
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.1.0/24")["Subnet"]["SubnetId"]
    group = ec2.create_security_group(GroupName=f"sg-{name}", Description="bench", VpcId=vpc)[
        "GroupId"
    ]
    aws("ecs").create_cluster(clusterName=f"cluster-{name}")
    return f"cluster-{name}", subnet, group


def run(project: Path, label: str, *args: str) -> tuple[str, collections.Counter[str], float, dict]:
    log = project / f"calls-{len(list(project.glob('calls-*')))}.log"
    log.touch()
    start = time.perf_counter()
    proc = subprocess.run(
        [GCPFARGATE, *args, "--output", "json"],
        cwd=project,
        capture_output=True,
        text=True,
        env=tool_env({"GCPFARGATE_CALL_LOG": str(log)}),
        timeout=300,
    )
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(
            f"gcpfargate {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}"
        )
    return (
        label,
        collections.Counter(log.read_text().splitlines()),
        elapsed,
        json.loads(proc.stdout or "{}"),
    )


def table(rows: list[tuple[str, collections.Counter[str], float, dict]]) -> str:
    lines = [
        "# Calls per command",
        "",
        "Counted on the local stack by `bench/calls.py` (part of `make bench`) from "
        "GCPFARGATE_CALL_LOG: every AWS call (botocore's before-call hook), every IAM Admin call, "
        "every registry HTTP request. AWS and GCP clients are created once per process and shared "
        "by every step; the registry session and its ECR token likewise.",
        "",
        "| command | AWS reads | AWS writes | GCP reads | GCP writes | registry | repeated reads | "
        "calls |",
        "|---|---:|---:|---:|---:|---:|---|---|",
    ]

    def total(calls: collections.Counter[str], prefix: str, kind: str = "") -> int:
        return sum(
            n for line, n in calls.items() if line.startswith(prefix) and line.endswith(kind)
        )

    for label, calls, _elapsed, _out in rows:
        repeated = []
        for line, count in sorted(calls.items()):
            if count > 1 and not line.endswith(" write"):
                name = line.removesuffix(" read")
                why = TWO_RESOURCES.get(name, "")
                repeated.append(f"{name} x{count}" + (f" ({why})" if why else ""))
        shown = ", ".join(
            f"{line.removesuffix(' read').removesuffix(' write')}"
            f"{' (w)' if line.endswith(' write') else ''}{f' x{n}' if n > 1 else ''}"
            for line, n in sorted(calls.items())
        )
        lines.append(
            f"| `{label}` | {total(calls, 'aws ', ' read')} | {total(calls, 'aws ', ' write')} | "
            f"{total(calls, 'gcp ', ' read')} | {total(calls, 'gcp ', ' write')} | "
            f"{total(calls, 'registry ')} | "
            f"{'; '.join(repeated) or 'none'} | {shown} |"
        )
    lines += [
        "",
        "(w) marks a write. A no-op `deploy` makes reads only: zero AWS and GCP writes, checked by "
        "tests/integration/deploy/test_calls.py together with the IAM emulator's own count of "
        "mutating calls, and each read at most once except where the table names two different "
        "resources.",
        "",
    ]
    return "\n".join(lines)


BEGIN, END = "<!-- calls table: written by bench/calls.py -->", "<!-- end of calls table -->"


def readme_table(readme: Path, full: str) -> None:
    """The README shows the first six columns of docs/calls.md, so the two never disagree."""
    rows = [line.split(" | ") for line in full.splitlines() if line.startswith("| ")]
    short = [" | ".join(cells[:6]) + " |" for cells in rows]
    short.insert(1, "|---|---:|---:|---:|---:|---:|")
    text = readme.read_text()
    head, found, rest = text.partition(BEGIN)
    _, found_end, tail = rest.partition(END)
    if not (found and found_end):
        raise SystemExit(f"{readme} has no calls table markers ({BEGIN} … {END})")
    readme.write_text(head + BEGIN + "\n" + "\n".join(short) + "\n" + END + tail)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "docs" / "calls.md"))
    parser.add_argument(
        "--readme",
        default=str(ROOT / "README.md"),
        help="README whose counts table (between the calls markers) is rewritten; '' skips",
    )
    args = parser.parse_args()
    missing = [name for name in REQUIRED_ENV if not os.environ.get(name)]
    if missing:
        sys.stderr.write(
            f"error: {', '.join(missing)} not set; run under the local stack: make bench\n"
        )
        return 2
    name = f"calls{os.getpid() % 100000}"
    add_service_account(name)
    cluster, subnet, group = network(name)
    with tempfile.TemporaryDirectory(prefix="gcpfargate-calls-") as tmp:
        project = Path(tmp)
        write_context(project / "app", "v1")
        # A container memory reservation: moto sums it to place the task that `run` starts.
        template = (ROOT / "templates" / "task-definition.json.j2").read_text()
        template = template.replace(
            '"essential": true,', '"essential": true,\n      "memory": 512,', 1
        )
        (project / "task-definition.json.j2").write_text(template)
        (project / "gcpfargate.toml").write_text(
            f'[gcp]\nproject = "{PROJECT}"\nservice_account = "{name}"\n\n'
            f'[image]\nrepository = "{name}"\ncontext = "app"\n\n[task]\nfamily = "{name}"\n\n'
            f'[run]\ncluster = "{cluster}"\nsubnets = ["{subnet}"]\nsecurity_groups = ["{group}"]\n'
        )
        rows = [run(project, "deploy (first)", "deploy")]
        image = rows[0][3]["push-image"]["image"]
        rows.append(run(project, "deploy (no-op)", "deploy"))
        (project / "app" / "app.txt").write_text("v2\n")
        rows.append(run(project, "deploy (image-only change)", "deploy"))
        image = rows[-1][3]["push-image"]["image"]
        if "@" not in image:
            image = image.rsplit(":", 1)[0] + "@" + rows[-1][3]["push-image"]["digest"]
        rows += [
            run(project, "bootstrap (no-op)", "bootstrap"),
            run(project, "push-image (no-op)", "push-image"),
            run(project, "register-task --image (no-op)", "register-task", "--image", image),
            run(project, "render --image", "render", "--image", image),
            run(project, "diff --image", "diff", "--image", image),
            run(project, "doctor", "doctor"),
            run(project, "rotate-key", "rotate-key"),
            # The second rotation also disables the key two rotations old (the key lifecycle).
            run(project, "rotate-key (second)", "rotate-key"),
            run(project, "prune-keys --dry-run", "prune-keys", "--dry-run"),
            run(project, "run-local", "run-local"),
            run(project, "run --no-wait", "run", "--no-wait"),
            run(
                project,
                "schedule --cron (create)",
                "schedule",
                "--cron",
                "0 3 * * ? *",
                "--timezone",
                "Asia/Tokyo",
            ),
            run(
                project,
                "schedule --cron (no-op)",
                "schedule",
                "--cron",
                "0 3 * * ? *",
                "--timezone",
                "Asia/Tokyo",
            ),
        ]
        # An ECS service (desiredCount 0: settles at once) on the latest revision: deploy then reads
        # it, and an image change rolls it and waits.
        latest = aws("ecs").describe_task_definition(taskDefinition=name)["taskDefinition"][
            "taskDefinitionArn"
        ]
        aws("ecs").create_service(
            cluster=cluster,
            serviceName="web",
            taskDefinition=latest,
            desiredCount=0,
            launchType="FARGATE",
        )
        config = project / "gcpfargate.toml"
        config.write_text(
            config.read_text() + f'\n[service]\nname = "web"\ncluster = "{cluster}"\n'
        )
        rows.append(run(project, "deploy (no-op, with a service)", "deploy"))
        (project / "app" / "app.txt").write_text("v3\n")
        rows.append(run(project, "deploy (image change, rolls the service)", "deploy"))
    text = table(rows)
    sys.stdout.write(text)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text)
    sys.stderr.write(f"[calls] wrote {args.out}\n")
    if args.readme:
        readme_table(Path(args.readme), text)
        sys.stderr.write(f"[calls] updated the counts table in {args.readme}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
