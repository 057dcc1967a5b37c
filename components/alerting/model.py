"""Typed alerting definitions: what a system exposes, what an alert is, what Prometheus scrapes.

These are plain data. The catalog (`components/catalog/<app>.py`) holds each system's `Metrics`
and `Thresholds`; `components.alerting.rules` turns them into `RuleGroup`s; `AlertRules` renders
the groups for the target (PrometheusRule on Kubernetes, a Prometheus container on Docker).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

Priority = Literal["P1", "P2", "P3"]

# QuickBite runbook, "Incident Response": P1 service down (15 min), P2 degraded (1 h),
# P3 minor (4 h).
# Alertmanager and kube-prometheus-stack conventions route on `severity`; people read `priority`.
SEVERITY_BY_PRIORITY: dict[str, str] = {"P1": "critical", "P2": "warning", "P3": "info"}
RESPONSE_TIME_BY_PRIORITY: dict[str, str] = {"P1": "15m", "P2": "1h", "P3": "4h"}

# Metrics the backup and restore-drill tasks push (exact names; labels in the comments).
BACKUP_LAST_SUCCESS = "opsplane_backup_last_success_timestamp_seconds"  # {app, part}
BACKUP_VERIFY_SUCCESS = "opsplane_backup_verify_success"  # {app}: 1 ok, 0 failed
BACKUP_VERIFY_LAST_RUN = "opsplane_backup_verify_last_run_timestamp_seconds"  # {app}
# Point-in-time recovery: the base-backup sidecar pushes this; postgres_exporter's
# `stat_archiver` collector exports pg_stat_archiver as the pg_stat_archiver_* series.
BASE_BACKUP_LAST_SUCCESS = "opsplane_pitr_base_backup_last_success_timestamp_seconds"  # {app}
ARCHIVER_ARCHIVED = "pg_stat_archiver_archived_count"
ARCHIVER_FAILED = "pg_stat_archiver_failed_count"
ARCHIVER_LAST_ARCHIVE_AGE = "pg_stat_archiver_last_archive_age"  # seconds
# rows written (postgres_exporter's default `stat_database` collector, per database): an idle
# server switches no WAL segment, so only a server that is being written can lag
TUPLES_WRITTEN = "pg_stat_database_tup_(inserted|updated|deleted)"  # a __name__ regex


@dataclass(frozen=True)
class Metrics:
    """The metric names and scrape jobs one system exposes (catalog data).

    `*_job` values are Prometheus `job` labels: the ServiceMonitor's Service name on Kubernetes and
    the `ScrapeTarget.name` on Docker, so the catalog names them after the services.
    Optional metrics set to None switch their alerts off.
    """

    backend_job: str
    http_requests_total: str
    http_status_label: str
    http_duration_bucket: str
    database_job: str
    cache_job: str
    db_pool_active: str | None = None
    payments_total: str | None = None
    payment_outcome_label: str = "outcome"
    payment_failure_regex: str = "failure|failed"
    webhook_errors_total: str | None = None
    websocket_sessions: str | None = None
    database_up: str = "pg_up"  # postgres_exporter
    cache_up: str = "redis_up"  # redis_exporter


@dataclass(frozen=True)
class Thresholds:
    """Runbook thresholds that differ between systems (catalog data); defaults are QuickBite's."""

    error_ratio: float = 0.05
    latency_quantile: float = 0.99
    latency_seconds: float = 2.0
    payment_failure_ratio: float = 0.05
    webhook_errors_per_minute: float = 10.0
    disk_usage_ratio: float = 0.85
    db_pool_usage_ratio: float = 0.9
    websocket_drop_ratio: float = 0.5
    websocket_min_sessions: int = 10


@dataclass(frozen=True)
class AlertRule:
    """One alerting rule. `priority` becomes the labels `priority` and `severity`."""

    name: str
    expr: str
    for_: str
    priority: Priority
    summary: str
    description: str
    runbook_url: str
    labels: dict[str, str] = field(default_factory=dict)

    @property
    def severity(self) -> str:
        return SEVERITY_BY_PRIORITY[self.priority]

    @property
    def runbook_anchor(self) -> str:
        return f"alert-{self.name.lower()}"


@dataclass(frozen=True)
class RuleGroup:
    name: str
    rules: tuple[AlertRule, ...]
    interval: str | None = None


@dataclass(frozen=True)
class ScrapeTarget:
    """One metrics endpoint. `name` is the Prometheus job (and, on Kubernetes, the Service name
    whose labels `selector` matches); `host` is the container name on the Docker network."""

    name: str
    port: int
    port_name: str = "metrics"
    path: str = "/metrics"
    host: str | None = None
    selector: dict[str, str] = field(default_factory=dict)
    interval: str = "30s"
    honor_labels: bool = False  # True for a Pushgateway, so pushed `job`/`app` labels survive
    namespace: str | None = None  # Kubernetes: the Service's namespace when not the app's
