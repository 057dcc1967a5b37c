"""Shared pieces of every Kubernetes object: labels, metadata, namespaces, container and pod
security, resources, volumes, env, probes."""

from __future__ import annotations

from typing import Any

import pulumi

from components.catalog.spec import Resources

MANAGED_BY = "opsplane"
INGRESS_NAMESPACE = "ingress-nginx"
MONITORING_NAMESPACE = "monitoring"
PUSHGATEWAY_PORT = 9091
DB_CLIENT_LABEL = "opsplane.dev/db-client"
CHECKSUM_ANNOTATION = "opsplane.dev/secrets-checksum"
DATA_VOLUME = "data"  # a store's volumeClaimTemplate
RUNNER_UID = 10001  # the ops-runner image's user (automation/Dockerfile)
IMAGE_PINNING_ANNOTATION = "opsplane.dev/image-pinning"  # `<container>=digest|tag, ...`

Manifest = dict[str, Any]


def labels(app: str, component: str) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": f"{app}-{component}",
        "app.kubernetes.io/component": component,
        "app.kubernetes.io/part-of": app,
        "app.kubernetes.io/managed-by": MANAGED_BY,
    }


def selector(app: str, component: str) -> dict[str, str]:
    return {"app.kubernetes.io/name": f"{app}-{component}"}


def metadata(name: str, namespace: str, lbls: dict[str, str], **extra: Any) -> dict[str, Any]:
    return {"name": name, "namespace": namespace, "labels": lbls, **extra}


def namespace(name: str, app: str) -> Manifest:
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {
            "name": name,
            "labels": {
                **labels(app, "namespace"),
                "pod-security.kubernetes.io/enforce": "restricted",
            },
        },
    }


def claim_name(statefulset: str, ordinal: int = 0) -> str:
    """The PVC a StatefulSet's volumeClaimTemplate makes for one pod: `data-qr-redis-0`."""
    return f"{DATA_VOLUME}-{statefulset}-{ordinal}"


def container_security(read_only_root: bool) -> dict[str, Any]:
    return {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": read_only_root,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def pod_security(run_as_user: int) -> dict[str, Any]:
    return {
        "runAsNonRoot": True,
        "runAsUser": run_as_user,
        "runAsGroup": run_as_user,
        "fsGroup": run_as_user,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def resources(res: Resources) -> dict[str, Any]:
    return {
        "requests": {"cpu": res.cpu_request, "memory": res.memory_request},
        "limits": {"cpu": res.cpu_limit, "memory": res.memory_limit},
    }


def scratch_volumes(paths: tuple[str, ...]) -> tuple[list[Manifest], list[Manifest]]:
    """emptyDir volumes (and their mounts) for the paths a read-only-root image must write."""
    volumes = [{"name": f"scratch-{i}", "emptyDir": {}} for i in range(len(paths))]
    mounts = [{"name": f"scratch-{i}", "mountPath": p} for i, p in enumerate(paths)]
    return volumes, mounts


def pull_policy(image: str) -> str:
    """A digest names one image for ever (IfNotPresent); a tag can move (Always re-resolves it)."""
    return "IfNotPresent" if "@sha256:" in image else "Always"


def image_fields(image: Any) -> Manifest:
    """`image` and the `imagePullPolicy` that goes with how it is pinned (str or Output)."""
    policy = image.apply(pull_policy) if hasattr(image, "apply") else pull_policy(image)
    return {"image": image, "imagePullPolicy": policy}


def image_pinning(containers: list[Manifest]) -> pulumi.Input[str]:
    """What the render says about each image: `db=tag, exporter=digest` (config picks). An image
    the stack builds (PITR's server image) is an Output: the annotation waits for it."""
    names = [c["name"] for c in containers]
    images = [c["image"] for c in containers]

    def describe(refs: list[Any]) -> str:
        return ", ".join(
            f"{name}={'digest' if '@sha256:' in str(ref) else 'tag'}"
            for name, ref in zip(names, refs, strict=True)
        )

    if any(isinstance(image, pulumi.Output) for image in images):
        return pulumi.Output.all(*images).apply(describe)
    return describe(images)


def secret_volume(secret_name: str, mount_path: str) -> tuple[Manifest, Manifest]:
    """A Secret as read-only files (one per key) instead of environment variables."""
    volume = {"name": "secrets", "secret": {"secretName": secret_name, "defaultMode": 0o440}}
    return volume, {"name": "secrets", "mountPath": mount_path, "readOnly": True}


def env_from_secret(secret_name: str, keys: list[str]) -> list[Manifest]:
    return [
        {"name": key, "valueFrom": {"secretKeyRef": {"name": secret_name, "key": key}}}
        for key in keys
    ]


def plain_env(values: dict[str, Any]) -> list[Manifest]:
    return [
        {"name": k, "value": str(v) if isinstance(v, int | float) else v}
        for k, v in sorted(values.items())
    ]


def http_probe(path: str, port: int, *, initial_delay: int, period: int = 10) -> Manifest:
    return {
        "httpGet": {"path": path, "port": port},
        "initialDelaySeconds": initial_delay,
        "periodSeconds": period,
        "timeoutSeconds": 3,
        "failureThreshold": 3,
    }


def exec_probe(command: list[str]) -> Manifest:
    return {
        "exec": {"command": command},
        "initialDelaySeconds": 5,
        "periodSeconds": 10,
        "timeoutSeconds": 5,
        "failureThreshold": 3,
    }
