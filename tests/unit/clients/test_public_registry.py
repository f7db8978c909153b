"""Anonymous reads of public ECR / Docker Hub image configs, against a loopback token registry."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from gcpfargate.clients import public_registry
from gcpfargate.clients.public_registry import PublicRegistry, locate
from gcpfargate.errors import RegistryError
from tests.stack.token_registry import TokenRegistry


@pytest.fixture
def registry(monkeypatch: pytest.MonkeyPatch) -> Iterator[TokenRegistry]:
    server = TokenRegistry().start()
    monkeypatch.setenv(
        "GCPFARGATE_PUBLIC_REGISTRIES", f"public.ecr.aws={server.url},docker.io={server.url}"
    )
    yield server
    server.stop()


def test_locate_follows_dockers_naming_rules() -> None:
    assert locate("public.ecr.aws/appmesh/aws-appmesh-envoy:v1.29") == (
        "public.ecr.aws",
        "appmesh/aws-appmesh-envoy",
        "v1.29",
    )
    assert locate("amazon/cloudwatch-agent") == ("docker.io", "amazon/cloudwatch-agent", "latest")
    assert locate("busybox:1.36") == ("docker.io", "library/busybox", "1.36")
    assert locate("docker.io/library/nginx@sha256:" + "a" * 64) == (
        "docker.io",
        "library/nginx",
        "sha256:" + "a" * 64,
    )
    assert locate("123456789012.dkr.ecr.us-east-1.amazonaws.com/job:1") is None
    assert locate("localhost:5000/job:1") is None


def test_an_anonymous_token_is_fetched_from_the_realm_and_the_config_read(
    registry: TokenRegistry,
) -> None:
    registry.publish("appmesh/envoy", "v1", {"Entrypoint": ["/envoy"], "User": "1337"})
    client = PublicRegistry()
    config = client.run_config("public.ecr.aws/appmesh/envoy:v1")
    assert config == {"Entrypoint": ["/envoy"], "User": "1337"}
    paths = [seen.path for seen in registry.requests]
    # 401, then the token, then index, manifest and config with the token.
    assert paths[0] == "/v2/appmesh/envoy/manifests/v1" and paths[1].startswith("/token?")
    assert "scope=repository%3Aappmesh%2Fenvoy%3Apull" in paths[1]
    assert registry.requests[0].authorization == "" and registry.requests[1].authorization == ""
    assert all(seen.authorization.startswith("Bearer ") for seen in registry.requests[2:])
    assert len(registry.requests) == 5
    # The token and the config are kept: a second read costs nothing.
    assert client.run_config("public.ecr.aws/appmesh/envoy:v1") == config
    assert len(registry.requests) == 5


def test_docker_hub_names_map_to_library(registry: TokenRegistry) -> None:
    registry.publish("library/busybox", "1", {"Cmd": ["sh"]})
    assert PublicRegistry().run_config("busybox:1") == {"Cmd": ["sh"]}


def test_a_private_or_missing_image_is_one_clear_error(registry: TokenRegistry) -> None:
    with pytest.raises(RegistryError) as caught:
        PublicRegistry().run_config("public.ecr.aws/someone/private:1")
    assert "no anonymous token" in caught.value.message and "401" in caught.value.message
    registry.publish("appmesh/envoy", "v1", {"Cmd": ["x"]})
    with pytest.raises(RegistryError) as missing:
        PublicRegistry().run_config("public.ecr.aws/appmesh/envoy:v2")
    assert "is not in public.ecr.aws" in missing.value.message


def test_an_unreachable_registry_is_one_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GCPFARGATE_PUBLIC_REGISTRIES", "public.ecr.aws=http://127.0.0.1:9")
    with pytest.raises(RegistryError) as caught:
        PublicRegistry().run_config("public.ecr.aws/a/b:1")
    assert "cannot reach registry public.ecr.aws" in caught.value.message


def test_a_challenge_is_parsed_and_a_plain_http_realm_elsewhere_is_refused() -> None:
    header = 'Bearer realm="https://auth.docker.io/token",service="registry.docker.io"'
    assert public_registry._challenge(header) == {
        "realm": "https://auth.docker.io/token",
        "service": "registry.docker.io",
    }
    assert public_registry._challenge('Basic realm="x"') == {}
