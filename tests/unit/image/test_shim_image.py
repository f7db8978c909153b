"""The credential shim's build context and container definition (pure; the image itself is built and
run against a real engine in tests/integration/image/test_shim_image.py)."""

from __future__ import annotations

import re
from pathlib import Path

import gcpfargate.shim
from gcpfargate.image.shim_image import build_context, container_definition, content_digest


def test_build_context_is_the_package_and_a_dockerfile_without_install_steps() -> None:
    context = build_context("gcpfargate-demo/python-base:bookworm")
    package = Path(gcpfargate.shim.__file__).parent
    assert sorted(context) == [
        "Dockerfile",
        "shim/__init__.py",
        "shim/__main__.py",
        "shim/server.py",
        "shim/upstream.py",
    ]
    for name, content in context.items():
        if name.startswith("shim/"):
            assert content == (package / name.removeprefix("shim/")).read_bytes()
    assert context["Dockerfile"].decode() == (
        "FROM gcpfargate-demo/python-base:bookworm\n"
        "COPY shim /opt/gcpfargate-shim/shim\n"
        "WORKDIR /opt/gcpfargate-shim\n"
        "ENV PYTHONPATH=/opt/gcpfargate-shim PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1\n"
        "USER 65534:65534\n"
        'ENTRYPOINT ["python3", "-m", "shim"]\n'
        f'LABEL org.gcpfargate.shim.content="{content_digest(context)}"\n'
    )
    assert re.fullmatch("[0-9a-f]{64}", content_digest(context))
    assert build_context("gcpfargate-demo/python-base:bookworm") == context, (
        "the same inputs, the same bytes"
    )


def test_the_default_base_is_pinned_by_digest_and_the_digest_reaches_the_tag() -> None:
    from gcpfargate.image.shim_image import DEFAULT_BASE_IMAGE
    from gcpfargate.image.shim_push import shim_tag
    from gcpfargate.settings import ImageSettings

    assert re.fullmatch(r"python:3\.1[1-9]-slim@sha256:[0-9a-f]{64}", DEFAULT_BASE_IMAGE)
    assert ImageSettings().shim_base_image == DEFAULT_BASE_IMAGE
    assert build_context()["Dockerfile"].startswith(f"FROM {DEFAULT_BASE_IMAGE}\n".encode())
    other = DEFAULT_BASE_IMAGE[:-1] + ("0" if DEFAULT_BASE_IMAGE[-1] != "0" else "1")
    assert shim_tag(build_context(other)) != shim_tag(build_context())
    assert content_digest(build_context(other)) != content_digest(build_context())


def test_container_definition_is_valid_for_register_task_definition() -> None:
    import botocore.session
    from botocore.validate import ParamValidator

    container = container_definition(
        "123456789012.dkr.ecr.ap-northeast-1.amazonaws.com/shim@sha256:" + "a" * 64, port=9300
    )
    assert container["essential"] is False
    assert container["command"] == ["--port", "9300"]
    assert container["healthCheck"]["command"] == [
        "CMD",
        "python3",
        "-m",
        "shim",
        "--check",
        "--port",
        "9300",
    ]
    model = botocore.session.get_session().get_service_model("ecs")
    shape = model.operation_model("RegisterTaskDefinition").input_shape
    report = ParamValidator().validate(
        {"family": "demo", "containerDefinitions": [container]}, shape
    )
    assert not report.has_errors(), report.generate_report()
