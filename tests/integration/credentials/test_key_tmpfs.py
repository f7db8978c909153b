"""The key on tmpfs in every wired container, whatever user it runs as; tmpfs refused on a pinned
platform version before 1.4.0; a named sidecar's image config read anonymously from a public
registry (a loopback stand-in with token auth: tests/stack/token_registry.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.conftest import Project, assert_one_clean_line
from tests.integration.helpers import deploy, latest, prepare
from tests.stack.token_registry import TokenRegistry

# The program: its uid, the key there and readable by it, the credentials directory a tmpfs.
CHECK = (
    'id -u && test -r \\"$GOOGLE_APPLICATION_CREDENTIALS\\" && '
    'head -c 1 \\"$GOOGLE_APPLICATION_CREDENTIALS\\" >/dev/null && '
    "grep ' /tmp/gcp tmpfs ' /proc/mounts && echo key-on-tmpfs"
)
PASSWD = "root:x:0:0:root:/:/bin/sh\napp:x:1234:1234:app:/:/bin/sh\n"
GROUP = "root:x:0:\napp:x:1234:\n"


def _tmpfs(project: Project) -> list[dict[str, object]]:
    app = latest(project)["containerDefinitions"][0]
    return list(app["linuxParameters"]["tmpfs"])


@pytest.mark.parametrize(
    ("user_steps", "options", "uid"),
    [
        (("USER 1000:1000",), ["mode=0700", "uid=1000", "gid=1000"], "1000"),
        (
            ("COPY passwd /etc/passwd", "COPY group /etc/group", "USER app"),
            ["mode=1777"],
            "1234",
        ),
    ],
    ids=["numeric-user", "named-user"],
)
def test_a_non_root_image_gets_a_tmpfs_it_can_write_the_key_to(
    project: Project, user_steps: tuple[str, ...], options: list[str], uid: str
) -> None:
    # A writable root (no readonlyRootFilesystem) and a USER the template does not name.
    from tests.stack.images import write_busybox_context

    prepare(project)
    write_busybox_context(
        project.dir,
        (*user_steps, f'CMD ["sh", "-c", "{CHECK}"]'),
        files={"passwd": PASSWD, "group": GROUP},
    )
    deploy(project)
    assert _tmpfs(project) == [{"containerPath": "/tmp/gcp", "size": 4, "mountOptions": options}]
    result = project.run("run-local")
    assert result.returncode == 0, result.output
    assert "key-on-tmpfs" in result.output, result.output
    assert f"\n{uid}\n" in f"\n{result.output}", result.output
    doctor = project.run("doctor", "--output", "json")
    assert "Traceback" not in doctor.output, doctor.output
    checks = {check["name"]: check for check in doctor.json["checks"]}
    assert checks["task definition delivers the key safely"]["status"] == "OK", checks
    again = project.run("deploy", "--output", "json")
    assert again.returncode == 0 and not again.json["register-task"]["changed"], again.output


def test_tmpfs_on_a_pinned_platform_version_before_1_4_0_is_refused_before_any_write(
    project: Project,
) -> None:
    prepare(project)
    config = project.dir / "gcpfargate.toml"
    config.write_text(config.read_text() + '\n[run]\nplatform_version = "1.3.0"\n')
    result = project.run("deploy")
    assert_one_clean_line(result, 2, "platform version 1.3.0", "1.4.0", "tmpfs")
    assert not project.exists("secret", project.secret_name)
    assert not project.exists("repository", project.family)
    revisions = project.aws("ecs").list_task_definitions(familyPrefix=project.family)
    assert revisions["taskDefinitionArns"] == []
    # 1.4.0 (or LATEST) has tmpfs: the same project deploys.
    config.write_text(config.read_text().replace('"1.3.0"', '"1.4.0"'))
    deploy(project)


@pytest.fixture
def public() -> Iterator[TokenRegistry]:
    server = TokenRegistry().start()
    yield server
    server.stop()


def test_a_named_sidecar_from_a_public_registry_is_wired_from_its_anonymous_config(
    project: Project, public: TokenRegistry
) -> None:
    envoy = "public.ecr.aws/appmesh/aws-appmesh-envoy:v1.29"
    public.publish(
        "appmesh/aws-appmesh-envoy",
        "v1.29",
        {"Entrypoint": ["/usr/bin/envoy"], "Cmd": ["-c", "/etc/envoy.yaml"], "User": "1337"},
    )
    prepare(project)
    template = project.dir / "task-definition.json.j2"
    sidecar = f'{{"name": "envoy", "image": "{envoy}", "essential": true}}'
    template.write_text(
        template.read_text().replace(
            '  "containerDefinitions": [\n', (f'  "containerDefinitions": [\n    {sidecar},\n'), 1
        )
    )
    config = project.dir / "gcpfargate.toml"
    config.write_text(
        config.read_text().replace("[task]\n", '[task]\ncontainers = ["app", "envoy"]\n', 1)
    )
    env = {"GCPFARGATE_PUBLIC_REGISTRIES": f"public.ecr.aws={public.url}"}
    result = project.run("deploy", "--output", "json", env=env)
    assert result.returncode == 0, result.output
    envoy_def = next(c for c in latest(project)["containerDefinitions"] if c["name"] == "envoy")
    assert envoy_def["entryPoint"][:2] == ["/bin/sh", "-c"]
    assert envoy_def["entryPoint"][4:] == ["/usr/bin/envoy"]
    assert envoy_def["command"] == ["-c", "/etc/envoy.yaml"]
    assert envoy_def["linuxParameters"]["tmpfs"][0]["mountOptions"] == [
        "mode=0700",
        "uid=1337",
        "gid=1337",
    ]
    # Anonymous: nothing but the registry's own bearer tokens was ever sent.
    assert public.requests and all(
        seen.authorization in ("",) or seen.authorization.startswith("Bearer ")
        for seen in public.requests
    )
    assert any(seen.path.startswith("/token?") for seen in public.requests)
    # A private image there: one clear line naming what to add, before any write of its own.
    private = "public.ecr.aws/someone/private:1"
    template.write_text(template.read_text().replace(envoy, private))
    failed = project.run("deploy", env=env)
    assert_one_clean_line(failed, 2, "envoy", private, "entryPoint")
