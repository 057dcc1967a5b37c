"""The rule builder and the manifest functions, without promtool."""

from __future__ import annotations

import re
from dataclasses import replace

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from components.alerting import manifests as am
from components.alerting.model import ScrapeTarget
from components.alerting.rules import (
    AlertParams,
    build_rule_groups,
    num,
    rule_to_dict,
    to_rule_file,
)
from components.catalog import CATALOG

QR_METRICS, QR_THRESHOLDS = CATALOG["qr"].metrics, CATALOG["qr"].thresholds
QUICKBITE_METRICS = CATALOG["quickbite"].metrics
QUICKBITE_THRESHOLDS = CATALOG["quickbite"].thresholds

BASE = "https://example.test/docs/runbook.md"
KUBERNETES_ONLY = {"DiskUsageHigh", "OOMKilled", "CrashLooping", "CronJobFailing"}


def params(app: str, **changes: object) -> AlertParams:
    thresholds = QR_THRESHOLDS if app == "qr" else QUICKBITE_THRESHOLDS
    return replace(
        AlertParams(namespace=app, runbook_base_url=BASE, thresholds=thresholds), **changes
    )


def rules_of(app: str, **changes: object) -> dict[str, dict]:
    metrics = QR_METRICS if app == "qr" else QUICKBITE_METRICS
    groups = build_rule_groups(app, metrics, params(app, **changes))
    return {r.name: rule_to_dict(r) for g in groups for r in g.rules}


@pytest.mark.parametrize("app", ["qr", "quickbite"])
def test_runbook_url_points_at_the_alert_section(app: str) -> None:
    for name, rule in rules_of(app).items():
        assert rule["annotations"]["runbook_url"] == f"{BASE}#alert-{name.lower()}"
        assert rule["annotations"]["summary"] and rule["annotations"]["description"]


@pytest.mark.parametrize("app", ["qr", "quickbite"])
def test_priority_and_severity_labels_agree(app: str) -> None:
    table = {"P1": "critical", "P2": "warning", "P3": "info"}
    for rule in rules_of(app).values():
        assert table[rule["labels"]["priority"]] == rule["labels"]["severity"]
        assert rule["labels"]["app"] == app
        assert rule["labels"]["namespace"] == app


def test_runbook_alerts_of_each_system_are_present() -> None:
    qr, quickbite = set(rules_of("qr")), set(rules_of("quickbite"))
    # QR runbook: HighErrorRate, DatabaseConnectionPoolExhausted, SlowQueries (→ HighLatency p95)
    assert {"HighErrorRate", "DatabaseConnectionPoolExhausted", "HighLatency"} <= qr
    # QuickBite runbook's seven
    assert {
        "BackendDown", "HighLatency", "PaymentFailureRate", "WebhookErrors",
        "DiskUsageHigh", "OOMKilled", "WebSocketDisconnects",
    } <= quickbite  # fmt: skip
    added = {
        "BackupMissing", "RestoreDrillFailed", "RestoreDrillMissing", "CronJobFailing",
        "DatabaseDown", "RedisDown", "ErrorBudgetBurnFast", "ErrorBudgetBurnSlow", "CrashLooping",
    }  # fmt: skip
    assert added <= qr and added <= quickbite
    # metrics a system does not expose switch their alerts off
    assert not {"PaymentFailureRate", "WebhookErrors", "WebSocketDisconnects"} & qr
    assert "DatabaseConnectionPoolExhausted" not in quickbite


def test_kubernetes_alerts_can_be_left_out() -> None:
    with_k8s = set(rules_of("qr"))
    without = set(rules_of("qr", kubernetes_alerts=False))
    assert with_k8s - without == KUBERNETES_ONLY


@pytest.mark.parametrize("size", [10, 20, 37])
def test_pool_threshold_is_derived_from_the_pool_size(size: int) -> None:
    expr = rules_of("qr", db_pool_size=size)["DatabaseConnectionPoolExhausted"]["expr"]
    assert expr.endswith(f"> {num(size * 0.9)}")


def test_latency_uses_the_systems_quantile_over_bucket_rates() -> None:
    qr = rules_of("qr")["HighLatency"]["expr"]
    quickbite = rules_of("quickbite")["HighLatency"]["expr"]
    assert qr.startswith("histogram_quantile(0.95, sum by (job, le) (rate(")
    assert "http_request_duration_seconds_bucket{" in qr
    assert quickbite.startswith("histogram_quantile(0.99, sum by (job, le) (rate(")
    assert "http_server_requests_seconds_bucket{" in quickbite


def test_burn_rate_pair_uses_the_slo_target() -> None:
    rules = rules_of("quickbite", slo_target=0.995)
    fast, slow = rules["ErrorBudgetBurnFast"]["expr"], rules["ErrorBudgetBurnSlow"]["expr"]
    assert fast.count("> 14.4 * (1 - 0.995)") == 2
    assert "[1h]" in fast and "[5m]" in fast
    assert slow.count("> 6 * (1 - 0.995)") == 2
    assert "[6h]" in slow and "[30m]" in slow


SELECTOR = re.compile(r"[a-z_:]+\{([^}]*)\}")


@pytest.mark.parametrize("app", ["qr", "quickbite"])
def test_every_selector_is_scoped_to_the_system(app: str) -> None:
    """No rule may match another system's series: each selector names a job, app or namespace."""
    metrics = QR_METRICS if app == "qr" else QUICKBITE_METRICS
    own_jobs = {metrics.backend_job, metrics.database_job, metrics.cache_job}
    for name, rule in rules_of(app, pvc_regex="data-x-.*").items():
        selectors = SELECTOR.findall(rule["expr"])
        assert selectors, name
        for matchers in selectors:
            scoped = (
                any(f'job="{job}"' in matchers for job in own_jobs)
                or f'app="{app}"' in matchers
                or f'namespace="{app}"' in matchers
            )
            assert scoped, (name, matchers)


