"""The credential wiring: the pure transformation, and the wrapper script run by real shells on the
host."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
from pathlib import Path
from typing import Any

import pytest

from gcpfargate.credentials import wiring
from gcpfargate.errors import TemplateError

SECRET_ARN = "arn:aws:secretsmanager:ap-northeast-1:123456789012:secret:gcpfargate/runner-AbCdEf"
ENV = "GCP_CREDENTIALS_JSON"
NASTY_ARGS = [
    "it's",
    'a "quoted" $HOME `id` $(id)',
    "line1\nline2",
    "  spaced  ",
    "",
    "*",
    "-n",
    "\\n",
]


def fake_key() -> str:
    """Key-shaped text made at run time (no key text is ever committed); unicode and newlines
    included."""
    pem = "-----BEGIN " + "PRIVATE KEY-----\nMIIfake+/=\n-----END " + "PRIVATE KEY-----\n"
    return (
        json.dumps(
            {
                "type": "service_account",
                "private_key_id": "k" * 40,
                "private_key": pem,
                "client_email": "runner@proj.iam.gserviceaccount.com",
                "note": "ünïcode %s %d \\ '\"",
            },
            indent=2,
        )
        + "\n"
    )


def definition(**container: Any) -> dict[str, Any]:
    return {
        "family": "batch",
        "containerDefinitions": [{"name": "app", "image": "repo@sha256:" + "0" * 64, **container}],
    }


def no_image(image: str) -> dict[str, Any]:
    raise AssertionError(f"the image config of {image} should not be needed")


def wired(defn: dict[str, Any], image_config: Any = no_image, **kwargs: Any) -> dict[str, Any]:
    options = {
        "secret_arn": SECRET_ARN,
        "credentials_env": ENV,
        "credentials_path": "/tmp/gcp/credentials.json",
        "containers": None,
        "image_config": image_config,
        **kwargs,
    }
    return wiring.wire(defn, **options)


def test_wire_adds_secret_environment_and_wrapper_and_keeps_the_template_argv() -> None:
    out = wired(
        definition(
            entryPoint=["/app/run"],
            command=["--flag", "x y"],
            environment=[{"name": "A", "value": "1"}],
        )
    )
    container = out["containerDefinitions"][0]
    assert container["secrets"] == [{"name": ENV, "valueFrom": SECRET_ARN}]
    assert container["environment"] == [
        {"name": "A", "value": "1"},
        {"name": "GOOGLE_APPLICATION_CREDENTIALS", "value": "/tmp/gcp/credentials.json"},
    ]
    entry = container["entryPoint"]
    assert entry[:2] == ["/bin/sh", "-c"] and entry[3] == "gcpfargate-wrapper"
    # Docker's model (issue 17 item 1): the entry point after the wrapper, the command stays a
    # command.
    assert entry[4:] == ["/app/run"]
    assert container["command"] == ["--flag", "x y"]
    assert wiring.unwrap(container) == wiring.Unwrapped(
        ["/app/run", "--flag", "x y"], ENV, "/tmp/gcp/credentials.json"
    )


@pytest.mark.parametrize(
    ("container", "image", "argv"),
    [
        ({}, {"Entrypoint": ["/ep", "a"], "Cmd": ["c"]}, ["/ep", "a", "c"]),
        ({"command": ["x"]}, {"Entrypoint": ["/ep"], "Cmd": ["c"]}, ["/ep", "x"]),
        ({"command": ["x"]}, {"Entrypoint": None, "Cmd": ["c"]}, ["x"]),
        ({}, {"Cmd": ["/bin/sh", "-c", "echo hi"]}, ["/bin/sh", "-c", "echo hi"]),
        # Docker: an entryPoint from the template drops the image's CMD.
        ({"entryPoint": ["/mine"]}, {"Entrypoint": ["/ep"], "Cmd": ["c"]}, ["/mine"]),
    ],
)
def test_original_argv_follows_dockers_rules(
    container: dict[str, Any], image: dict[str, Any], argv: list[str]
) -> None:
    assert wiring.original_argv({"name": "app", "image": "i", **container}, lambda _: image) == argv


def test_wiring_twice_is_the_same_as_once() -> None:
    once = wired(definition(entryPoint=["/app"]))
    assert wired(once) == once


def test_an_image_with_nothing_to_run_is_a_clear_error() -> None:
    with pytest.raises(TemplateError, match="nothing to run"):
        wired(definition(), image_config=lambda _: {"Entrypoint": None, "Cmd": None})


@pytest.mark.parametrize(
    "environment",
    [
        [{"name": ENV, "value": "x"}],
        [{"name": "CREDS", "value": fake_key()}],
        [{"name": "PEM", "value": "-----BEGIN " + "PRIVATE KEY-----\nabc"}],
    ],
)
def test_key_text_or_its_variable_in_environment_is_refused(
    environment: list[dict[str, str]],
) -> None:
    with pytest.raises(TemplateError) as caught:
        wired(definition(entryPoint=["/app"], environment=environment))
    assert "containerDefinitions[0].environment[0]" in caught.value.message
    assert "MIIfake" not in caught.value.one_line()


def test_targets_default_to_essential_containers_and_unknown_names_are_refused() -> None:
    defn = {
        "family": "f",
        "containerDefinitions": [
            {"name": "app", "image": "i", "entryPoint": ["/a"]},
            {"name": "sidecar", "image": "i", "essential": False, "entryPoint": ["/s"]},
        ],
    }
    out = wired(defn)
    assert (
        "secrets" in out["containerDefinitions"][0]
        and "secrets" not in out["containerDefinitions"][1]
    )
    out = wired(defn, containers=["sidecar"])
    assert (
        "secrets" not in out["containerDefinitions"][0]
        and "secrets" in out["containerDefinitions"][1]
    )
    with pytest.raises(TemplateError, match="nope"):
        wired(defn, containers=["nope"])


def test_by_default_only_the_containers_running_the_built_image_get_credentials() -> None:
    built = "123456789012.dkr.ecr.us-east-1.amazonaws.com/job"
    envoy = {
        "name": "envoy",
        "image": "840364872350.dkr.ecr.us-west-2.amazonaws.com/aws-appmesh-envoy:v1.15.1.0-prod",
        "essential": True,
        "user": "1337",
        "environment": [{"name": "APPMESH_VIRTUAL_NODE_NAME", "value": "mesh/m/virtualNode/n"}],
    }
    router = {
        "name": "log_router",
        "image": "public.ecr.aws/aws-observability/aws-for-fluent-bit:stable",
        "essential": True,
        "firelensConfiguration": {"type": "fluentbit"},
    }
    defn = {
        "family": "f",
        "containerDefinitions": [
            {"name": "app", "image": f"{built}@sha256:{'a' * 64}", "essential": True},
            envoy,
            router,
            {"name": "worker", "image": f"{built}:v2", "essential": False},
        ],
    }

    def unreadable(image: str) -> dict[str, Any]:
        assert image.startswith(built), f"read the config of {image}"
        return {"Entrypoint": ["/job"]}

    out = wiring.wire(
        defn,
        secret_arn=SECRET_ARN,
        credentials_env=ENV,
        credentials_path="/tmp/gcp/credentials.json",
        containers=None,
        image_config=unreadable,
        image=f"{built}:v1",
    )
    app, wired_envoy, wired_router, worker = out["containerDefinitions"]
    assert wiring.is_wrapped(app) and wiring.is_wrapped(worker)
    # Sidecars: exactly as written, and their images were never read.
    assert wired_envoy == envoy and wired_router == router
    assert wiring.target_names(defn, ["envoy"], built) == ["envoy"]
    # A template without the built image keeps the old default: the essential containers.
    assert wiring.target_names(defn, None, "elsewhere/other:1") == ["app", "envoy", "log_router"]


def test_a_conflicting_secret_in_the_template_is_refused() -> None:
    with pytest.raises(TemplateError, match="another secret"):
        wired(definition(entryPoint=["/a"], secrets=[{"name": ENV, "valueFrom": "arn:other"}]))


def test_unwire_gives_back_the_template_form() -> None:
    image = {"Entrypoint": ["/ep"], "Cmd": ["c"]}
    for container in ({}, {"command": ["x", "y"]}, {"entryPoint": ["/other"]}):
        original = definition(secrets=[{"name": "OTHER", "valueFrom": "arn:o"}], **container)
        plain, arns = wiring.unwire(wired(original, image_config=lambda _: image), lambda _: image)
        assert plain == original
        assert arns == [SECRET_ARN]
    # Without the image, the argv stays explicit (and still runs the same program).
    plain, _ = wiring.unwire(wired(definition(), image_config=lambda _: image), lambda _: None)
    assert plain["containerDefinitions"][0]["entryPoint"] == ["/ep"]
    assert plain["containerDefinitions"][0]["command"] == ["c"]


# -- the wrapper under real shells
# -------------------------------------------------------------------
SHELLS = [name for name in ("dash", "busybox") if shutil.which(name)]


def shell_argv(shell: str) -> list[str]:
    return (
        [shutil.which("busybox") or "busybox", "sh"]
        if shell == "busybox"
        else [shutil.which(shell) or shell]
    )


def run_wrapper(
    shell: str, tmp_path: Path, value: str | None, program: list[str]
) -> tuple[subprocess.CompletedProcess, Path]:
    target = tmp_path / "made dir" / "it's creds.json"  # a space and a quote in the path, too
    script = wiring.wrapper_script(ENV, str(target))
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    if value is not None:
        env[ENV] = value
    proc = subprocess.run(
        [*shell_argv(shell), "-c", script, wiring.WRAPPER_NAME, *program],
        env=env,
        capture_output=True,
        timeout=30,
    )
    return proc, target


def program_printing_args_and_env(tmp_path: Path) -> list[str]:
    # The "original program": prints each argument between markers, then its environment.
    script = tmp_path / "show.sh"
    script.write_text(
        '#!/bin/sh\nfor a in "$@"; do printf \'<%s>\\n\' "$a"; done\necho ---ENV---\nenv\n'
    )
    script.chmod(0o755)
    return [str(script)]


@pytest.mark.parametrize("shell", SHELLS)
def test_wrapper_writes_the_file_0600_drops_the_variable_and_execs_with_args_intact(
    shell: str, tmp_path: Path
) -> None:
    key = fake_key()
    proc, target = run_wrapper(
        shell, tmp_path, key, [*program_printing_args_and_env(tmp_path), *NASTY_ARGS]
    )
    assert proc.returncode == 0, proc.stderr
    assert target.read_bytes() == key.encode("utf-8")
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert stat.S_IMODE(target.parent.stat().st_mode) == 0o700
    out = proc.stdout.decode()
    args_part, _, env_part = out.partition("---ENV---\n")
    assert args_part == "".join(f"<{arg}>\n" for arg in NASTY_ARGS)
    assert ENV not in env_part and "PRIVATE KEY" not in env_part and "k" * 40 not in env_part
    assert proc.stderr == b""


@pytest.mark.parametrize("shell", SHELLS)
@pytest.mark.parametrize("value", [None, ""])
def test_wrapper_fails_clearly_without_the_key(
    shell: str, value: str | None, tmp_path: Path
) -> None:
    proc, target = run_wrapper(shell, tmp_path, value, ["/bin/echo", "should not run"])
    assert proc.returncode != 0
    assert b"should not run" not in proc.stdout
    assert f"{ENV} is empty or unset".encode() in proc.stderr
    assert not target.exists()


def test_both_shells_are_available_for_the_wrapper_tests() -> None:
    # The wrapper must work under dash and busybox; a missing shell must not quietly skip those
    # tests.
    assert SHELLS == ["dash", "busybox"]


# -- bash as /bin/sh (Amazon Linux, UBI, RHEL) with xtrace switched on from outside ---------------
BASH_STARTS = {
    "SHELLOPTS=xtrace": {"SHELLOPTS": "xtrace"},
    "SHELLOPTS=xtrace:verbose": {"SHELLOPTS": "xtrace:verbose"},
}


@pytest.mark.parametrize("argv0", ["sh", "bash"])
@pytest.mark.parametrize("start", sorted(BASH_STARTS))
def test_wrapper_under_bash_xtrace_never_traces_the_key(
    argv0: str, start: str, tmp_path: Path
) -> None:
    key = fake_key()
    target = tmp_path / "creds.json"
    script = wiring.wrapper_script(ENV, str(target))
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), ENV: key, **BASH_STARTS[start]}
    proc = subprocess.run(
        [argv0, "-c", script, wiring.WRAPPER_NAME, "/bin/echo", "ran"],
        executable=shutil.which("bash"),
        env=env,
        capture_output=True,
        timeout=30,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == b"ran\n"
    assert target.read_bytes() == key.encode("utf-8")
    assert b"PRIVATE KEY" not in proc.stderr and b"k" * 40 not in proc.stderr, proc.stderr


def test_the_wrapper_turns_xtrace_off_on_its_first_line() -> None:
    script = wiring.wrapper_script(ENV, "/tmp/gcp/credentials.json")
    assert script.splitlines()[0] == "{ set +xv; } 2>/dev/null"


@pytest.mark.parametrize("name", ["SHELLOPTS", "BASHOPTS", "BASH_ENV", "ENV"])
def test_shell_start_up_variables_in_a_wired_containers_environment_are_refused(
    name: str,
) -> None:
    defn = definition(
        entryPoint=["app"],
        environment=[{"name": "A", "value": "1"}, {"name": name, "value": "x"}],
    )
    with pytest.raises(TemplateError) as caught:
        wired(defn)
    assert f"container app: environment sets {name}" in caught.value.message
    # Not wired (another container is the target): the variable is the template's business.
    two = definition(entryPoint=["app"])
    two["containerDefinitions"].append(
        {
            "name": "side",
            "image": "busybox",
            "essential": False,
            "command": ["x"],
            "environment": [{"name": name}],
        }
    )
    wired(two)


def test_shell_start_up_variables_in_the_images_env_are_refused_when_its_config_is_read() -> None:
    def config(image: str) -> dict[str, Any]:
        return {"Cmd": ["app"], "Env": ["PATH=/usr/bin", "SHELLOPTS=xtrace"]}

    with pytest.raises(TemplateError, match="Env sets SHELLOPTS"):
        wired(definition(), image_config=config)


def test_an_older_wrapper_is_still_recognised_but_is_not_the_exact_one() -> None:
    container = wired(definition(entryPoint=["app"]))["containerDefinitions"][0]
    old = dict(container)
    script = container["entryPoint"][2]
    legacy = script.replace(wiring.HEAD, wiring.LEGACY_MARKER, 1)
    old["entryPoint"] = [*container["entryPoint"][:2], legacy, *container["entryPoint"][3:]]
    assert wiring.is_wrapped(old) and wiring.is_legacy_wrapper(old)
    assert not wiring.is_exact_wrapper(old)
    assert wiring.unwrap(old) == wiring.unwrap(container)
    assert wiring.is_exact_wrapper(container) and not wiring.is_legacy_wrapper(container)


def test_run_local_and_doctor_take_the_jobs_container_not_a_sidecar_listed_first() -> None:
    from gcpfargate.local.run import essential_container

    router = {"name": "log_router", "image": "public.ecr.aws/x/fluent-bit:1", "essential": True}
    job = {"name": "webserver", "image": "registry.example/job:1", "entryPoint": ["/job"]}
    defn = {"family": "f", "containerDefinitions": [router, job]}
    out = wired(defn, containers=["webserver"])
    assert [c["name"] for c in wiring.app_containers(out)] == ["webserver"]
    assert essential_container(out, None)["name"] == "webserver"
    assert essential_container(out, "log_router")["name"] == "log_router"
    # Nothing wired (wire_credentials = false): the essential containers, as before.
    assert [c["name"] for c in wiring.app_containers(defn)] == ["log_router", "webserver"]


def test_a_named_container_whose_image_cannot_be_read_says_what_to_write() -> None:
    def outside(image: str) -> dict[str, Any]:
        raise TemplateError(f"image {image} sets no entryPoint/command in the template and is ...")

    defn = {
        "family": "f",
        "containerDefinitions": [{"name": "envoy", "image": "public.ecr.aws/appmesh/envoy:1"}],
    }
    with pytest.raises(TemplateError) as caught:
        wired(defn, image_config=outside, containers=["envoy"])
    assert caught.value.message.startswith("container envoy: image public.ecr.aws/appmesh/envoy:1")
    assert "{{json .Config.Entrypoint}} {{json .Config.Cmd}}' public.ecr.aws/appmesh/envoy:1" in (
        caught.value.hint or ""
    )
    assert "task.containers" in (caught.value.hint or "")


def test_a_read_only_container_gets_a_small_tmpfs_for_the_key_and_unwire_removes_it() -> None:
    read_only = {"name": "app", "image": "i", "entryPoint": ["/a"], "readonlyRootFilesystem": True}
    out = wired({"family": "f", "containerDefinitions": [read_only]})
    tmpfs = out["containerDefinitions"][0]["linuxParameters"]["tmpfs"]
    assert tmpfs == [{"containerPath": "/tmp/gcp", "size": 4, "mountOptions": ["mode=0700"]}]
    plain, _ = wiring.unwire(out, lambda image: None)
    assert "linuxParameters" not in plain["containerDefinitions"][0]
    # A numeric user owns the mount; a writable volume or a tmpfs of the user's there: nothing
    # added.
    as_user = wired({"family": "f", "containerDefinitions": [{**read_only, "user": "1000:50"}]})
    assert as_user["containerDefinitions"][0]["linuxParameters"]["tmpfs"][0]["mountOptions"] == [
        "mode=0700",
        "uid=1000",
        "gid=50",
    ]
    volume = {**read_only, "mountPoints": [{"sourceVolume": "v", "containerPath": "/tmp"}]}
    assert (
        "linuxParameters"
        not in wired({"family": "f", "containerDefinitions": [volume]})["containerDefinitions"][0]
    )
    own = {**read_only, "linuxParameters": {"tmpfs": [{"containerPath": "/tmp", "size": 64}]}}
    kept = wired({"family": "f", "containerDefinitions": [own]})["containerDefinitions"][0]
    assert kept["linuxParameters"] == own["linuxParameters"]
    # Not read-only: the same tmpfs, so the key never reaches the writable layer (a disk).
    writable = wired(
        {"family": "f", "containerDefinitions": [{**read_only, "readonlyRootFilesystem": False}]}
    )
    assert writable["containerDefinitions"][0]["linuxParameters"]["tmpfs"] == tmpfs


def test_every_wired_container_gets_a_tmpfs_its_user_can_write() -> None:
    app = {"name": "app", "image": "registry.example/job:1", "entryPoint": ["/a"]}
    sidecar = {"name": "log_router", "image": "public.ecr.aws/x/fluent-bit:1"}

    def options(container: dict[str, Any], user: Any = "") -> list[str]:
        out = wired(
            {"family": "f", "containerDefinitions": [container, sidecar]},
            image_user=lambda image: user,
            image="registry.example/job:2",
        )
        assert out["containerDefinitions"][1] == sidecar  # not wired: left as written
        return list(out["containerDefinitions"][0]["linuxParameters"]["tmpfs"][0]["mountOptions"])

    assert options(app) == ["mode=0700"]  # the image sets no USER: root
    assert options(app, "root") == ["mode=0700"]
    assert options(app, "1000") == ["mode=0700", "uid=1000", "gid=1000"]
    assert options(app, "1000:50") == ["mode=0700", "uid=1000", "gid=50"]
    # A user name (tmpfs takes numeric ids only) or an image that cannot be read: like /tmp.
    assert options(app, "node") == ["mode=1777"]
    assert options(app, None) == ["mode=1777"]
    # The container's `user` wins over the image's USER, as in ECS and Docker.
    assert options({**app, "user": "0"}, "1000") == ["mode=0700"]
    assert options({**app, "user": "2000:2000"}, None) == ["mode=0700", "uid=2000", "gid=2000"]
    # The image's config, when the wiring read it for ENTRYPOINT/CMD, gives the USER: no 2nd read.
    reads: list[str] = []

    def config(image: str) -> dict[str, Any]:
        reads.append(image)
        return {"Entrypoint": ["/job"], "User": "1001"}

    out = wired(
        {"family": "f", "containerDefinitions": [{"name": "app", "image": "registry.example/j:1"}]},
        image_config=config,
        image_user=lambda image: pytest.fail("the config read already gives the USER"),
    )
    mount = out["containerDefinitions"][0]["linuxParameters"]["tmpfs"][0]
    assert mount["mountOptions"] == ["mode=0700", "uid=1001", "gid=1001"] and len(reads) == 1
    # unwire removes gcpfargate's own tmpfs, whichever mode it has.
    for user in ("1000", "node"):
        out = wired(
            {"family": "f", "containerDefinitions": [app]}, image_user=lambda i, user=user: user
        )
        plain, _ = wiring.unwire(out, lambda image: None)
        assert "linuxParameters" not in plain["containerDefinitions"][0]


def test_tmpfs_targets_names_the_containers_wiring_gives_a_tmpfs() -> None:
    definition = {
        "family": "f",
        "containerDefinitions": [
            {"name": "app", "image": "registry.example/job:1"},
            {
                "name": "other",
                "image": "registry.example/job:1",
                "mountPoints": [{"sourceVolume": "v", "containerPath": "/tmp"}],
            },
            {"name": "sidecar", "image": "public.ecr.aws/x/y:1"},
        ],
    }
    names = wiring.tmpfs_targets(definition, None, "registry.example/job:2", "/tmp/gcp/k.json")
    assert names == ["app"]


def test_keyless_wiring_gives_a_read_only_container_the_same_tmpfs() -> None:
    from gcpfargate.credentials.keyless.wiring import wire_keyless

    out = wire_keyless(
        {
            "family": "f",
            "containerDefinitions": [
                {
                    "name": "app",
                    "image": "registry.example/job:1",
                    "entryPoint": ["/job"],
                    "readonlyRootFilesystem": True,
                },
                {"name": "log_router", "image": "public.ecr.aws/x/fluent-bit:1"},
            ],
        },
        credential_config={"type": "external_account"},
        credentials_env=ENV,
        credentials_path="/run/gcp/config.json",
        containers=None,
        image_config=no_image,
        task_role_arn="arn:aws:iam::123456789012:role/task",
        shim_image_ref="registry.example/shim:1",
        project="p",
        image="registry.example/job:2",
    )
    app, router = out["containerDefinitions"][:2]
    assert app["linuxParameters"]["tmpfs"] == [
        {"containerPath": "/run/gcp", "size": 4, "mountOptions": ["mode=0700"]}
    ]
    assert router == {"name": "log_router", "image": "public.ecr.aws/x/fluent-bit:1"}
