"""The registry client behind a TLS-inspecting proxy: a registry on loopback whose certificate a
private CA signed (made here with `cryptography`), as a corporate proxy re-signs ECR's. The
client trusts it through the AWS SDK's own setting, AWS_CA_BUNDLE or the profile's `ca_bundle`,
and says which variable to set when it is missing."""

from __future__ import annotations

import datetime
import ipaddress
import json
import shutil
import ssl
import subprocess
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import Project, assert_one_clean_line
from tests.integration.helpers import DOCKER_V2, configure_image
from tests.stack.images import write_busybox_context
from tests.stack.local import LocalStack, _wait, free_port


@dataclass(frozen=True)
class TlsRegistry:
    host: str  # 127.0.0.1:port
    ca: Path  # the private CA's certificate (PEM)

    def digest(self, repository: str, tag: str) -> str:
        context = ssl.create_default_context(cafile=str(self.ca))
        request = urllib.request.Request(
            f"https://{self.host}/v2/{repository}/manifests/{tag}",
            method="HEAD",
            headers={"Accept": DOCKER_V2},
        )
        with urllib.request.urlopen(request, timeout=10, context=context) as response:
            return str(response.headers["Docker-Content-Digest"])


def _certificates(directory: Path) -> tuple[Path, Path, Path]:
    """A CA, and a certificate for 127.0.0.1 it signed: (ca.pem, server.pem, server-key.pem)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "gcpfargate test proxy CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    server_key = ec.generate_private_key(ec.SECP256R1())
    server = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(server_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    paths = (directory / "ca.pem", directory / "server.pem", directory / "server-key.pem")
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(server.public_bytes(serialization.Encoding.PEM))
    # The registry's own TLS key: a throwaway made for this test, never a credential.
    paths[2].write_bytes(
        server_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return paths


@pytest.fixture(scope="module")
def tls_registry(stack: LocalStack) -> Iterator[TlsRegistry]:
    root = stack.root / "tls-registry"
    root.mkdir()
    ca, certificate, key = _certificates(root)
    port = free_port()
    config = root / "registry.yml"
    config.write_text(
        json.dumps(
            {
                "version": 0.1,
                "log": {"level": "warn"},
                "storage": {"filesystem": {"rootdirectory": str(root / "data")}},
                "http": {
                    "addr": f"127.0.0.1:{port}",
                    "tls": {"certificate": str(certificate), "key": str(key)},
                },
            }
        )
    )
    binary = shutil.which("docker-registry")
    assert binary, "docker-registry is not installed"
    log = root / "registry.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [binary, "serve", str(config)],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    registry = TlsRegistry(f"127.0.0.1:{port}", ca)
    context = ssl.create_default_context(cafile=str(ca))

    def ready() -> bool:
        with urllib.request.urlopen(
            f"https://{registry.host}/v2/", timeout=2, context=context
        ) as response:
            return response.status < 500

    try:
        _wait(ready, "TLS registry", 30, proc, log)
        yield registry
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def _env(registry: TlsRegistry, **extra: str | None) -> dict[str, str | None]:
    return {"GCPFARGATE_ECR_REGISTRY": f"https://{registry.host}", **extra}


def test_aws_ca_bundle_is_trusted_for_the_registry(
    project: Project, tls_registry: TlsRegistry
) -> None:
    repository = configure_image(project, tag="v1")
    write_busybox_context(project.dir, ['CMD ["echo", "through the proxy"]'])
    env = _env(tls_registry, AWS_CA_BUNDLE=str(tls_registry.ca))
    first = project.run("push-image", "--output", "json", env=env)
    assert first.returncode == 0, first.output
    assert first.json["image"] == f"{tls_registry.host}/{repository}:v1"
    assert first.json["digest"] == tls_registry.digest(repository, "v1")
    second = project.run("push-image", "--output", "json", env=env)
    assert second.returncode == 0, second.output
    assert second.json == {**first.json, "changed": False}


def test_the_profiles_ca_bundle_is_trusted_for_the_registry(
    project: Project, tls_registry: TlsRegistry
) -> None:
    repository = configure_image(project, tag="v1")
    write_busybox_context(project.dir, ['CMD ["echo", "profile bundle"]'])
    aws_config = project.dir.parent / f"{project.dir.name}.aws-config"
    aws_config.write_text(f"[profile corp]\nca_bundle = {tls_registry.ca}\n")
    env = _env(tls_registry, AWS_CONFIG_FILE=str(aws_config), AWS_PROFILE="corp")
    result = project.run("push-image", "--output", "json", env=env)
    assert result.returncode == 0, result.output
    assert result.json["digest"] == tls_registry.digest(repository, "v1")


def test_an_untrusted_certificate_names_the_variable_to_set(
    project: Project, tls_registry: TlsRegistry
) -> None:
    repository = configure_image(project, tag="v1")
    write_busybox_context(project.dir)
    result = project.run("push-image", env=_env(tls_registry, AWS_CA_BUNDLE=None))
    assert_one_clean_line(
        result,
        1,
        f"cannot reach registry {tls_registry.host}: its TLS certificate is not trusted (SSLError)",
        "set AWS_CA_BUNDLE (or ca_bundle in the AWS profile)",
    )
    assert not project.exists("repository", repository)
