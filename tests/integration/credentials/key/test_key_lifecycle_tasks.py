"""Running tasks that hold a previous key (issue 15): `rotate-key --revoke-previous` names the tasks
started before the new version, and doctor WARNs while such tasks run on a disabled previous key.

The tasks are real RunTask tasks (started with `gcpfargate run --no-wait`). Their `startedAt`, and
each secret version's `CreatedDate`, come from the strict layer (rules `ecs.task_timestamps`,
`secretsmanager.version_dates`) as real DescribeTasks and ListSecretVersionIds return them.
"""

from __future__ import annotations

from typing import Any

from tests.conftest import Project
from tests.integration.helpers import prepare_run
from tests.unit.helpers import iam_client


def previous_check(project: Project) -> dict[str, Any]:
    report = project.run("doctor", "--output", "json").json
    return dict(next(check for check in report["checks"] if check["id"] == "key.previous"))


def start_task(project: Project) -> str:
    started = project.run("run", "--no-wait", "--output", "json")
    assert started.returncode == 0, started.output
    return str(started.json["task_arn"]).rsplit("/", 1)[-1]


def test_revoke_previous_and_doctor_name_the_tasks_started_before_the_rotation(
    project: Project, hold_tasks: None
) -> None:
    ecs = prepare_run(project)
    assert project.run("bootstrap").returncode == 0
    check = previous_check(project)
    assert check["status"] == "OK" and "never rotated" in check["detail"], check

    early = start_task(project)  # its file holds key 1
    rotated = project.run("rotate-key", "--output", "json")
    assert rotated.returncode == 0, rotated.output
    key_1 = rotated.json["previous_key_ids"][0]
    check = previous_check(project)  # key 1 stays enabled: the early task keeps working
    assert (
        check["status"] == "OK" and f"previous key {key_1[:12]}… is enabled" in check["detail"]
    ), check

    revoked = project.run("rotate-key", "--revoke-previous", "--output", "json")
    assert revoked.returncode == 0, revoked.output
    assert [line.split(" ", 1)[0] for line in revoked.json["tasks_losing_access"]] == [early], (
        revoked.json
    )
    assert f"running task {early} ({project.family}, started " in revoked.stderr
    assert "holds the previous key and loses access now" in revoked.stderr

    late = start_task(project)  # started after the rotation: holds the current key
    check = previous_check(project)
    assert check["status"] == "WARN", check
    detail = check["detail"]
    key_2 = revoked.json["previous_key_ids"][0]
    assert f"previous key {key_2[:12]}… is disabled, but 1 running task(s)" in detail, detail
    assert f"{early} ({project.family}, cluster {ecs.cluster})" in detail and late not in detail, (
        detail
    )
    assert (
        f"gcloud iam service-accounts keys enable {key_2} --iam-account {project.email}" in detail
    )
    assert "stop-task" in detail and "force-new-deployment" in detail

    project.aws("ecs").stop_task(
        cluster=ecs.cluster, task=early, reason="Essential container in task exited"
    )
    check = previous_check(project)
    assert check["status"] == "OK" and "no running task" in check["detail"], check


def test_doctor_warns_for_a_previous_key_disabled_by_hand(
    project: Project, hold_tasks: None
) -> None:
    """Not only revoke-previous: a key disabled in the console, or deleted, is found the same
    way."""
    ecs = prepare_run(project)
    assert project.run("bootstrap").returncode == 0
    early = start_task(project)
    rotated = project.run("rotate-key", "--output", "json")
    assert rotated.returncode == 0, rotated.output
    previous = rotated.json["previous_key_ids"][0]
    iam = iam_client(project.stack)  # as a user would, with the real google-cloud-iam client
    name = f"projects/-/serviceAccounts/{project.email}/keys/{previous}"
    iam.disable_service_account_key(name=name)
    check = previous_check(project)
    assert check["status"] == "WARN" and early in check["detail"], check
    iam.delete_service_account_key(name=name)
    check = previous_check(project)
    assert check["status"] == "WARN" and f"{previous[:12]}… is deleted" in check["detail"], check
    assert "restart them" in check["detail"] and "keys enable" not in check["detail"], check
    project.aws("ecs").stop_task(cluster=ecs.cluster, task=early, reason="done")
    assert previous_check(project)["status"] == "OK"
