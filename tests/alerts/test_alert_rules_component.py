"""AlertRules under Pulumi's mock runtime: what it registers on each target."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pulumi
import pytest
import yaml
from pulumi.runtime import settings as runtime_settings

from components.alerting import manifests as am
from components.alerting.alert_rules import PROMETHEUS_IMAGE, AlertRules
from components.alerting.model import ScrapeTarget
from components.alerting.rules import AlertParams, build_rule_groups
from components.catalog import CATALOG
from tests.alerts.test_promtool_rules import run_promtool

QR_METRICS, QR_THRESHOLDS = CATALOG["qr"].metrics, CATALOG["qr"].thresholds
QUICKBITE_METRICS = CATALOG["quickbite"].metrics
QUICKBITE_THRESHOLDS = CATALOG["quickbite"].thresholds

PROMETHEUS_RULE = "kubernetes:monitoring.coreos.com/v1:PrometheusRule"
SERVICE_MONITOR = "kubernetes:monitoring.coreos.com/v1:ServiceMonitor"
ALERTMANAGER_CONFIG = "kubernetes:monitoring.coreos.com/v1alpha1:AlertmanagerConfig"
CONTAINER = "docker:index/container:Container"
REMOTE_IMAGE = "docker:index/remoteImage:RemoteImage"
DNS_1123 = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


@dataclass
class Registered:
    typ: str
    name: str
    inputs: dict[str, Any]


class RecordingMocks(pulumi.runtime.Mocks):
    """Records every `new_resource` call; RemoteImage gets an image id like the provider's."""

    def __init__(self) -> None:
        self.registered: list[Registered] = []

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict]:
        self.registered.append(Registered(args.typ, args.name, dict(args.inputs)))
        outputs = dict(args.inputs)
        if args.typ == REMOTE_IMAGE:
            outputs["imageId"] = "sha256:" + "ab" * 32
        return f"{args.name}-id", outputs

    def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict, list | None]:
        return {}, []

    def of_type(self, typ: str) -> list[Registered]:
        return [r for r in self.registered if r.typ == typ]


@pytest.fixture
def mocks() -> RecordingMocks:
    recorder = RecordingMocks()
    runtime_settings.ROOT.set(None)
    pulumi.runtime.set_mocks(recorder, project="opsplane", stack="test", preview=False)
    return recorder


GROUPS = build_rule_groups(
    "quickbite",
    QUICKBITE_METRICS,
    AlertParams(
        namespace="quickbite",
        runbook_base_url="https://example.test/runbook.md",
        thresholds=QUICKBITE_THRESHOLDS,
    ),
)
ALERTS = sorted({r.name for g in GROUPS for r in g.rules})
SCRAPE = [
    ScrapeTarget(
        "quickbite-backend",
        8080,
        port_name="http",
        path="/actuator/prometheus",
        host="backend",
        selector={"app.kubernetes.io/name": "quickbite-backend"},
    ),
    ScrapeTarget("quickbite-postgres-exporter", 9187, host="db-exporter"),
    ScrapeTarget("pushgateway", 9091, host="pushgateway", honor_labels=True),
]
RECEIVERS = {"P1": "https://pager.example.test/hook", "P2": "mailto:oncall@example.test"}
RULE_LABELS = {"release": "kube-prometheus-stack"}
LABELS = {"app.kubernetes.io/part-of": "quickbite", "app.kubernetes.io/component": "alerts"}


def kubernetes_rules(receivers: dict[str, str] | None = None) -> AlertRules:
    return AlertRules(
        "quickbite-alerts",
        groups=GROUPS,
        target="kubernetes",
        namespace="quickbite",
        scrape=SCRAPE,
        receivers=RECEIVERS if receivers is None else receivers,
        rule_labels=RULE_LABELS,
        labels=LABELS,
    )


def docker_rules() -> AlertRules:
    return AlertRules(
        "quickbite-alerts",
        groups=GROUPS,
        target="docker",
        namespace=None,
        scrape=SCRAPE,
        receivers=RECEIVERS,
        rule_labels=RULE_LABELS,
        labels=LABELS,
        network="quickbite",
        host_port=9091,
    )


def settled(component: AlertRules) -> pulumi.Output[list[str]]:
    """Resolves once every child has been registered with the mocks."""
    children = [
        component.prometheus_rule,
        component.alertmanager_config,
        *component.service_monitors,
        component.image,
        component.container,
    ]
    return pulumi.Output.all(*(c.id for c in children if c is not None))


def only(mocks: RecordingMocks, typ: str) -> Registered:
    found = mocks.of_type(typ)
    assert len(found) == 1, [r.name for r in found]
    return found[0]


