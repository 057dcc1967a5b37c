"""AlertRules: one system's alert rule groups, where its Prometheus will load them.

kubernetes: a PrometheusRule, one ServiceMonitor per scrape target and an AlertmanagerConfig that
routes by `severity` (Prometheus Operator / kube-prometheus-stack).
docker: a Prometheus container on the app's network that loads the same rule file and scrapes the
dev containers, so alerts can be watched locally at http://127.0.0.1:<host_port>/alerts.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

import pulumi
import pulumi_docker as docker
import pulumi_kubernetes as k8s

from components.alerting import manifests as am
from components.alerting.model import RuleGroup, ScrapeTarget
from components.alerting.rules import alert_names
from components.docker_host import container_labels

PROMETHEUS_IMAGE = "prom/prometheus:v2.53.2"  # pinned LTS; rules need only 2.42
PROMETHEUS_PORT = 9090


class AlertRules(pulumi.ComponentResource):
    """Alert rules, scraping and routing of one system on one target."""

    rule_names: pulumi.Output[list[str]]
    groups: list[RuleGroup]
    prometheus_rule: k8s.apiextensions.CustomResource | None = None
    service_monitors: list[k8s.apiextensions.CustomResource]
    alertmanager_config: k8s.apiextensions.CustomResource | None = None
    image: docker.RemoteImage | None = None
    container: docker.Container | None = None

    def __init__(
        self,
        name: str,
        *,
        groups: Sequence[RuleGroup],
        target: Literal["docker", "kubernetes"],
        namespace: pulumi.Input[str] | None,
        scrape: Sequence[ScrapeTarget],
        receivers: Mapping[str, str],
        rule_labels: Mapping[str, str],
        labels: Mapping[str, str],
        network: pulumi.Input[str] | None = None,
        host_port: int | None = None,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("opsplane:index:AlertRules", name, None, opts)
        self.groups = list(groups)
        self.service_monitors = []
        child = pulumi.ResourceOptions(parent=self)
        if target == "kubernetes":
            if namespace is None:
                raise ValueError(f"{name}: the kubernetes target needs a namespace")
            self._declare_kubernetes(
                name, namespace, scrape, receivers, {**labels, **rule_labels}, child
            )
        elif target == "docker":
            if network is None:
                raise ValueError(f"{name}: the docker target needs a network")
            self._declare_docker(name, network, scrape, labels, host_port, child)
        else:
            raise ValueError(f"{name}: unknown target {target!r}")
        self.rule_names = pulumi.Output.from_input(alert_names(self.groups))
        self.register_outputs({"rule_names": self.rule_names})

    def _declare_kubernetes(
        self,
        name: str,
        namespace: pulumi.Input[str],
        scrape: Sequence[ScrapeTarget],
        receivers: Mapping[str, str],
        labels: dict[str, str],
        child: pulumi.ResourceOptions,
    ) -> None:
        self.prometheus_rule = self._custom_resource(
            f"{name}-rules", am.prometheus_rule(name, namespace, self.groups, labels), child
        )
        self.service_monitors = [
            self._custom_resource(
                f"{name}-monitor-{target.name}",
                am.service_monitor_for(target, namespace, labels),
                child,
            )
            for target in scrape
        ]
        if receivers:
            self.alertmanager_config = self._custom_resource(
                f"{name}-routing", am.alertmanager_config(name, namespace, receivers, labels), child
            )

    @staticmethod
    def _custom_resource(
        resource_name: str, manifest: dict[str, Any], opts: pulumi.ResourceOptions
    ) -> k8s.apiextensions.CustomResource:
        return k8s.apiextensions.CustomResource(
            resource_name,
            api_version=manifest["apiVersion"],
            kind=manifest["kind"],
            metadata=manifest["metadata"],
            spec=manifest["spec"],
            opts=opts,
        )

    def _declare_docker(
        self,
        name: str,
        network: pulumi.Input[str],
        scrape: Sequence[ScrapeTarget],
        labels: Mapping[str, str],
        host_port: int | None,
        child: pulumi.ResourceOptions,
    ) -> None:
        self.image = docker.RemoteImage(
            f"{name}-image", name=PROMETHEUS_IMAGE, keep_locally=True, opts=child
        )
        self.container = docker.Container(
            f"{name}-prometheus",
            name=f"{name}-prometheus",
            image=self.image.image_id,
            command=[
                f"--config.file={am.CONFIG_FILE}",
                "--storage.tsdb.path=/prometheus",
                "--storage.tsdb.retention.time=2d",
                "--web.enable-lifecycle",
            ],
            uploads=[
                docker.ContainerUploadArgs(
                    file=am.CONFIG_FILE, content=am.prometheus_config(scrape, [am.RULES_FILE])
                ),
                docker.ContainerUploadArgs(
                    file=am.RULES_FILE, content=am.rule_file_yaml(self.groups)
                ),
            ],
            networks_advanced=[docker.ContainerNetworksAdvancedArgs(name=network)],
            ports=[
                docker.ContainerPortArgs(
                    internal=PROMETHEUS_PORT, external=host_port, ip="127.0.0.1"
                )
            ]
            if host_port
            else None,
            labels=container_labels(labels),
            healthcheck=docker.ContainerHealthcheckArgs(
                # the image is busybox-based: wget is there, curl is not
                tests=["CMD", "wget", "-qO-", f"http://127.0.0.1:{PROMETHEUS_PORT}/-/healthy"],
                interval="15s",
                timeout="3s",
                retries=3,
                start_period="10s",
            ),
            restart="unless-stopped",
            opts=child,
        )
