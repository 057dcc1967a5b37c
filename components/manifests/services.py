"""Services and ingress: Services, metrics Services, the ingress, its security headers and
admin access."""

from __future__ import annotations

from components.manifests.base import Manifest, labels, metadata, selector


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