def check_custom_resource(obj: Registered, api_version: str, kind: str) -> None:
    """CRDs have no schema in kubernetes-validate: check the object's shape ourselves."""
    assert obj.inputs["apiVersion"] == api_version
    assert obj.inputs["kind"] == kind
    meta = obj.inputs["metadata"]
    assert DNS_1123.match(meta["name"]) and len(meta["name"]) <= 63
    assert meta["namespace"] == "quickbite"
    assert meta["labels"] == {**LABELS, **RULE_LABELS}
    assert isinstance(obj.inputs["spec"], dict) and obj.inputs["spec"]


@pulumi.runtime.test
def test_prometheus_rule_carries_every_group(mocks: RecordingMocks) -> Any:
    component = kubernetes_rules()

    def check(_: Any) -> None:
        rule = only(mocks, PROMETHEUS_RULE)
        assert rule.name == "quickbite-alerts-rules"
        check_custom_resource(rule, "monitoring.coreos.com/v1", "PrometheusRule")
        groups = rule.inputs["spec"]["groups"]
        assert [g["name"] for g in groups] == [g.name for g in GROUPS]
        assert sorted(r["alert"] for g in groups for r in g["rules"]) == ALERTS
        for g in groups:
            for r in g["rules"]:
                assert r["labels"]["severity"] in {"critical", "warning", "info"}
                assert r["annotations"]["runbook_url"].endswith(f"#alert-{r['alert'].lower()}")

    return settled(component).apply(check)


@pulumi.runtime.test
def test_registered_prometheus_rule_spec_passes_promtool(
    mocks: RecordingMocks, tmp_path: Path
) -> Any:
    component = kubernetes_rules()

    def check(_: Any) -> None:
        spec = only(mocks, PROMETHEUS_RULE).inputs["spec"]
        (tmp_path / "spec.yml").write_text(yaml.safe_dump(spec))
        result = run_promtool("check", "rules", "spec.yml", cwd=tmp_path)
        assert result.returncode == 0, result.stdout + result.stderr
        assert f"SUCCESS: {len(ALERTS)} rules found" in result.stdout

    return settled(component).apply(check)


@pulumi.runtime.test
def test_one_service_monitor_per_scrape_target(mocks: RecordingMocks) -> Any:
    component = kubernetes_rules()

    def check(_: Any) -> None:
        monitors = {r.inputs["metadata"]["name"]: r for r in mocks.of_type(SERVICE_MONITOR)}
        assert sorted(monitors) == sorted(t.name for t in SCRAPE)
        for target in SCRAPE:
            monitor = monitors[target.name]
            assert monitor.name == f"quickbite-alerts-monitor-{target.name}"
            check_custom_resource(monitor, "monitoring.coreos.com/v1", "ServiceMonitor")
            spec = monitor.inputs["spec"]
            expected_selector = target.selector or {"app.kubernetes.io/name": target.name}
            assert spec["selector"] == {"matchLabels": expected_selector}
            assert spec["namespaceSelector"] == {"matchNames": ["quickbite"]}
            [endpoint] = spec["endpoints"]
            assert endpoint["port"] == target.port_name
            assert endpoint["path"] == target.path
            assert endpoint["interval"] == target.interval
            # alert selectors use job=<target name>, whatever the Service is called
            assert {"action": "replace", "targetLabel": "job", "replacement": target.name} in (
                endpoint["relabelings"]
            )
            assert endpoint.get("honorLabels", False) is target.honor_labels

    return settled(component).apply(check)


@pulumi.runtime.test
def test_alertmanager_config_routes_by_severity(mocks: RecordingMocks) -> Any:
    component = kubernetes_rules()

    def check(_: Any) -> None:
        config = only(mocks, ALERTMANAGER_CONFIG)
        assert config.name == "quickbite-alerts-routing"
        check_custom_resource(config, "monitoring.coreos.com/v1alpha1", "AlertmanagerConfig")
        spec = config.inputs["spec"]
        receivers = {r["name"]: r for r in spec["receivers"]}
        route = spec["route"]
        assert route["receiver"] in receivers
        assert "webhookConfigs" not in receivers[route["receiver"]]
        by_severity = {}
        for sub in route["routes"]:
            [matcher] = sub["matchers"]
            assert matcher["name"] == "severity" and matcher["matchType"] == "="
            by_severity[matcher["value"]] = receivers[sub["receiver"]]
        assert sorted(by_severity) == ["critical", "warning"]  # P1, P2; P3 has no receiver
        assert by_severity["critical"]["webhookConfigs"][0]["url"] == RECEIVERS["P1"]
        assert by_severity["warning"]["emailConfigs"][0]["to"] == "oncall@example.test"

    return settled(component).apply(check)


