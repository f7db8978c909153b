"""Sharing an account: gcpfargate touches only what it can prove it created.

One project deployed in two regions of the same AWS account shares one service account (one
secret, one key per region) and one execution role (IAM is global); a person's own key sits on the
account too. Rotating and pruning in one region must leave the other region's key and the person's
key alone, and a second region's deploy must add to the role, not replace what it grants.
"""

from __future__ import annotations

import json
from typing import Any

from tests.conftest import Project, assert_one_clean_line, gets_token
from tests.integration.helpers import age
from tests.unit.helpers import create_keys

OTHER = "us-west-2"


def _secret_key(project: Project, region: str, stage: str = "AWSCURRENT") -> dict[str, Any]:
    import boto3

    client = boto3.client(
        "secretsmanager",
        region_name=region,
        endpoint_url=project.stack.moto_url,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    value = client.get_secret_value(SecretId=project.secret_name, VersionStage=stage)
    return dict(json.loads(value["SecretString"]))


def _checks(project: Project, *args: str) -> tuple[int, dict[str, dict[str, Any]]]:
    result = project.run("doctor", "--output", "json", *args)
    return result.returncode, {c["id"]: c for c in result.json["checks"]}


def test_other_regions_key_and_a_persons_key_survive_rotations_and_prune(
    project: Project,
) -> None:
    assert project.run("bootstrap").returncode == 0
    other = project.run("bootstrap", "--region", OTHER, "--output", "json")
    assert other.returncode == 0, other.output
    other_key = other.json["key_id"]
    assert _secret_key(project, OTHER)["private_key_id"] == other_key
    person = create_keys(project.stack, project.email, 1)[0]
    age(project, [person, other_key], hours=30 * 24)
    first = _secret_key(project, "ap-northeast-1")["private_key_id"]

    for number in range(3):
        rotated = project.run("rotate-key", "--output", "json")
        assert rotated.returncode == 0, f"rotation {number + 1}: {rotated.output}"
        touched = rotated.json.get("disabled_key_ids", []) + rotated.json.get("deleted_key_ids", [])
        assert other_key not in touched and person not in touched, rotated.json
    listed = project.run("prune-keys", "--dry-run", "--output", "json")
    foreign = {k["key_id"]: k for k in listed.json["keys"] if k["foreign"]}
    assert set(foreign) == {other_key, person}, listed.json
    assert all(entry["action"].startswith("keep (foreign") for entry in foreign.values())
    assert "in no secret visible here" in foreign[person]["why"]
    assert f"{person}" in listed.stderr and "foreign" in listed.stderr
    pruned = project.run("prune-keys", "--yes", "--output", "json")
    assert pruned.returncode == 0, pruned.output
    assert other_key not in pruned.json["deleted"] and person not in pruned.json["deleted"]

    emulator = project.stack.emulator
    assert emulator.key_state(project.email, other_key) == "enabled"
    assert emulator.key_state(project.email, person) == "enabled"
    # Our own keys went through the lifecycle as before: the first one is deleted by now.
    assert emulator.key_state(project.email, first) == "deleted"
    assert gets_token(_secret_key(project, OTHER))
    for region in ("ap-northeast-1", OTHER):
        _, checks = _checks(project, "--region", region)
        assert checks["key.enabled"]["status"] == "OK", (region, checks["key.enabled"])
        assert checks["key.referenced"]["status"] == "OK", (region, checks["key.referenced"])
        assert person in checks["key.foreign"]["detail"]
    # Seen from the other region, this region's live key is foreign and held by nothing visible.
    seen = project.run("prune-keys", "--dry-run", "--region", OTHER, "--output", "json").json
    current = _secret_key(project, "ap-northeast-1")["private_key_id"]
    entry = next(k for k in seen["keys"] if k["key_id"] == current)
    assert entry["foreign"] and entry["action"].startswith("keep (foreign"), entry


def test_a_foreign_key_goes_only_by_name_and_never_while_a_secret_holds_it(
    project: Project,
) -> None:
    assert project.run("bootstrap").returncode == 0
    person = create_keys(project.stack, project.email, 1)[0]
    age(project, [person])
    assert project.run("prune-keys", "--yes").returncode == 0
    assert project.stack.emulator.key_state(project.email, person) == "enabled"
    refused = project.run("prune-keys", "--key", person)  # no terminal, no --yes
    assert_one_clean_line(refused, 2, "not confirmed")
    held = _secret_key(project, "ap-northeast-1")["private_key_id"]
    busy = project.run("prune-keys", "--key", held, "--yes")
    assert_one_clean_line(busy, 2, held, "AWSCURRENT")
    unknown = project.run("prune-keys", "--key", "f" * 40, "--yes")
    assert_one_clean_line(unknown, 2, "no user-managed key")
    deleted = project.run("prune-keys", "--key", person, "--yes", "--output", "json")
    assert deleted.returncode == 0, deleted.output
    assert deleted.json["deleted"] == [person]
    assert project.stack.emulator.key_state(project.email, person) == "deleted"
    assert project.stack.emulator.key_state(project.email, held) == "enabled"


def test_the_key_limit_names_foreign_keys_and_how_to_remove_one(project: Project) -> None:
    assert project.run("bootstrap").returncode == 0
    strangers = create_keys(project.stack, project.email, 9)
    full = project.run("rotate-key")
    line = assert_one_clean_line(full, 1, "10 of 10", "foreign", "prune-keys --key KEY_ID")
    assert all(key_id in line for key_id in strangers)
    _, checks = _checks(project)
    assert checks["key.count"]["status"] == "FAIL" and "--key" in checks["key.count"]["detail"]


def _role_grants(project: Project) -> dict[str, list[str]]:
    """Inline policy name -> the secret ARNs it lets the execution role read."""
    from gcpfargate.iam.policy import secret_arns

    iam, role = project.aws("iam"), f"gcpfargate-{project.family}-execution"
    return {
        name: secret_arns(iam.get_role_policy(RoleName=role, PolicyName=name)["PolicyDocument"])
        for name in iam.list_role_policies(RoleName=role)["PolicyNames"]
    }


def _secret_arn(project: Project, region: str, name: str = "") -> str:
    import boto3

    client = boto3.client(
        "secretsmanager",
        region_name=region,
        endpoint_url=project.stack.moto_url,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    return str(client.describe_secret(SecretId=name or project.secret_name)["ARN"])


def test_a_second_regions_deploy_adds_to_the_shared_role(project: Project) -> None:
    from tests.integration.helpers import deploy, prepare, secret_policy

    prepare(project)
    deploy(project)
    deploy(project, "--region", OTHER)
    here, there = _secret_arn(project, "ap-northeast-1"), _secret_arn(project, OTHER)
    assert _role_grants(project) == {
        secret_policy(project): [here],
        secret_policy(project, OTHER): [there],
    }
    for region in ("ap-northeast-1", OTHER):
        code, checks = _checks(project, "--region", region)
        assert checks["role.reads_secret"]["status"] == "OK", (region, checks["role.reads_secret"])
        failed = {k: c["detail"] for k, c in checks.items() if c["status"] == "FAIL"}
        assert code == 0 and not failed, (region, failed)
    # Deploying again in the first region changes nothing on the role.
    again = project.run("deploy", "--output", "json")
    assert again.returncode == 0, again.output
    assert again.json["bootstrap"]["changed"] is False
    assert len(_role_grants(project)) == 2


def test_the_older_single_policy_is_split_and_only_gone_secrets_lose_theirs(
    project: Project,
) -> None:
    from tests.integration.helpers import secret_policy

    iam, role = project.aws("iam"), f"gcpfargate-{project.family}-execution"
    assert project.run("bootstrap", "--region", OTHER).returncode == 0
    there = _secret_arn(project, OTHER)
    # What an older gcpfargate left after its last deploy (in the other region): one policy
    # that names only that region's secret.
    iam.delete_role_policy(RoleName=role, PolicyName=secret_policy(project, OTHER))
    legacy = {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Action": "secretsmanager:GetSecretValue", "Resource": there}
        ],
    }
    iam.put_role_policy(
        RoleName=role, PolicyName="gcpfargate-secret-access", PolicyDocument=json.dumps(legacy)
    )
    assert project.run("bootstrap").returncode == 0
    here = _secret_arn(project, "ap-northeast-1")
    assert _role_grants(project) == {
        secret_policy(project): [here],
        secret_policy(project, OTHER): [there],
    }
    # A second secret of this region, then deleted: the next write here removes its policy only.
    gone = f"{project.secret_name}-old"
    assert project.run("bootstrap", env={"GCPFARGATE_SECRET_NAME": gone}).returncode == 0
    assert len(_role_grants(project)) == 3
    project.aws("secretsmanager").delete_secret(SecretId=gone, ForceDeleteWithoutRecovery=True)
    third = f"{project.secret_name}-new"
    assert project.run("bootstrap", env={"GCPFARGATE_SECRET_NAME": third}).returncode == 0
    grants = _role_grants(project)
    assert sorted(arn for arns in grants.values() for arn in arns) == sorted(
        [here, there, _secret_arn(project, "ap-northeast-1", third)]
    )


def test_deregister_images_keeps_what_another_family_or_a_schedule_runs(project: Project) -> None:
    """Two families share one repository; the credential-shim repository is never a candidate."""
    from tests.integration.helpers import READ_ONLY, deploy, latest, manifest_status, prepare
    from tests.stack.images import write_busybox_context

    prepare(project)
    first = deploy(project)
    image_x = first["push-image"]["digest"]
    ecs = project.aws("ecs")
    # Another family (another team's job) runs the same digest from the same repository.
    other = {k: v for k, v in latest(project).items() if k not in READ_ONLY}
    other["family"] = f"{project.family}-other"
    other_arn = ecs.register_task_definition(**other)["taskDefinition"]["taskDefinitionArn"]
    # A revision of ours that also names the shared credential-shim image.
    shim = f"{project.stack.registry}/gcpfargate-credential-shim@sha256:{'ab' * 32}"
    with_shim = {k: v for k, v in latest(project).items() if k not in READ_ONLY}
    with_shim["containerDefinitions"] = [
        *with_shim["containerDefinitions"],
        {"name": "shim", "image": shim, "essential": False, "memory": 64},
    ]
    ecs.register_task_definition(**with_shim)
    write_busybox_context(project.dir, ('CMD ["echo", "job v3"]',))
    image_y = deploy(project)["push-image"]["digest"]
    assert image_x != image_y

    planned = project.run("deregister", "--keep-last", "1", "--images", "--dry-run", "-o", "json")
    assert planned.returncode == 0, planned.output
    out = planned.json
    assert out["deregistered"] == [2, 1] and out["images"] == []
    kept = {entry["image"]: entry["pinned_by"] for entry in out["images_kept"]}
    assert list(kept) == [f"{project.family}@{image_x}"]
    assert kept[f"{project.family}@{image_x}"] == [f"ACTIVE revision {other['family']}:1"]
    assert "gcpfargate-credential-shim" not in planned.stdout
    text = project.run("deregister", "--keep-last", "1", "--images", "--dry-run")
    assert f"keep image  {project.family}@{image_x}  (pinned by ACTIVE revision" in text.stdout

    # Once the other family no longer runs it, a schedule that runs it still pins it.
    ecs.deregister_task_definition(taskDefinition=other_arn)
    other_arn = ecs.register_task_definition(**other)["taskDefinition"]["taskDefinitionArn"]
    project.aws("scheduler").create_schedule(
        Name=f"pin-{project.family}",
        ScheduleExpression="rate(1 day)",
        FlexibleTimeWindow={"Mode": "OFF"},
        State="DISABLED",
        Target={
            "Arn": "arn:aws:ecs:ap-northeast-1:123456789012:cluster/default",
            "RoleArn": "arn:aws:iam::123456789012:role/scheduler",
            "EcsParameters": {"TaskDefinitionArn": other_arn, "LaunchType": "FARGATE"},
        },
    )
    ecs.deregister_task_definition(taskDefinition=other_arn)
    scheduled = project.run("deregister", "--keep-last", "1", "--images", "--yes", "-o", "json")
    assert scheduled.returncode == 0, scheduled.output
    assert scheduled.json["images"] == []
    assert scheduled.json["images_kept"] == [
        {
            "image": f"{project.family}@{image_x}",
            "pinned_by": [f"schedule pin-{project.family} ({other['family']}:2)"],
        }
    ]
    assert manifest_status(project, image_x) == 200


def test_a_code_deploy_service_is_refused_before_anything_is_registered(project: Project) -> None:
    from botocore.exceptions import ClientError

    from tests.integration.helpers import active, deploy, prepare
    from tests.stack.images import write_busybox_context

    prepare(project)
    first = deploy(project)["register-task"]["task_definition_arn"]
    ecs = project.aws("ecs")
    cluster = project.family
    ecs.create_cluster(clusterName=cluster)
    ecs.create_service(
        cluster=cluster,
        serviceName="blue-green",
        taskDefinition=first,
        desiredCount=0,
        launchType="FARGATE",
        deploymentController={"type": "CODE_DEPLOY"},
    )
    # The strict layer refuses what ECS refuses, so the check below is what stands in front of it.
    try:
        ecs.update_service(cluster=cluster, service="blue-green", taskDefinition=first)
        raise AssertionError("UpdateService with a task definition was accepted")
    except ClientError as error:
        assert "CODE_DEPLOY deployment controller" in str(error)
    config = project.dir / "gcpfargate.toml"
    config.write_text(
        config.read_text() + f'\n[service]\nname = "blue-green"\ncluster = "{cluster}"\n'
    )
    write_busybox_context(project.dir, ('CMD ["echo", "job v2"]',))
    refused = project.run("deploy")
    assert_one_clean_line(refused, 2, "blue-green", "CODE_DEPLOY", "aws deploy create-deployment")
    assert active(project) == [1]  # nothing was registered
    # rotate-key rotates, and names the service it could not roll, with why.
    rotated = project.run("rotate-key", "--output", "json")
    assert rotated.returncode == 0, rotated.output
    assert rotated.json.get("rolled", []) == []
    (line,) = rotated.json["not_rolled"]
    assert "blue-green" in line and "CODE_DEPLOY" in line


def test_a_stale_pending_label_is_removed_when_a_rotation_starts(project: Project) -> None:
    import time

    assert project.run("bootstrap").returncode == 0
    sm = project.aws("secretsmanager")
    stale = f"gcpf-pending-{int(time.time()) - 7200}-abcdef"
    live = f"gcpf-pending-{int(time.time())}-fedcba"  # a run under way: kept
    put = sm.put_secret_value(
        SecretId=project.secret_name, SecretString='{"not": "a key"}', VersionStages=[stale]
    )
    sm.update_secret_version_stage(
        SecretId=project.secret_name, VersionStage=live, MoveToVersionId=put["VersionId"]
    )
    rotated = project.run("rotate-key")
    assert rotated.returncode == 0, rotated.output
    labels = {
        label
        for stages in sm.describe_secret(SecretId=project.secret_name)[
            "VersionIdsToStages"
        ].values()
        for label in stages
    }
    assert stale not in labels and live in labels


def test_staging_and_production_in_two_regions_from_one_file(project: Project) -> None:
    staging_secret = f"{project.secret_name}-staging"
    project.write_config(
        project.base_config
        + f"""
        [environments.staging.aws]
        region = "ap-northeast-1"
        [environments.staging.secret]
        name = "{staging_secret}"

        [environments.production.aws]
        region = "{OTHER}"
        """
    )
    staged = project.run("bootstrap", "--environment", "staging", "--output", "json")
    assert staged.returncode == 0, staged.output
    assert (
        ":ap-northeast-1:" in staged.json["secret_arn"] and "staging" in staged.json["secret_arn"]
    )
    produced = project.run(
        "bootstrap", "--output", "json", env={"GCPFARGATE_ENVIRONMENT": "production"}
    )
    assert produced.returncode == 0, produced.output
    assert f":{OTHER}:" in produced.json["secret_arn"]
    assert staged.json["key_id"] != produced.json["key_id"]
    for name in ("staging", "production"):
        _, checks = _checks(project, "--environment", name)
        assert f"environment {name}" in checks["config.valid"]["detail"]
        assert checks["key.enabled"]["status"] == "OK", (name, checks["key.enabled"])
    # Without an environment: ap-northeast-1 and the default secret name, which only production
    # (in the other region) has. doctor says so instead of advising a bootstrap.
    code, checks = _checks(project)
    assert code == 3
    detail = checks["secret.readable"]["detail"]
    assert "environment production" in detail and OTHER in detail and "bootstrap here" in detail
    # A configuration problem is doctor's failing config.valid check (exit 3), as any problem it
    # finds; the other commands stop with one line (exit 2).
    code, checks = _checks(project, "--environment", "qa")
    assert code == 3 and checks["config.valid"]["status"] == "FAIL", checks["config.valid"]
    assert "'qa'" in checks["config.valid"]["detail"], checks["config.valid"]
    assert "staging, production" in checks["config.valid"]["detail"], checks["config.valid"]
    assert_one_clean_line(
        project.run("render", "--environment", "qa"), 2, "'qa'", "staging, production"
    )
    project.write_config(project.base_config + '\n[environments.qa.secret]\nnaem = "x"\n')
    assert_one_clean_line(project.run("render"), 2, "environments.qa.secret.naem")
