"""Pure functions that render alerting documents as plain dicts / YAML text.

Kubernetes (prod): PrometheusRule, ServiceMonitor (monitoring.coreos.com/v1) and AlertmanagerConfig
(monitoring.coreos.com/v1alpha1) for a Prometheus Operator / kube-prometheus-stack install.
Docker (dev): `prometheus.yml` and the rule file for a plain Prometheus container.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import yaml

from components.alerting.model import SEVERITY_BY_PRIORITY, RuleGroup, ScrapeTarget
from components.alerting.rules import to_rule_file

MONITORING_V1 = "monitoring.coreos.com/v1"
MONITORING_V1ALPHA1 = "monitoring.coreos.com/v1alpha1"
# kube-prometheus-stack's default ruleSelector/serviceMonitorSelector match the Helm release label.
DEFAULT_SELECTOR_LABELS: dict[str, str] = {"release": "kube-prometheus-stack"}
# /etc/prometheus exists in the image: uploads need no directory of their own
RULES_FILE = "/etc/prometheus/opsplane-rules.yml"
CONFIG_FILE = "/etc/prometheus/prometheus.yml"

# `namespace` may be a plain string or a Pulumi Output[str]; these functions only place it.
Namespace = Any


def _metadata(name: str, namespace: Namespace, labels: Mapping[str, str]) -> dict[str, Any]:
    return {"name": name, "namespace": namespace, "labels": dict(labels)}


def prometheus_rule(
    name: str,
    namespace: Namespace,
    groups: Sequence[RuleGroup],
    labels: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """A PrometheusRule whose spec is exactly the rule file the promtool tests check."""
    return {
        "apiVersion": MONITORING_V1,
        "kind": "PrometheusRule",
        "metadata": _metadata(
            name, namespace, DEFAULT_SELECTOR_LABELS if labels is None else labels
        ),
        "spec": to_rule_file(groups),
    }


def service_monitor(
    name: str,
    namespace: Namespace,
    selector_labels: Mapping[str, str],
    port_name: str,
    path: str = "/metrics",
    interval: str = "30s",
    *,
    job: str | None = None,
    honor_labels: bool = False,
    labels: Mapping[str, str] | None = None,
    service_namespace: str | None = None,
) -> dict[str, Any]:
    """A ServiceMonitor (in `namespace`) for one port of a Service in `service_namespace`
    (default: the same namespace). The `job` label is set to `job` (default: `name`)
    so alert selectors do not depend on the Service's name."""
    endpoint: dict[str, Any] = {
        "port": port_name,
        "path": path,
        "interval": interval,
        "relabelings": [{"action": "replace", "targetLabel": "job", "replacement": job or name}],
    }
    if honor_labels:
        endpoint["honorLabels"] = True
    return {
        "apiVersion": MONITORING_V1,
        "kind": "ServiceMonitor",
        "metadata": _metadata(
            name, namespace, DEFAULT_SELECTOR_LABELS if labels is None else labels
        ),
        "spec": {
            "selector": {"matchLabels": dict(selector_labels)},
            "namespaceSelector": {"matchNames": [service_namespace or namespace]},
            "endpoints": [endpoint],
        },
    }


def service_monitor_for(
    target: ScrapeTarget, namespace: Namespace, labels: Mapping[str, str] | None = None
) -> dict[str, Any]:
    selector = target.selector or {"app.kubernetes.io/name": target.name}
    return service_monitor(
        target.name,
        namespace,
        selector,
        target.port_name,
        target.path,
        target.interval,
        job=target.name,
        honor_labels=target.honor_labels,
        labels=labels,
        service_namespace=target.namespace,
    )


def severity_of(key: str) -> str:
    """Receiver keys may be priorities (`P1`) or severities (`critical`)."""
    if key in SEVERITY_BY_PRIORITY:
        return SEVERITY_BY_PRIORITY[key]
    if key in SEVERITY_BY_PRIORITY.values():
        return key
    known = sorted([*SEVERITY_BY_PRIORITY, *SEVERITY_BY_PRIORITY.values()])
    raise ValueError(f"unknown severity {key!r} in alert receivers; use one of {known}")