@pulumi.runtime.test
def test_no_alertmanager_config_without_receivers(mocks: RecordingMocks) -> Any:
    component = kubernetes_rules(receivers={})

    def check(_: Any) -> None:
        assert mocks.of_type(ALERTMANAGER_CONFIG) == []
        assert len(mocks.of_type(PROMETHEUS_RULE)) == 1

    return settled(component).apply(check)


@pulumi.runtime.test
def test_children_are_parented_to_the_component(mocks: RecordingMocks) -> Any:
    component = kubernetes_rules()
    children = [
        component.prometheus_rule,
        component.alertmanager_config,
        *component.service_monitors,
    ]
    assert all(children) and len(children) == 2 + len(SCRAPE)

    def check(urns: list[str]) -> None:
        for urn in urns:
            assert "::opsplane:index:AlertRules$kubernetes:monitoring.coreos.com/" in urn, urn
            assert urn.split("::")[-1].startswith("quickbite-alerts-"), urn

    return pulumi.Output.all(*(c.urn for c in children)).apply(check)


@pulumi.runtime.test
def test_rule_names_output_lists_every_alert(mocks: RecordingMocks) -> Any:
    component = kubernetes_rules()
    return component.rule_names.apply(lambda names: assert_equal(sorted(names), ALERTS))


def assert_equal(got: Any, expected: Any) -> None:
    assert got == expected


def uploads(container: Registered) -> dict[str, str]:
    return {u["file"]: u["content"] for u in container.inputs["uploads"]}


@pulumi.runtime.test
def test_dev_prometheus_container(mocks: RecordingMocks) -> Any:
    component = docker_rules()

    def check(urn: str) -> None:
        assert "::opsplane:index:AlertRules$docker:index/container:Container::" in urn
        assert mocks.of_type(PROMETHEUS_RULE) == []
        image = only(mocks, REMOTE_IMAGE)
        assert image.inputs["name"] == PROMETHEUS_IMAGE
        assert re.fullmatch(r"prom/prometheus:v\d+\.\d+\.\d+", PROMETHEUS_IMAGE)
        container = only(mocks, CONTAINER)
        assert container.name == "quickbite-alerts-prometheus"
        assert container.inputs["image"] == "sha256:" + "ab" * 32
        assert container.inputs["networksAdvanced"] == [{"name": "quickbite"}]
        assert {"internal": 9090, "external": 9091, "ip": "127.0.0.1"} in container.inputs["ports"]
        assert f"--config.file={am.CONFIG_FILE}" in container.inputs["command"]
        assert "/-/healthy" in " ".join(container.inputs["healthcheck"]["tests"])
        assert container.inputs["restart"] == "unless-stopped"
        files = uploads(container)
        rules = yaml.safe_load(files[am.RULES_FILE])
        assert sorted(r["alert"] for g in rules["groups"] for r in g["rules"]) == ALERTS
        config = yaml.safe_load(files[am.CONFIG_FILE])
        assert config["rule_files"] == [am.RULES_FILE]
        jobs = {c["job_name"]: c for c in config["scrape_configs"]}
        assert jobs["quickbite-backend"]["static_configs"] == [{"targets": ["backend:8080"]}]
        assert jobs["quickbite-backend"]["metrics_path"] == "/actuator/prometheus"
        assert jobs["pushgateway"]["honor_labels"] is True

    assert component.container is not None
    return component.container.urn.apply(check)


@pulumi.runtime.test
def test_dev_prometheus_config_passes_promtool(mocks: RecordingMocks, tmp_path: Path) -> Any:
    component = docker_rules()

    def check(_: Any) -> None:
        files = uploads(only(mocks, CONTAINER))
        (tmp_path / "rules.yml").write_text(files[am.RULES_FILE])
        config = yaml.safe_load(files[am.CONFIG_FILE])
        config["rule_files"] = ["rules.yml"]  # the container path, relocated for the check
        (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
        result = run_promtool("check", "config", "prometheus.yml", cwd=tmp_path)
        assert result.returncode == 0, result.stdout + result.stderr
        assert f"SUCCESS: {len(ALERTS)} rules found" in result.stdout

    return settled(component).apply(check)


def test_kubernetes_target_needs_a_namespace(mocks: RecordingMocks) -> None:
    with pytest.raises(ValueError, match="needs a namespace"):
        AlertRules(
            "x-alerts",
            groups=GROUPS,
            target="kubernetes",
            namespace=None,
            scrape=[],
            receivers={},
            rule_labels={},
            labels={},
        )


def test_docker_target_needs_a_network(mocks: RecordingMocks) -> None:
    with pytest.raises(ValueError, match="needs a network"):
        AlertRules(
            "x-alerts",
            groups=GROUPS,
            target="docker",
            namespace=None,
            scrape=[],
            receivers={},
            rule_labels={},
            labels={},
        )
