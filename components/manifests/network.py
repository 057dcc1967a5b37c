"""NetworkPolicies: default deny, then each allowed path (DNS, HTTPS egress, the Pushgateway,
stores from their clients, monitoring, public ingress)."""

from __future__ import annotations

from components.manifests.base import (
    DB_CLIENT_LABEL,
    INGRESS_NAMESPACE,
    MONITORING_NAMESPACE,
    PUSHGATEWAY_PORT,
    Manifest,
    labels,
    metadata,
    selector,
)

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
