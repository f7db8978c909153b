"""doctor against the stack: a healthy deploy is all OK; each broken variant fails exactly one
check."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from tests.conftest import Project
from tests.integration.helpers import (
    deploy,
    prepare,
    register_variant,
    remove_role_permission,
    secret_json,
)

CHECK_ROLE = "execution role may read the secret"
CHECK_KEY = "key exists and is enabled in GCP"
CHECK_WIRING = "task definition delivers the key safely"
CHECK_IMAGE = "image exists and matches runtimePlatform"


def doctor(project: Project, *args: str) -> tuple[int, dict[str, dict[str, str]]]:
    result = project.run("doctor", "--output", "json", *args)
    assert "Traceback" not in result.output
    checks = {check["name"]: check for check in result.json["checks"]}
    return result.returncode, checks


def failing(checks: dict[str, dict[str, str]]) -> list[str]:
    return [name for name, check in checks.items() if check["status"] == "FAIL"]


@pytest.fixture
def deployed(project: Project) -> Project:
    prepare(project)
    deploy(project)
    return project


def test_healthy_setup_is_all_ok(deployed: Project) -> None:
    code, checks = doctor(deployed)
    assert code == 0
    # The two ECS service checks SKIP: this project has no [service].
    assert {name: c["status"] for name, c in checks.items() if c["status"] != "OK"} == {
        "ECS service runs the latest revision": "SKIP",
        "ECS service tasks hold the current key": "SKIP",
        # No [notify], and no job has run yet; the run history itself is OK (deploy made it).
        "failed runs reach the alert topic": "SKIP",
        "jobs' last runs succeeded": "SKIP",
    }
    # Issue 13.6 added "every live key is in a secret version", issue 15 the previous-key check.
    # The ownership issue added "keys gcpfargate did not create for this secret"; the scheduled
    # jobs the run history, the alerts and the jobs' last runs.
    assert len(checks) == 20
    text = deployed.run("doctor")
    assert text.returncode == 0 and "OK" in text.stdout and "gcpfargate doctor" in text.stdout


def test_no_get_secret_skips_reading_the_value(deployed: Project) -> None:
    code, checks = doctor(deployed, "--no-get-secret")
    assert code == 0
    assert checks["secret holds a key of the account"]["status"] == "SKIP"
    assert checks[CHECK_KEY]["status"] == "OK"  # judged by the key id the secret is tagged with


def _delete_gcp_key(project: Project) -> None:
    from tests.unit.helpers import iam_client

    key_id = secret_json(project)["private_key_id"]
    iam_client(project.stack).delete_service_account_key(
        name=f"projects/-/serviceAccounts/{project.email}/keys/{key_id}"
    )


def _key_in_environment(project: Project) -> None:
    key_text = json.dumps(secret_json(project))

    def change(definition: dict) -> None:
        definition["containerDefinitions"][0]["environment"].append(
            {"name": "LEAKED", "value": key_text}
        )

    register_variant(project, change)


def _wrong_credentials_path(project: Project) -> None:
    def change(definition: dict) -> None:
        for item in definition["containerDefinitions"][0]["environment"]:
            if item["name"] == "GOOGLE_APPLICATION_CREDENTIALS":
                item["value"] = "/elsewhere/credentials.json"

    register_variant(project, change)


def _read_only_without_tmpfs(project: Project) -> None:
    # Made read-only and its tmpfs removed by hand after register-task: nothing gives the wrapper
    # a place for the key.
    def change(definition: dict) -> None:
        definition["containerDefinitions"][0]["readonlyRootFilesystem"] = True
        definition["containerDefinitions"][0].pop("linuxParameters")

    register_variant(project, change)


def _without_tmpfs(project: Project) -> None:
    # The key's tmpfs removed (a revision of an older gcpfargate): the key would be on a disk.
    def change(definition: dict) -> None:
        definition["containerDefinitions"][0].pop("linuxParameters")

    register_variant(project, change)


def _missing_image(project: Project) -> None:
    def change(definition: dict) -> None:
        definition["containerDefinitions"][0]["image"] = (
            f"{project.stack.registry}/{project.family}:no-such-tag"
        )

    register_variant(project, change)


def _wrong_platform(project: Project) -> None:
    def change(definition: dict) -> None:
        definition["runtimePlatform"] = {
            "cpuArchitecture": "ARM64",
            "operatingSystemFamily": "LINUX",
        }

    register_variant(project, change)


BROKEN: dict[str, tuple[Callable[[Project], None], str]] = {
    "role-without-permission": (remove_role_permission, CHECK_ROLE),
    "deleted-gcp-key": (_delete_gcp_key, CHECK_KEY),
    "key-in-environment": (_key_in_environment, CHECK_WIRING),
    "wrong-credentials-path": (_wrong_credentials_path, CHECK_WIRING),
    "read-only-without-tmpfs": (_read_only_without_tmpfs, CHECK_WIRING),
    "without-tmpfs": (_without_tmpfs, CHECK_WIRING),
    "missing-image": (_missing_image, CHECK_IMAGE),
    "wrong-platform": (_wrong_platform, CHECK_IMAGE),
}


@pytest.mark.parametrize("variant", list(BROKEN))
def test_each_broken_variant_fails_exactly_the_right_check(deployed: Project, variant: str) -> None:
    breaker, expected = BROKEN[variant]
    breaker(deployed)
    code, checks = doctor(deployed)
    assert code == 3
    assert failing(checks) == [expected], checks
    assert "PRIVATE KEY" not in json.dumps(checks)


NO_AWS_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": None,
    "AWS_SECRET_ACCESS_KEY": None,
    "AWS_SESSION_TOKEN": None,
    "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent",
    "AWS_CONFIG_FILE": "/nonexistent",
    "AWS_EC2_METADATA_DISABLED": "true",
}


def test_unreadable_aws_is_one_fail_and_skips(project: Project) -> None:
    result = project.run("doctor", "--output", "json", env=NO_AWS_CREDENTIALS)
    assert result.returncode == 3, result.output
    report = result.json
    assert report["status"] == "FAIL"
    checks = {check["id"]: check for check in report["checks"]}
    assert [check_id for check_id, check in checks.items() if check["status"] == "FAIL"] == [
        "aws.identity"
    ]
    assert (
        "no AWS credentials" in checks["aws.identity"]["detail"] and checks["aws.identity"]["hint"]
    )
    for check_id in (
        "secret.readable",
        "role.trust",
        "role.reads_secret",
        "task.wiring",
        "image.exists",
        "logs.group",
    ):
        assert checks[check_id] | {"hint": None} == checks[check_id]
        assert (checks[check_id]["status"], checks[check_id]["detail"]) == (
            "SKIP",
            "could not read: no AWS credentials",
        ), check_id
    assert "register-task" not in result.stdout


def test_missing_region_hint_is_in_the_tree(project: Project) -> None:
    result = project.run("doctor", env={"AWS_REGION": None, "AWS_DEFAULT_REGION": None})
    assert result.returncode == 3, result.output
    assert "FAIL   AWS identity: no AWS region is set" in result.stdout
    assert "fix: Set aws.region in gcpfargate.toml, --region, or AWS_REGION" in result.stdout
    assert result.stdout.count(" FAIL ") == 1 and result.stdout.endswith("status: FAIL\n")


def test_ids_and_status_of_a_healthy_report(deployed: Project) -> None:
    report = deployed.run("doctor", "--output", "json").json
    assert report["status"] == "OK"
    assert [check["id"] for check in report["checks"]] == [
        "config.valid",
        "aws.identity",
        "gcp.service_account",
        "secret.readable",
        "key.enabled",
        "key.age",
        "key.count",
        "key.referenced",
        "key.foreign",
        "key.previous",
        "role.trust",
        "role.reads_secret",
        "task.wiring",
        "image.exists",
        "logs.group",
        "service.latest",
        "service.current_key",
        "runs.history",
        "alerts.rule",
        "jobs.last_run",
    ]


def test_missing_aws_configuration_exits_2_with_a_json_error(project: Project) -> None:
    no_region = project.run(
        "bootstrap", "-o", "json", env={"AWS_REGION": None, "AWS_DEFAULT_REGION": None}
    )
    assert no_region.returncode == 2, no_region.output
    error = no_region.json["error"]
    assert (
        error["exit_code"] == 2
        and error["message"].endswith("no AWS region is set")
        and error["hint"]
    )
    no_credentials = project.run("bootstrap", env=NO_AWS_CREDENTIALS)
    assert no_credentials.returncode == 2 and "no AWS credentials" in no_credentials.stderr


def test_a_config_problem_is_a_failing_config_check_in_the_tree_and_json(project: Project) -> None:
    # No config at all, an invalid value and an unknown key: the same tree, the same JSON, exit 3.
    (project.dir / "gcpfargate.toml").unlink(missing_ok=True)
    for body, said in (
        (None, "missing required setting"),
        (project.base_config.replace(project.gcp_project, "P1!"), "is not a valid GCP project id"),
        (project.base_config + 'familly = "x"\n', "did you mean family?"),
    ):
        if body is not None:
            project.write_config(body)
        text = project.run("doctor")
        assert text.returncode == 3, text.output
        assert "Traceback" not in text.output and "error:" not in text.stderr, text.output
        lines = text.stdout.splitlines()
        assert lines[:2] == ["gcpfargate doctor", "config"], text.stdout
        assert lines[2].startswith("  FAIL   config valid: ") and said in text.stdout, text.stdout
        assert lines[-1] == "status: FAIL" and text.stdout.count(" FAIL ") == 1

        as_json = project.run("doctor", "--output", "json")
        assert as_json.returncode == 3, as_json.output
        report = as_json.json
        assert report["status"] == "FAIL"
        [check] = report["checks"]
        assert (check["id"], check["status"]) == ("config.valid", "FAIL")
        assert said.split(",")[0] in check["detail"] + str(check["hint"])
