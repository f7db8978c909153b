"""What "a failed command changed nothing" costs on a grown stack: a whole-stack snapshot
(tests/reliability/helpers.py `snapshot`) against the write journal (`write_mark` + `writes_since`).

A worker's stack grows with every test it runs (the session's one moto keeps every role, secret,
repository, log group and task definition), so late in `make test` each snapshot read hundreds
of them twice per bad-input case. This fills a fresh stack with `--items` of each kind, then
times both, `--repeat` times each:

    PYTHONPATH=. .venv/bin/python bench/write_journal.py --items 150
"""

from __future__ import annotations

import argparse
import json
import resource
import tempfile
import time
from pathlib import Path

from tests.conftest import new_project
from tests.reliability.helpers import snapshot, write_mark, writes_since
from tests.stack.local import LocalStack

POLICY = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Effect": "Allow",
            "Principal": {"Service": "ecs-tasks.amazonaws.com"},
            "Action": "sts:AssumeRole",
        }
    ],
}


READ = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Action": "logs:CreateLogStream", "Resource": "*"}],
}


def cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--items", type=int, default=150)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with LocalStack() as stack, tempfile.TemporaryDirectory() as directory:
        project = new_project(stack, Path(directory) / "p")
        sm, iam, ecr, logs, ecs = (
            project.aws(s) for s in ("secretsmanager", "iam", "ecr", "logs", "ecs")
        )
        for index in range(args.items):
            name = f"grown-{index}"
            sm.create_secret(Name=f"gcpfargate/{name}", SecretString="{}")
            iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(POLICY))
            iam.put_role_policy(RoleName=name, PolicyName="p", PolicyDocument=json.dumps(READ))
            ecr.create_repository(repositoryName=name)
            logs.create_log_group(logGroupName=f"/ecs/{name}")
            ecs.register_task_definition(
                family=name,
                containerDefinitions=[{"name": "app", "image": "busybox", "memory": 64}],
            )
        for label, measure in (
            ("snapshot", lambda: snapshot(project) == snapshot(project)),
            ("journal", lambda: writes_since(project, write_mark(project)) == []),
        ):
            walls, cpus = [], []
            for _ in range(args.repeat):
                wall, used = time.monotonic(), cpu()
                assert measure()
                walls.append(time.monotonic() - wall)
                cpus.append(cpu() - used)
            print(
                f"{label}: {args.items} of each kind, before+after: "
                f"wall {min(walls):.2f} s (best of {args.repeat}), CPU {min(cpus):.2f} s"
            )


if __name__ == "__main__":
    main()