def receiver(name: str, destination: str) -> dict[str, Any]:
    """An AlertmanagerConfig receiver from a config value: an `http(s)://` URL is a webhook,
    `mailto:<address>` an e-mail; anything else is a receiver without integrations (it shows
    in Alertmanager, delivers nothing) so a placeholder name never pages a stranger."""
    if destination.startswith(("http://", "https://")):
        return {"name": name, "webhookConfigs": [{"url": destination, "sendResolved": True}]}
    if destination.startswith("mailto:"):
        to = destination.removeprefix("mailto:")
        return {"name": name, "emailConfigs": [{"to": to, "sendResolved": True}]}
    return {"name": name}


def alertmanager_config(
    name: str,
    namespace: Namespace,
    receivers_by_severity: Mapping[str, str],
    labels: Mapping[str, str] | None = None,
    group_by: Sequence[str] = ("alertname", "app", "job"),
) -> dict[str, Any]:
    """Route each severity to its receiver (`{severity or priority: destination}`).

    Keys may be priorities (P1) or severities (critical); see `receiver` for destinations.
    Severities without a receiver fall to the root route's empty receiver (dropped), so a
    missing key is a visible choice in config rather than an accidental page. The operator adds
    a `namespace="<namespace>"` matcher itself; every opsplane alert carries that label.
    """
    null = f"{name}-null"
    receivers: list[dict[str, Any]] = [{"name": null}]
    routes: list[dict[str, Any]] = []
    for severity, destination in sorted(
        (severity_of(key), value) for key, value in receivers_by_severity.items()
    ):
        receivers.append(receiver(f"{name}-{severity}", destination))
        routes.append(
            {
                "receiver": f"{name}-{severity}",
                "matchers": [{"name": "severity", "value": severity, "matchType": "="}],
            }
        )
    return {
        "apiVersion": MONITORING_V1ALPHA1,
        "kind": "AlertmanagerConfig",
        "metadata": _metadata(
            name, namespace, DEFAULT_SELECTOR_LABELS if labels is None else labels
        ),
        "spec": {
            "route": {
                "receiver": null,
                "groupBy": list(group_by),
                "groupWait": "30s",
                "groupInterval": "5m",
                "repeatInterval": "4h",
                "routes": routes,
            },
            "receivers": receivers,
        },
    }


def scrape_config(target: ScrapeTarget) -> dict[str, Any]:
    host = target.host or target.name
    config: dict[str, Any] = {
        "job_name": target.name,
        "metrics_path": target.path,
        "scrape_interval": target.interval,
        "static_configs": [{"targets": [f"{host}:{target.port}"]}],
    }
    if target.honor_labels:
        config["honor_labels"] = True
    return config


def prometheus_config_dict(
    scrape_targets: Iterable[ScrapeTarget],
    rule_files: Sequence[str] = (RULES_FILE,),
    evaluation_interval: str = "30s",
) -> dict[str, Any]:
    return {
        "global": {"scrape_interval": "30s", "evaluation_interval": evaluation_interval},
        "rule_files": list(rule_files),
        "scrape_configs": [scrape_config(t) for t in scrape_targets],
    }


def prometheus_config(
    scrape_targets: Iterable[ScrapeTarget],
    rule_files: Sequence[str] = (RULES_FILE,),
    evaluation_interval: str = "30s",
) -> str:
    """`prometheus.yml` for the dev Prometheus container."""
    return to_yaml(prometheus_config_dict(scrape_targets, rule_files, evaluation_interval))


class _BlockDumper(yaml.SafeDumper):
    """Multi-line strings (PromQL) as `|` blocks so rule files stay readable."""


def _str_representer(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_BlockDumper.add_representer(str, _str_representer)


def to_yaml(document: Any) -> str:
    return yaml.dump(document, Dumper=_BlockDumper, sort_keys=False, width=100)


def rule_file_yaml(groups: Sequence[RuleGroup]) -> str:
    """The rule file text Prometheus loads (and promtool checks)."""
    return to_yaml(to_rule_file(groups))
