"""Where collaborators are wired: settings, reporter and the adapters, created lazily once.

Core functions take a `Context`; tests build one with the same adapters pointed at the local
stack (the adapters read the standard endpoint variables), never with mocks.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING

from gcpfargate.config import Settings
from gcpfargate.core.plan import Plan
from gcpfargate.core.report import NullReporter, Reporter

if TYPE_CHECKING:
    from gcpfargate.clients.aws import AwsClients
    from gcpfargate.clients.engine.docker import DockerEngine
    from gcpfargate.clients.google.gcp import IamAdmin
    from gcpfargate.clients.google.gcp_rest import ServiceUsage, WorkloadIdentityPools
    from gcpfargate.clients.public_registry import PublicRegistry
    from gcpfargate.clients.registry import Registry


@dataclass
class Context:
    settings: Settings
    reporter: Reporter = field(default_factory=NullReporter)
    # Records every change the command makes; whether they are made is decided once, where the
    # command starts (the CLI's --dry-run), never by the core logic.
    plan: Plan = field(default_factory=Plan)

    @cached_property
    def aws(self) -> AwsClients:
        from gcpfargate.clients.aws import AwsClients

        return AwsClients(region=self.settings.aws.region, profile=self.settings.aws.profile)

    @cached_property
    def iam(self) -> IamAdmin:
        from gcpfargate.clients.google.gcp import IamAdmin

        gcp = self.settings.gcp
        return IamAdmin(transport=gcp.transport, universe=gcp.universe_domain)

    @cached_property
    def pools(self) -> WorkloadIdentityPools:
        from gcpfargate.clients.google.gcp_rest import WorkloadIdentityPools

        return WorkloadIdentityPools(universe=self.settings.gcp.universe_domain)

    @cached_property
    def service_usage(self) -> ServiceUsage:
        from gcpfargate.clients.google.gcp_rest import ServiceUsage

        return ServiceUsage(universe=self.settings.gcp.universe_domain)

    @cached_property
    def docker(self) -> DockerEngine:
        from gcpfargate.clients.engine.docker import DockerEngine

        return DockerEngine()

    @cached_property
    def registry(self) -> Registry:
        from gcpfargate.clients.registry import Registry

        image = self.settings.image
        return Registry(self.aws, image.registry_id, image.registry_host)

    @cached_property
    def public_registry(self) -> PublicRegistry:
        """Anonymous reads of public ECR and Docker Hub image configs (named sidecars)."""
        from gcpfargate.clients.public_registry import PublicRegistry

        return PublicRegistry(self.aws.ca_bundle or True)

    @cached_property
    def other_registries(self) -> dict[str, Registry]:
        """Other accounts' ECR registries, by account id, that named containers' images are in
        (each keeps its own authorization token)."""
        return {}
