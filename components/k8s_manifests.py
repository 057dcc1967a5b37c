"""Kubernetes object shapes for the prod target: pure functions that return manifests as dicts.

Components register these through pulumi-kubernetes; the render writes them as YAML; tests
validate them with kubernetes-validate. Values may be Pulumi Outputs (images, checksums); the
shapes themselves never depend on a cluster.
"""

from __future__ import annotations

from typing import Any

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


def image_pinning(containers: list[Manifest]) -> str:
    """What the render says about each image: `db=tag, exporter=digest` (config picks)."""
    return ", ".join(
        f"{c['name']}={'digest' if '@sha256:' in c['image'] else 'tag'}" for c in containers
    )


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


def secret(name: str, ns: str, lbls: dict[str, str], string_data: Any) -> Manifest:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": metadata(name, ns, lbls),
        "type": "Opaque",
        "stringData": string_data,
    }


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


def service(
    *, name: str, ns: str, app: str, component: str, port: int, target_port: int
) -> Manifest:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata(name, ns, labels(app, component)),
        "spec": {
            "type": "ClusterIP",
            "selector": selector(app, component),
            "ports": [{"name": "http", "port": port, "targetPort": target_port, "protocol": "TCP"}],
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
SECURITY_HEADERS = {
    "Strict-Transport-Security": "max-age=31536000; includeSubDomains",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "strict-origin-when-cross-origin",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "frame-ancestors 'none'",
}
CUSTOM_HEADERS_ANNOTATION = "nginx.ingress.kubernetes.io/custom-headers"


def security_headers(name: str, ns: str, app: str) -> Manifest:
    """The ConfigMap ingress-nginx's `custom-headers` annotation points at (no snippets: the
    controller's `global-allowed-response-headers` must list these names; docs/runbook.md)."""
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": metadata(name, ns, labels(app, "ingress")),
        "data": dict(SECURITY_HEADERS),
    }


def admin_access(
    allow_cidrs: list[str], auth_url: str | None, auth_signin: str | None
) -> dict[str, str]:
    """ingress-nginx annotations that admit only `allow_cidrs`, optionally behind external auth."""
    notes = {"nginx.ingress.kubernetes.io/whitelist-source-range": ",".join(allow_cidrs)}
    if auth_url:
        notes["nginx.ingress.kubernetes.io/auth-url"] = auth_url
    if auth_signin:
        notes["nginx.ingress.kubernetes.io/auth-signin"] = auth_signin
    return notes


def ingress(
    *, name: str, ns: str, app: str, rules: list[tuple[str, str, int]], annotations: dict[str, str]
) -> Manifest:
    """rules: (host, service name, service port)."""
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": metadata(name, ns, labels(app, "ingress"), annotations=annotations),
        "spec": {
            "ingressClassName": "nginx",
            "tls": [{"hosts": [h for h, _, _ in rules], "secretName": f"{name}-tls"}],
            "rules": [
                {
                    "host": host,
                    "http": {
                        "paths": [
                            {
                                "path": "/",
                                "pathType": "Prefix",
                                "backend": {"service": {"name": svc, "port": {"number": port}}},
                            }
                        ]
                    },
                }
                for host, svc, port in rules
            ],
        },
    }


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


def metrics_service(*, name: str, ns: str, app: str, component: str, port: int) -> Manifest:
    """A Service for an exporter; its name is the Prometheus job the alert rules use."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata(name, ns, {**labels(app, component), "opsplane.dev/metrics": name}),
        "spec": {
            "type": "ClusterIP",
            "selector": selector(app, component),
            "ports": [{"name": "metrics", "port": port, "targetPort": port, "protocol": "TCP"}],
        },
    }


def exec_probe(command: list[str]) -> Manifest:
    return {
        "exec": {"command": command},
        "initialDelaySeconds": 5,
        "periodSeconds": 10,
        "timeoutSeconds": 5,
        "failureThreshold": 3,
    }


# --- network policies ---------------------------------------------------------------------------


def _policy(name: str, ns: str, app: str, spec: Manifest) -> Manifest:
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": metadata(name, ns, labels(app, "network-policy")),
        "spec": spec,
    }


def default_deny(ns: str, app: str) -> Manifest:
    return _policy(
        f"{app}-default-deny", ns, app, {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}
    )


def allow_dns_and_app_egress(ns: str, app: str) -> Manifest:
    """Every pod may resolve names and talk to its own app's pods; nothing else by default."""
    return _policy(
        f"{app}-allow-dns-and-app",
        ns,
        app,
        {
            "podSelector": {},
            "policyTypes": ["Egress"],
            "egress": [
                {
                    "to": [
                        {
                            "namespaceSelector": {},
                            "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}},
                        }
                    ],
                    "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}],
                },
                {"to": [{"podSelector": {"matchLabels": {"app.kubernetes.io/part-of": app}}}]},
            ],
        },
    )


def _components(components: list[str]) -> Manifest:
    return {
        "matchExpressions": [
            {"key": "app.kubernetes.io/component", "operator": "In", "values": components}
        ]
    }


def allow_https_egress(ns: str, app: str, components: list[str]) -> Manifest:
    """Services that call out (S3, Stripe, Auth0) and the ops-runner jobs may use HTTPS."""
    return _policy(
        f"{app}-allow-https-egress",
        ns,
        app,
        {
            "podSelector": _components(components),
            "policyTypes": ["Egress"],
            "egress": [{"ports": [{"protocol": "TCP", "port": 443}]}],
        },
    )


