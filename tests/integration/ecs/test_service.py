"""ECS services against the stack: deploy rolls the service, rollback, deregister --keep-last
[--images].

The services here have desiredCount 0, which moto reports COMPLETED at once (and the strict layer,
when the session runs with it, after a few seconds): the settled path. Rollouts that take time,
fail or time out are in test_service_rollout.py (the strict layer's deployment simulation) and
tests/unit/ecs/test_service_rollout.py (the wait loop's decisions on recorded-shape answers).
"""

from __future__ import annotations

from typing import Any

from tests.conftest import Project, assert_one_clean_line
from tests.integration.helpers import (
    active,
    add_service,
    deploy,
    manifest_status,
    prepare,
    register_variant,
)
from tests.stack.images import write_busybox_context


def running(project: Project, cluster: str) -> str:
    service = project.aws("ecs").describe_services(cluster=cluster, services=["web"])["services"][0]
    return str(service["taskDefinition"]).rsplit("/", 1)[-1]


def run_json(project: Project, *args: str) -> dict[str, Any]:
    result = project.run(*args, "--output", "json")
    assert result.returncode == 0, result.output
    return dict(result.json)


def test_deploy_rolls_the_service_and_rollback_returns(project: Project) -> None:
    family = project.family
    prepare(project)
    first = deploy(project)["register-task"]["task_definition_arn"]
    cluster = add_service(project, first)

    write_busybox_context(
        project.dir, ('CMD ["echo", "job v2"]',)
    )  # an image change: a new revision
    # A new tag: the dry run cannot know the revision's digest yet, so it plans "the revision it
    # registers".
    planned_deploy = deploy(project, "--dry-run", "--tag", "v2")
    assert (planned_deploy["service"]["status"], planned_deploy["service"]["plan"]) == (
        "PLANNED",
        [
            {
                "action": "update",
                "resource": "ECS service",
                "name": f"{cluster}/web",
                "text": f"update service web on cluster {cluster}: {family}:1 → the revision "
                "register-task registers",
                "before": f"{family}:1",
                "after": "the revision register-task registers",
            }
        ],
    )
    assert running(project, cluster) == f"{family}:1"
    moved = deploy(project)
    assert moved["register-task"]["revision"] == 2
    assert moved["service"] | {"service_arn": ""} == {
        "service": "web",
        "cluster": cluster,
        "service_arn": "",
        "changed": True,
        "status": "COMPLETED",
        "task_definition_arn": moved["register-task"]["task_definition_arn"],
        "previous_task_definition_arn": first,
        "deployment_id": moved["service"]["deployment_id"],
    }
    assert running(project, cluster) == f"{family}:2"

    # A no-op deploy reads the service once and writes nothing (the call counts: test_calls.py).
    again = deploy(project)
    assert (again["service"]["status"], again["service"]["changed"]) == ("UNCHANGED", False)

    planned = run_json(project, "rollback", "--dry-run")
    assert (planned["status"], [change["text"] for change in planned["plan"]]) == (
        "PLANNED",
        [f"update service web on cluster {cluster}: {family}:2 → {family}:1"],
    )
    assert running(project, cluster) == f"{family}:2"
    shown = project.run("rollback", "--dry-run")
    assert shown.returncode == 0, shown.output
    assert f"  - update service web on cluster {cluster}: {family}:2 → {family}:1" in shown.stderr
    assert shown.stdout == f"Service web on {cluster} would move {family}:2 → {family}:1.\n"
    back = run_json(project, "rollback")
    assert (back["status"], back["task_definition_arn"], back["previous_task_definition_arn"]) == (
        "COMPLETED",
        first,
        moved["register-task"]["task_definition_arn"],
    )
    assert running(project, cluster) == f"{family}:1"

    # The template still renders revision 2: deploy registers nothing, but moves the service to the
    # latest.
    forward = project.run("deploy")
    assert forward.returncode == 0, forward.output
    assert f"Waiting for service web to run {family}:2 stably ..." in forward.stderr
    assert f"service web runs {family}:2 (0/0 running, 0 pending)" in forward.stderr
    assert "web: COMPLETED" in forward.stdout  # the summary table's service row
    assert running(project, cluster) == f"{family}:2"

    left = run_json(project, "rollback", "--deregister")
    assert left["deregistered"] == [moved["register-task"]["task_definition_arn"]]
    assert (running(project, cluster), active(project)) == (f"{family}:1", [1])
    assert_one_clean_line(
        project.run("rollback"), 1, f"runs {family}:1", "no older ACTIVE revision"
    )


