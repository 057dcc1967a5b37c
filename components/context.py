"""What every component of one app shares: the spec, its settings, the target, and the values
(connection details and secrets) that env templates are rendered from."""

from __future__ import annotations

import hashlib
import json
import string
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any

import pulumi

from components.catalog.spec import AppSpec, Resources, ServiceSpec
from components.config import AppSettings, ServiceSettings, Settings


def template_fields(template: str) -> list[str]:
    return [f for _, f, _, _ in string.Formatter().parse(template) if f]


@dataclass(frozen=True)
class AppContext:
    """Set once, when `App` has declared the boundary and the secrets; components only read it,
    so the order they are built in cannot change what they see."""

    spec: AppSpec
    settings: Settings
    app_settings: AppSettings
    namespace: str | None = None  # Kubernetes namespace (prod)
    network: pulumi.Input[str] | None = None  # Docker network name (dev)
    values: Mapping[str, pulumi.Input[Any]] = field(default_factory=dict)  # template values
    secret_values: frozenset[str] = frozenset()  # which values are secrets
    runner_image: pulumi.Input[str] | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "values", MappingProxyType(dict(self.values)))
        object.__setattr__(self, "secret_values", frozenset(self.secret_values))

    @property
    def docker_network(self) -> pulumi.Input[str]:
        """The Docker network (dev), declared by `App` before the context is made."""
        if self.network is None:
            raise ValueError(f"{self.name}: no Docker network declared yet")
        return self.network

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def target(self) -> str:
        return self.settings.target

    @property
    def kubernetes(self) -> bool:
        return self.settings.target == "kubernetes"

    def render(self, template: str) -> pulumi.Output[str]:
        """Fill a template; the result is secret when any value it uses is."""
        used = template_fields(template)
        unknown = [f for f in used if f not in self.values]
        if unknown:
            raise KeyError(f"{self.name}: template {template!r} uses unknown values {unknown}")
        if not used:
            return pulumi.Output.from_input(template.format())
        rendered = pulumi.Output.all(**{f: self.values[f] for f in used}).apply(
            lambda v: template.format(**v)
        )
        if any(f in self.secret_values for f in used):
            return pulumi.Output.secret(rendered)
        return rendered

    def render_all(self, templates: dict[str, str]) -> dict[str, pulumi.Output[str]]:
        return {key: self.render(t) for key, t in sorted(templates.items())}

    def service_settings(self, service: ServiceSpec) -> ServiceSettings:
        """The service's config, or the model's defaults when config doesn't mention it."""
        return self.app_settings.services.get(service.name) or ServiceSettings()

    def service_image(self, service: ServiceSpec) -> str:
        return self.service_settings(service).image or service.default_image or ""

    def service_resources(self, service: ServiceSpec) -> Resources:
        """The catalog's requests/limits with any configured override applied."""
        overrides = self.service_settings(service).resources.model_dump(exclude_none=True)
        return replace(service.resources, **overrides)

    def service_settings_value(self, service: ServiceSpec, attr: str, default: int) -> int:
        """A configured count (replicas, min/max), else the catalog's `default`."""
        value = getattr(self.service_settings(service), attr)
        return default if value is None else value


def checksum(values: dict[str, pulumi.Input[str]]) -> pulumi.Output[str]:
    """sha256 over the secret values a workload uses: changes exactly when one of them does.

    The digest is not secret (it reveals nothing) so it can sit in a pod template annotation.
    """
    if not values:
        return pulumi.Output.from_input(hashlib.sha256(b"").hexdigest())
    digest = pulumi.Output.all(**values).apply(
        lambda v: hashlib.sha256(json.dumps(v, sort_keys=True).encode()).hexdigest()
    )
    return pulumi.Output.unsecret(digest)