def test_kubernetes_selectors_use_the_pvc_and_cronjob_patterns() -> None:
    rules = rules_of("qr", pvc_regex="data-qr-(db|redis)-.*", cronjob_regex="qr-backup-.*")
    assert 'persistentvolumeclaim=~"data-qr-(db|redis)-.*"' in rules["DiskUsageHigh"]["expr"]
    assert 'job_name=~"qr-backup-.*"' in rules["CronJobFailing"]["expr"]
    assert 'job_name=~"qr-.*"' in rules_of("qr")["CronJobFailing"]["expr"]  # default
    assert 'reason="OOMKilled"' in rules["OOMKilled"]["expr"]
    assert 'reason="CrashLoopBackOff"' in rules["CrashLooping"]["expr"]


def test_backup_alerts_use_schedule_plus_margin_and_every_required_part() -> None:
    rules = rules_of(
        "qr",
        backup_interval_seconds=3600,
        backup_margin_seconds=900,
        drill_interval_seconds=7200,
        drill_margin_seconds=60,
        backup_parts=("db", "redis"),
    )
    backup = rules["BackupMissing"]["expr"]
    assert "> 4500)" in backup
    assert 'part="db"' in backup and 'part="redis"' in backup
    assert "> 7260)" in rules["RestoreDrillMissing"]["expr"]


def test_extra_labels_reach_every_rule() -> None:
    for rule in rules_of("quickbite", extra_labels={"team": "food"}).values():
        assert rule["labels"]["team"] == "food"


@pytest.mark.parametrize(
    ("value", "text"),
    [(18.0, "18"), (20 * 0.9, "18"), (0.05, "0.05"), (0.1 + 0.2, "0.3"), (14.4, "14.4")],
)
def test_num_prints_thresholds_as_promql_numbers(value: float, text: str) -> None:
    assert num(value) == text


@given(st.integers(min_value=1, max_value=500), st.floats(min_value=0.5, max_value=0.99))
def test_pool_threshold_property(size: int, ratio: float) -> None:
    thresholds = replace(QR_THRESHOLDS, db_pool_usage_ratio=ratio)
    groups = build_rule_groups(
        "qr", QR_METRICS, params("qr", db_pool_size=size, thresholds=thresholds)
    )
    [rule] = [r for g in groups for r in g.rules if r.name == "DatabaseConnectionPoolExhausted"]
    assert abs(float(rule.expr.rsplit("> ", 1)[1]) - size * ratio) < 1e-6


@pytest.mark.parametrize("app", ["qr", "quickbite"])
def test_rule_file_yaml_round_trips(app: str) -> None:
    metrics = QR_METRICS if app == "qr" else QUICKBITE_METRICS
    groups = build_rule_groups(app, metrics, params(app))
    text = am.rule_file_yaml(groups)
    assert yaml.safe_load(text) == to_rule_file(groups)
    assert "expr: |-" in text  # multi-line PromQL stays readable


def test_prometheus_rule_default_and_custom_selector_labels() -> None:
    groups = build_rule_groups("qr", QR_METRICS, params("qr"))
    assert am.prometheus_rule("r", "qr", groups)["metadata"]["labels"] == {
        "release": "kube-prometheus-stack"
    }
    assert am.prometheus_rule("r", "qr", groups, {"prometheus": "main"})["metadata"]["labels"] == {
        "prometheus": "main"
    }


def test_service_monitor_for_a_service_in_another_namespace() -> None:
    target = ScrapeTarget("pushgateway", 9091, port_name="http", namespace="monitoring",
                          honor_labels=True)  # fmt: skip
    monitor = am.service_monitor_for(target, "qr")
    assert monitor["metadata"]["namespace"] == "qr"
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": ["monitoring"]}
    assert monitor["spec"]["endpoints"][0]["honorLabels"] is True


@pytest.mark.parametrize(
    ("destination", "key", "expected"),
    [
        ("https://hooks.example.test/x", "webhookConfigs", [{"url": "https://hooks.example.test/x",
                                                            "sendResolved": True}]),
        ("mailto:ops@example.test", "emailConfigs", [{"to": "ops@example.test",
                                                     "sendResolved": True}]),
    ],
)  # fmt: skip
def test_receiver_destinations(destination: str, key: str, expected: list) -> None:
    assert am.receiver("r", destination) == {"name": "r", key: expected}


def test_receiver_placeholder_has_no_integration() -> None:
    assert am.receiver("r", "pager") == {"name": "r"}


def test_unknown_receiver_severity_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="unknown severity 'P4'"):
        am.alertmanager_config("a", "qr", {"P4": "https://x.test"})


def test_priorities_and_severities_both_route() -> None:
    config = am.alertmanager_config("a", "qr", {"P1": "https://p.test", "info": "https://i.test"})
    values = [r["matchers"][0]["value"] for r in config["spec"]["route"]["routes"]]
    assert sorted(values) == ["critical", "info"]


def test_prometheus_config_scrapes_each_target() -> None:
    text = am.prometheus_config(
        [ScrapeTarget("qr-api", 8000, host="api"), ScrapeTarget("pg", 9187)], ["/r.yml"]
    )
    config = yaml.safe_load(text)
    assert config["rule_files"] == ["/r.yml"]
    targets = {c["job_name"]: c["static_configs"][0]["targets"] for c in config["scrape_configs"]}
    assert targets == {"qr-api": ["api:8000"], "pg": ["pg:9187"]}