def _six_revisions(project: Project) -> str:
    """Revisions 1-6 of the family (1 deployed, 2-6 edited copies); returns revision 1's ARN."""
    prepare(project)
    first = deploy(project)["register-task"]["task_definition_arn"]
    for number in range(2, 7):
        register_variant(
            project,
            lambda d, n=number: (
                d["containerDefinitions"][0]
                .setdefault("environment", [])
                .append({"name": "EDIT", "value": str(n)})
            ),
        )
    return str(first)


def test_deregister_keeps_exactly_what_it_promises(project: Project) -> None:
    first = _six_revisions(project)
    revision = first.rsplit(":", 1)[0]
    cluster = add_service(project, f"{revision}:2")
    project.aws("scheduler").create_schedule(
        Name=f"gcpfargate-{project.family}",
        ScheduleExpression="rate(1 day)",
        FlexibleTimeWindow={"Mode": "OFF"},
        Target={
            "Arn": f"arn:aws:ecs:ap-northeast-1:123456789012:cluster/{cluster}",
            "RoleArn": "arn:aws:iam::123456789012:role/scheduler",
            "EcsParameters": {"TaskDefinitionArn": f"{revision}:3", "LaunchType": "FARGATE"},
        },
    )

    planned = run_json(project, "deregister", "--keep-last", "2", "--dry-run")
    assert planned == {
        "family": project.family,
        "dry_run": True,
        "changed": False,
        "images": [],
        "deregistered": [4, 1],
        "kept": [
            {"revision": 6, "reason": "the latest"},
            {"revision": 5, "reason": "one of the last 2"},
            {"revision": 3, "reason": f"schedule gcpfargate-{project.family} pins it"},
            {"revision": 2, "reason": "service web runs it (primary)"},
        ],
    }
    # Not a terminal and no --yes: a usage error before anything is read or deleted.
    assert_one_clean_line(
        project.run("deregister", "--keep-last", "2"), 2, "needs confirmation", "--yes"
    )
    assert active(project) == [1, 2, 3, 4, 5, 6]

    done = run_json(project, "deregister", "--keep-last", "2", "--yes")
    assert done == {**planned, "dry_run": False, "changed": True}
    assert active(project) == [2, 3, 5, 6]
    assert run_json(project, "deregister", "--keep-last", "2", "--yes") == {
        **planned,
        "dry_run": False,
        "changed": False,
        "deregistered": [],
    }


def test_deregister_images_deletes_only_images_no_kept_revision_uses(project: Project) -> None:
    prepare(project)
    image_a = deploy(project)["push-image"]["digest"]
    register_variant(
        project,
        lambda d: d["containerDefinitions"][0].update(environment=[{"name": "E", "value": "2"}]),
    )
    write_busybox_context(project.dir, ('CMD ["echo", "job v3"]',))
    third = deploy(project)
    image_b = third["push-image"]["digest"]
    assert third["register-task"]["revision"] == 3 and image_a != image_b

    shared = run_json(project, "deregister", "--keep-last", "2", "--images", "--yes")
    assert (shared["deregistered"], shared["images"]) == ([1], [])  # revision 2 still names image A
    assert manifest_status(project, image_a) == 200

    planned = run_json(project, "deregister", "--keep-last", "1", "--images", "--dry-run")
    assert (planned["deregistered"], planned["images"]) == ([2], [f"{project.family}@{image_a}"])
    done = run_json(project, "deregister", "--keep-last", "1", "--images", "--yes")
    assert (done["deregistered"], done["images"]) == (planned["deregistered"], planned["images"])
    assert (manifest_status(project, image_a), manifest_status(project, image_b)) == (404, 200)
    assert active(project) == [3]


def test_doctor_checks_the_service(project: Project) -> None:
    prepare(project)
    first = deploy(project)["register-task"]["task_definition_arn"]
    add_service(project, first)

    def service_checks() -> dict[str, tuple[str, str]]:
        result = project.run("doctor", "--output", "json")
        assert "Traceback" not in result.output
        return {
            c["name"]: (c["status"], c["detail"])
            for c in result.json["checks"]
            if c["name"].startswith("ECS")
        }

    assert service_checks()["ECS service runs the latest revision"] == (
        "OK",
        f"web on {project.family} runs {project.family}:1",
    )
    register_variant(project, lambda d: d.update(memory="1024"))
    assert service_checks()["ECS service runs the latest revision"] == (
        "WARN",
        f"service web runs {project.family}:1, not the latest {project.family}:2 (gcpfargate "
        "deploy rolls it)",
    )
