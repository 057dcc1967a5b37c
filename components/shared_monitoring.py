"""SharedMonitoring: what the stack's monitoring needs once, not per app (prod).

The backup and restore-drill Jobs push their metrics to the cluster's Pushgateway; this
ServiceMonitor has Prometheus scrape it (with `honorLabels`, so the pushed `app`/`part` labels
survive) — the backup alerts read exactly those series.
"""

from __future__ import annotations

from collections.abc import Mapping

import pulumi
import pulumi_kubernetes as k8s

from components.alerting import manifests as am
from components.alerting.model import ScrapeTarget

MONITORING_NAMESPACE = "monitoring"
PUSHGATEWAY = ScrapeTarget(
    name="prometheus-pushgateway",
    port=9091,
    port_name="http",
    namespace=MONITORING_NAMESPACE,
    honor_labels=True,
    selector={"app.kubernetes.io/name": "prometheus-pushgateway"},
)


class SharedMonitoring(pulumi.ComponentResource):
    def __init__(
        self, name: str, *, labels: Mapping[str, str], opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("opsplane:index:SharedMonitoring", name, None, opts)
        manifest = am.service_monitor_for(PUSHGATEWAY, MONITORING_NAMESPACE, labels)
        k8s.apiextensions.CustomResource(
            f"{name}-pushgateway",
            api_version=manifest["apiVersion"],
            kind=manifest["kind"],
            metadata=manifest["metadata"],
            spec=manifest["spec"],
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.register_outputs({})