def _ingress_only(
    name: str, ns: str, app: str, component: str, sources: list[Manifest], port: int
) -> Manifest:
    """Pods of `component` accept `sources` on `port` and nothing else (default deny covers the
    rest)."""
    return _policy(
        name,
        ns,
        app,
        {
            "podSelector": {"matchLabels": selector(app, component)},
            "policyTypes": ["Ingress"],
            "ingress": [{"from": sources, "ports": [{"protocol": "TCP", "port": port}]}],
        },
    )


def _namespace_source(name: str) -> Manifest:
    return {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": name}}}


def allow_pushgateway_egress(ns: str, app: str, components: list[str]) -> Manifest:
    """Backup and drill jobs push their result metrics to the monitoring namespace's Pushgateway
    (the backup alerts read them); default deny would otherwise drop the push."""
    return _policy(
        f"{app}-allow-pushgateway",
        ns,
        app,
        {
            "podSelector": _components(components),
            "policyTypes": ["Egress"],
            "egress": [
                {
                    "to": [_namespace_source(MONITORING_NAMESPACE)],
                    "ports": [{"protocol": "TCP", "port": PUSHGATEWAY_PORT}],
                }
            ],
        },
    )


def allow_store_from_clients(ns: str, app: str, component: str, port: int) -> Manifest:
    """The database/cache accepts connections only from its own app's labelled clients."""
    clients = {"app.kubernetes.io/part-of": app, DB_CLIENT_LABEL: "true"}
    return _ingress_only(
        f"{app}-{component}-from-clients", ns, app, component,
        [{"podSelector": {"matchLabels": clients}}], port,
    )  # fmt: skip


def allow_monitoring(ns: str, app: str, component: str, port: int) -> Manifest:
    """Prometheus (monitoring namespace) may scrape a store's exporter port, nothing more."""
    return _ingress_only(
        f"{app}-{component}-metrics", ns, app, component,
        [_namespace_source(MONITORING_NAMESPACE)], port,
    )  # fmt: skip


def allow_service_ingress(ns: str, app: str, component: str, port: int, public: bool) -> Manifest:
    """A service accepts its app's pods, Prometheus, and (when public) the ingress controller."""
    sources: list[Manifest] = [
        {"podSelector": {"matchLabels": {"app.kubernetes.io/part-of": app}}},
        _namespace_source(MONITORING_NAMESPACE),
    ]
    if public:
        sources.append(_namespace_source(INGRESS_NAMESPACE))
    return _ingress_only(f"{app}-{component}-ingress", ns, app, component, sources, port)


# --- jobs ---------------------------------------------------------------------------------------


def job_pod_spec(
    *,
    app: str,
    component: str,
    image: Any,
    args: Any,  # list[str], or an Output of one
    secret_name: str,
    secret_keys: list[str],
    env: dict[str, Any],
    service_account: str,
    run_as_user: int = RUNNER_UID,
    claims: dict[str, str] | None = None,
) -> Manifest:
    """claims: mount path -> PersistentVolumeClaim (a stopped store's data the task writes; the
    pod then runs as the store's user, so what it writes stays the store's)."""
    mounts = [{"name": "tmp", "mountPath": "/tmp"}]  # noqa: S108 container path, emptyDir
    volumes: list[Manifest] = [{"name": "tmp", "emptyDir": {}}]
    for i, (path, claim) in enumerate(sorted((claims or {}).items())):
        mounts.append({"name": f"claim-{i}", "mountPath": path})
        volumes.append({"name": f"claim-{i}", "persistentVolumeClaim": {"claimName": claim}})
    return {
        "metadata": {"labels": {**labels(app, component), DB_CLIENT_LABEL: "true"}},
        "spec": {
            "restartPolicy": "Never",
            "serviceAccountName": service_account,
            # IRSA needs no API token: EKS' pod identity webhook projects its own `aws-iam-token`.
            "automountServiceAccountToken": False,
            "securityContext": pod_security(run_as_user),
            "containers": [
                {
                    "name": component,
                    **image_fields(image),
                    "args": args,
                    "env": plain_env(env) + env_from_secret(secret_name, secret_keys),
                    "resources": resources(Resources("100m", "128Mi", "1", "256Mi")),
                    "securityContext": container_security(read_only_root=True),
                    "volumeMounts": mounts,
                }
            ],
            "volumes": volumes,
        },
    }


def cronjob(
    *, name: str, ns: str, app: str, component: str, schedule: str, pod: Manifest
) -> Manifest:
    return {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": metadata(name, ns, labels(app, component)),
        "spec": {
            "schedule": schedule,
            "timeZone": "Etc/UTC",
            "concurrencyPolicy": "Forbid",
            "startingDeadlineSeconds": 600,
            "successfulJobsHistoryLimit": 3,
            "failedJobsHistoryLimit": 5,
            "jobTemplate": {
                "metadata": {"labels": labels(app, component)},
                "spec": {"backoffLimit": 1, "activeDeadlineSeconds": 6 * 3600, "template": pod},
            },
        },
    }


def job(*, name: str, ns: str, app: str, component: str, pod: Manifest) -> Manifest:
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": metadata(name, ns, labels(app, component)),
        "spec": {
            "backoffLimit": 0,
            "activeDeadlineSeconds": 6 * 3600,
            "ttlSecondsAfterFinished": 86400,
            "template": pod,
        },
    }


def service_account(name: str, ns: str, app: str, role_arn: Any) -> Manifest:
    return {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": metadata(
            name,
            ns,
            labels(app, "ops-runner"),
            annotations={"eks.amazonaws.com/role-arn": role_arn},
        ),
    }
