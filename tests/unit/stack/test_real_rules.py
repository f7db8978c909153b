"""Real-service rules that need no stack (issue 12 items 2, 8, 9, 12, 14; issue 17 item 1).

ECS's DescribeTaskDefinition defaults come from the contract fixtures in tests/fixtures/ecs (the
strict layer answers the same, tests/unit/stack/test_strict_layer.py); Docker's containerd image
store from recorded engine answers in tests/fixtures/docker (the engine here is Docker 20.10, which
has only the classic store).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from gcpfargate.credentials import wiring
from tests.conftest import ROOT

FIXTURES = ROOT / "tests" / "fixtures"
SECRET_ARN = "arn:aws:secretsmanager:ap-northeast-1:123456789012:secret:gcpfargate/runner-AbCdEf"


# -- item 2: one form for what was sent and what ECS answers ---------------------------------------
@pytest.mark.parametrize("name", ["health_check_and_empty_environment", "efs_volume"])
def test_normalise_makes_the_registered_and_described_forms_equal(name: str) -> None:
    from gcpfargate.taskdef.register import normalise

    fixture = json.loads((FIXTURES / "ecs" / f"{name}.json").read_text())
    described = dict(fixture["described"]["taskDefinition"])
    if fixture["described"].get("tags"):
        described["tags"] = fixture["described"]["tags"]
    assert normalise(described) == normalise(fixture["registered"])


def test_normalise_still_sees_a_changed_health_check() -> None:
    from gcpfargate.taskdef.register import normalise

    sent = {
        "family": "f",
        "containerDefinitions": [
            {"name": "a", "image": "i", "healthCheck": {"command": ["CMD", "true"], "interval": 10}}
        ],
    }
    stored = {
        "family": "f",
        "containerDefinitions": [
            {
                "name": "a",
                "image": "i",
                "healthCheck": {
                    "command": ["CMD", "true"],
                    "interval": 30,
                    "timeout": 5,
                    "retries": 3,
                },
            }
        ],
    }
    assert normalise(sent) != normalise(stored)


# -- issue 17 item 1: Docker's override semantics survive the wiring -------------------------------
def _wire(container: dict[str, Any], image: dict[str, Any]) -> dict[str, Any]:
    definition = {
        "family": "f",
        "containerDefinitions": [{"name": "app", "image": "i", **container}],
    }
    return wiring.wire(
        definition,
        secret_arn=SECRET_ARN,
        credentials_env="K",
        credentials_path="/run/gcp/key.json",
        containers=None,
        image_config=lambda _: image,
    )["containerDefinitions"][0]


@pytest.mark.parametrize(
    ("container", "image", "entry", "command"),
    [
        ({}, {"Entrypoint": ["/ep", "a"], "Cmd": ["c"]}, ["/ep", "a"], ["c"]),
        ({"command": ["x"]}, {"Entrypoint": ["/ep"], "Cmd": ["c"]}, ["/ep"], ["x"]),
        (
            {},
            {"Entrypoint": None, "Cmd": ["/bin/sh", "-c", "echo hi"]},
            [],
            ["/bin/sh", "-c", "echo hi"],
        ),
        (
            {"entryPoint": ["/mine"], "command": ["--flag"]},
            {"Entrypoint": ["/ep"], "Cmd": ["c"]},
            ["/mine"],
            ["--flag"],
        ),
        # Docker: an entryPoint from the template drops the image's CMD.
        ({"entryPoint": ["/mine"]}, {"Entrypoint": ["/ep"], "Cmd": ["c"]}, ["/mine"], None),
    ],
)
def test_the_wrapper_and_entrypoint_go_in_entrypoint_and_cmd_stays_in_command(
    container: dict[str, Any], image: dict[str, Any], entry: list[str], command: list[str] | None
) -> None:
    out = _wire(container, image)
    assert out["entryPoint"][:2] == wiring.SHELL and out["entryPoint"][3] == wiring.WRAPPER_NAME
    assert out["entryPoint"][4:] == entry
    assert out.get("command") == command
    # What runs without an override is what ran before: the original argv, by Docker's rules.
    assert wiring.original_argv(out, lambda _: image) == entry + (command or [])


def test_an_ecs_command_override_replaces_the_cmd_only() -> None:
    out = _wire({}, {"Entrypoint": ["/ep"], "Cmd": ["serve"]})
    overridden = {**out, "command": ["migrate"]}  # containerOverrides.command replaces `command`
    assert wiring.unwrap(overridden).argv == ["/ep", "migrate"]


def test_wiring_twice_keeps_command() -> None:
    once = _wire({"command": ["x"]}, {"Entrypoint": ["/ep"], "Cmd": ["c"]})
    definition = {"family": "f", "containerDefinitions": [once]}
    again = wiring.wire(
        definition,
        secret_arn=SECRET_ARN,
        credentials_env="K",
        credentials_path="/run/gcp/key.json",
        containers=None,
        image_config=lambda _: {},
    )["containerDefinitions"][0]
    assert again == once


# -- item 14: a dirty work tree gets its own tag ---------------------------------------------------
def _git(path: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(path), *args],
        check=True,
        capture_output=True,
        text=True,
        env={
            "GIT_AUTHOR_NAME": "t",
            "GIT_AUTHOR_EMAIL": "t@e",
            "GIT_COMMITTER_NAME": "t",
            "GIT_COMMITTER_EMAIL": "t@e",
            "HOME": str(path),
            "PATH": "/usr/bin:/bin",
        },
    ).stdout


def test_the_derived_tag_of_a_dirty_tree_names_its_content(tmp_path: Path) -> None:
    from gcpfargate.image.push import derive_tag

    _git(tmp_path, "init", "-q")
    (tmp_path / "app.py").write_text("print(1)\n")
    _git(tmp_path, "add", "app.py")
    _git(tmp_path, "commit", "-q", "-m", "one")
    sha = _git(tmp_path, "rev-parse", "--short", "HEAD").strip()
    assert derive_tag(tmp_path) == sha
    (tmp_path / "app.py").write_text("print(2)\n")
    dirty = derive_tag(tmp_path)
    assert dirty.startswith(f"{sha}-dirty-") and len(dirty) <= 128
    assert derive_tag(tmp_path) == dirty  # the same content, the same tag
    (tmp_path / "new.txt").write_text("untracked\n")
    assert derive_tag(tmp_path) not in (
        dirty,
        sha,
    )  # an untracked file changes the build context too
    (tmp_path / "new.txt").unlink()
    (tmp_path / "app.py").write_text("print(1)\n")
    assert derive_tag(tmp_path) == sha


# -- item 9: Docker's containerd image store -------------------------------------------------------
def test_the_containerd_store_image_id_is_matched_by_manifest_digest() -> None:
    from gcpfargate.image.images import same_image

    recorded = json.loads((FIXTURES / "docker" / "containerd_image_store.json").read_text())
    inspect = recorded["inspect"]
    held = recorded["registry"]  # what the registry answers for the pushed tag
    # The classic store: the image id is the config digest.
    assert same_image(
        held["digest"], held["config_digest"], held["config_digest"], [], recorded["name"]
    )
    # The containerd store: the id is the manifest digest, and RepoDigests names the pushed one.
    assert inspect["Id"] != held["config_digest"]
    assert same_image(
        held["digest"],
        held["config_digest"],
        inspect["Id"],
        inspect["RepoDigests"],
        recorded["name"],
    )
    assert same_image(
        held["digest"],
        held["config_digest"],
        "sha256:" + "f" * 64,
        inspect["RepoDigests"],
        recorded["name"],
    )
    # A different image is still different.
    assert not same_image(
        "sha256:" + "1" * 64,
        "sha256:" + "2" * 64,
        inspect["Id"],
        inspect["RepoDigests"],
        recorded["name"],
    )


# -- item 12: the log tail after STOPPED -----------------------------------------------------------
class _Stream:
    """A follower whose events arrive late: CloudWatch Logs delivers the last lines after
    STOPPED."""

    def __init__(self, batches: list[int]) -> None:
        self.batches = batches
        self.polls = 0

    def poll(self) -> int:
        self.polls += 1
        return self.batches.pop(0) if self.batches else 0


def test_the_log_tail_keeps_polling_until_two_polls_bring_nothing() -> None:
    from gcpfargate.ecs.logs import drain

    late = _Stream([0, 3, 0, 2, 0, 0, 5])
    slept: list[float] = []
    drain([late], sleep=slept.append, clock=lambda: 0.0)
    assert late.polls == 6 and late.batches == [5]
    assert slept and all(0 < each <= 2 for each in slept)


def test_the_log_tail_is_bounded() -> None:
    from gcpfargate.ecs.logs import drain

    chatty = _Stream([1] * 1000)
    now = [0.0]

    def sleep(seconds: float) -> None:
        now[0] += seconds

    drain([chatty], sleep=sleep, clock=lambda: now[0])
    assert now[0] <= 31 and chatty.batches  # gave up after its budget, not after 1000 polls


# -- item 7: bounded retries of what IAM propagation refuses ---------------------------------------
def test_retry_while_waits_out_a_propagation_refusal_and_gives_up_after_its_budget() -> None:
    from gcpfargate.core.report import DeferredReporter
    from gcpfargate.errors import AwsError
    from gcpfargate.iam.propagation import pass_role_refused, retry_while

    refusal = AwsError(
        "failed to register: User: arn:aws:iam::1:user/u is not authorized to perform: "
        "iam:PassRole on resource: arn:aws:iam::1:role/r"
    ).with_code("AccessDeniedException")
    now = [0.0]
    answers: list[Any] = [refusal, refusal, "registered"]

    def call() -> str:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return str(answer)

    def sleep(seconds: float) -> None:
        now[0] += seconds

    assert (
        retry_while(
            call,
            pass_role_refused,
            DeferredReporter(),
            "register",
            sleep=sleep,
            clock=lambda: now[0],
        )
        == "registered"
    )
    assert 0 < now[0] < 10

    def always() -> str:
        raise refusal

    now[0] = 0.0
    with pytest.raises(AwsError):
        retry_while(
            always,
            pass_role_refused,
            DeferredReporter(),
            "register",
            sleep=sleep,
            clock=lambda: now[0],
        )
    assert 59 <= now[0] <= 61
    other = AwsError("no").with_code("ClientException")
    with pytest.raises(AwsError):
        retry_while(
            lambda: (_ for _ in ()).throw(other),
            pass_role_refused,
            DeferredReporter(),
            "x",
            sleep=lambda _: pytest.fail("must not wait for an unrelated error"),
        )


# -- item 8: the ECR host is ECR's own answer ------------------------------------------------------
@pytest.mark.parametrize(
    ("region", "endpoint"),
    [
        ("cn-north-1", "https://123456789012.dkr.ecr.cn-north-1.amazonaws.com.cn"),
        ("eusc-de-east-1", "https://123456789012.dkr.ecr.eusc-de-east-1.amazonaws.eu"),
        ("us-east-1", "https://123456789012.dkr.ecr-fips.us-east-1.amazonaws.com"),
    ],
)
def test_the_registry_host_comes_from_the_proxy_endpoint(
    monkeypatch: pytest.MonkeyPatch, region: str, endpoint: str
) -> None:
    import base64

    import boto3
    from botocore.stub import Stubber

    from gcpfargate.clients.aws import AwsClients
    from gcpfargate.clients.registry import Registry

    monkeypatch.delenv("GCPFARGATE_ECR_REGISTRY", raising=False)
    aws = AwsClients(region=region)
    client = boto3.client(
        "ecr", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="y"
    )
    token = base64.b64encode(b"AWS:not-a-real-token").decode()
    with Stubber(client) as stub:
        stub.add_response(
            "get_authorization_token",
            {"authorizationData": [{"authorizationToken": token, "proxyEndpoint": endpoint}]},
            {},
        )
        aws._clients["ecr"] = client
        registry = Registry(aws)
        assert registry.host == endpoint.removeprefix("https://")
        assert registry.credentials().username == "AWS"  # one call served both
        stub.assert_no_pending_responses()
