"""Workloads and their pods: Deployments, StatefulSets, sidecars, autoscaling and disruption
budgets."""

from __future__ import annotations

from typing import Any

from components.catalog.spec import Resources
from components.manifests.base import (
    CHECKSUM_ANNOTATION,
    DATA_VOLUME,
    IMAGE_PINNING_ANNOTATION,
    Manifest,
    container_security,
    env_from_secret,
    http_probe,
    image_fields,
    image_pinning,
    labels,
    metadata,
    plain_env,
    pod_security,
    resources,
    scratch_volumes,
    secret_volume,
    selector,
)


def deployment(
    *,
    name: str,
    ns: str,
    app: str,
    component: str,
    image: Any,
    port: int,
    health_path: str,
    replicas: int,
    res: Resources,
    run_as_user: int,
    read_only_root: bool,
    writable_paths: tuple[str, ...],
    env: dict[str, Any],
    secret_name: str | None,
    secret_keys: list[str],
    checksum: Any,
    service_account: str | None = None,
    api_access: bool = False,
    extra_pod_labels: dict[str, str] | None = None,
) -> Manifest:
    """api_access: the pod talks to the Kubernetes API (none does today): only then is a
    service-account token mounted."""
    lbls = labels(app, component)
    volumes, mounts = scratch_volumes(writable_paths)
    container: Manifest = {
        "name": component,
        **image_fields(image),
        "ports": [{"name": "http", "containerPort": port, "protocol": "TCP"}],
        "env": plain_env(env) + (env_from_secret(secret_name, secret_keys) if secret_name else []),
        "readinessProbe": http_probe(health_path, port, initial_delay=5),
        "livenessProbe": http_probe(health_path, port, initial_delay=30, period=20),
        "resources": resources(res),
        "securityContext": container_security(read_only_root),
        "volumeMounts": mounts,
    }
    pod_spec: Manifest = {
        "securityContext": pod_security(run_as_user),
        "containers": [container],
        "volumes": volumes,
        "automountServiceAccountToken": api_access,
    }
    if service_account:
        pod_spec["serviceAccountName"] = service_account
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata(name, ns, lbls),
        "spec": {
            "replicas": replicas,
            "revisionHistoryLimit": 5,
            "selector": {"matchLabels": selector(app, component)},
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1},
            },
            "template": {
                "metadata": {
                    "labels": {**lbls, **(extra_pod_labels or {})},
                    "annotations": {
                        CHECKSUM_ANNOTATION: checksum,
                        IMAGE_PINNING_ANNOTATION: image_pinning([container]),
                    },
                },
                "spec": pod_spec,
            },
        },
    }


def hpa(*, name: str, ns: str, app: str, component: str, low: int, high: int, cpu: int) -> Manifest:
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": metadata(name, ns, labels(app, component)),
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
            "minReplicas": max(low, 1),
            "maxReplicas": high,
            "metrics": [
                {
                    "type": "Resource",
                    "resource": {
                        "name": "cpu",
                        "target": {"type": "Utilization", "averageUtilization": cpu},
                    },
                }
            ],
        },
    }


def pdb(*, name: str, ns: str, app: str, component: str) -> Manifest:
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": metadata(name, ns, labels(app, component)),
        "spec": {"maxUnavailable": 1, "selector": {"matchLabels": selector(app, component)}},
    }


# Response headers every public host sends (QR runbook: "Review security headers").


def statefulset(
    *,
    name: str,
    ns: str,
    app: str,
    component: str,
    image: Any,
    port: int,
    run_as_user: int,
    env: list[Manifest],
    args: list[str],
    data_path: str,
    storage: str,
    readiness: Manifest,
    writable_paths: tuple[str, ...],
    res: Resources,
    checksum: Any = None,
    sidecars: list[Manifest] | None = None,
    replicas: int = 1,
    secret_files: tuple[str, str] | None = None,
) -> Manifest:
    """secret_files: (Secret name, mount path) mounted read-only in every container."""
    lbls = labels(app, component)
    volumes, mounts = scratch_volumes(writable_paths)
    if secret_files:
        volume, mount = secret_volume(*secret_files)
        volumes, mounts = [*volumes, volume], [*mounts, mount]
    container: Manifest = {
        "name": component,
        **image_fields(image),
        "ports": [{"name": component, "containerPort": port, "protocol": "TCP"}],
        "env": env,
        "readinessProbe": readiness,
        "livenessProbe": {**readiness, "initialDelaySeconds": 30, "periodSeconds": 20},
        "resources": resources(res),
        "securityContext": container_security(read_only_root=True),
        "volumeMounts": [{"name": DATA_VOLUME, "mountPath": data_path}, *mounts],
    }
    if args:
        container["args"] = args
    containers = [container, *(sidecars or [])]
    if secret_files:
        for extra in containers[1:]:
            extra["volumeMounts"] = [*extra.get("volumeMounts", []), mounts[-1]]
    template_meta: Manifest = {
        "labels": lbls,
        "annotations": {IMAGE_PINNING_ANNOTATION: image_pinning(containers)},
    }
    if checksum is not None:
        template_meta["annotations"][CHECKSUM_ANNOTATION] = checksum
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": metadata(name, ns, lbls),
        "spec": {
            "serviceName": component,
            "replicas": replicas,
            "selector": {"matchLabels": selector(app, component)},
            "template": {
                "metadata": template_meta,
                "spec": {
                    "securityContext": pod_security(run_as_user),
                    "automountServiceAccountToken": False,
                    "containers": containers,
                    "volumes": volumes,
                },
            },
            "volumeClaimTemplates": [
                {
                    "metadata": {"name": DATA_VOLUME, "labels": lbls},
                    "spec": {
                        "accessModes": ["ReadWriteOnce"],
                        "resources": {"requests": {"storage": storage}},
                    },
                }
            ],
        },
    }


def sidecar(*, name: str, image: str, port: int, env: list[Manifest]) -> Manifest:
    """A metrics exporter beside a data store (runs as nobody, read-only root)."""
    return {
        "name": name,
        **image_fields(image),
        "ports": [{"name": "metrics", "containerPort": port, "protocol": "TCP"}],
        "env": env,
        "resources": resources(Resources("10m", "32Mi", "100m", "64Mi")),
        "securityContext": {**container_security(read_only_root=True), "runAsUser": 65534},
        "readinessProbe": http_probe("/metrics", port, initial_delay=5, period=30),
        "livenessProbe": http_probe("/metrics", port, initial_delay=30, period=30),
    }
