"""Docker-target shapes shared by the dev components (the counterpart of components.manifests)."""

from __future__ import annotations

from collections.abc import Mapping

import pulumi
import pulumi_docker as docker


def env_list(
    plain: Mapping[str, pulumi.Input[str]], secret: Mapping[str, pulumi.Input[str]]
) -> pulumi.Output[list[str]]:
    """A container's `KEY=VALUE` env, sorted; a secret output whenever a secret value is in it."""
    values = {**plain, **secret}
    if not values:
        return pulumi.Output.from_input([])
    envs = pulumi.Output.all(**values).apply(lambda v: [f"{k}={v[k]}" for k in sorted(v)])
    return pulumi.Output.secret(envs) if secret else envs


def container_labels(labels: Mapping[str, pulumi.Input[str]]) -> list[docker.ContainerLabelArgs]:
    return [docker.ContainerLabelArgs(label=k, value=v) for k, v in sorted(labels.items())]
