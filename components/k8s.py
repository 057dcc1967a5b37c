"""Register a manifest dict (components.manifests) as its typed pulumi-kubernetes resource."""

from __future__ import annotations

from typing import Any

import pulumi
import pulumi_kubernetes as k8s

_KINDS: dict[str, Any] = {
    "Namespace": k8s.core.v1.Namespace,
    "ConfigMap": k8s.core.v1.ConfigMap,
    "Secret": k8s.core.v1.Secret,
    "Service": k8s.core.v1.Service,
    "ServiceAccount": k8s.core.v1.ServiceAccount,
    "Deployment": k8s.apps.v1.Deployment,
    "StatefulSet": k8s.apps.v1.StatefulSet,
    "HorizontalPodAutoscaler": k8s.autoscaling.v2.HorizontalPodAutoscaler,
    "PodDisruptionBudget": k8s.policy.v1.PodDisruptionBudget,
    "Ingress": k8s.networking.v1.Ingress,
    "NetworkPolicy": k8s.networking.v1.NetworkPolicy,
    "CronJob": k8s.batch.v1.CronJob,
    "Job": k8s.batch.v1.Job,
}
_TOP_LEVEL = {"stringData": "string_data", "metadata": "metadata", "spec": "spec", "type": "type",
              "data": "data"}  # fmt: skip


def declare(resource_name: str, manifest: dict[str, Any], opts: pulumi.ResourceOptions) -> Any:
    cls = _KINDS[manifest["kind"]]
    kwargs = {_TOP_LEVEL[k]: v for k, v in manifest.items() if k not in ("apiVersion", "kind")}
    return cls(resource_name, **kwargs, opts=opts)
