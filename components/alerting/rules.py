"""Every alert both runbooks ask for, plus the ones they need but do not list, as PromQL.

`build_rule_groups` is pure: the same `Metrics`/`AlertParams` always give the same groups, so the
rule file that promtool tests is byte-for-byte the one Prometheus loads on both stacks.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from components.alerting.model import (
    ARCHIVER_ARCHIVED,
    ARCHIVER_FAILED,
    ARCHIVER_LAST_ARCHIVE_AGE,
    BACKUP_LAST_SUCCESS,
    BACKUP_VERIFY_LAST_RUN,
    BACKUP_VERIFY_SUCCESS,
    BASE_BACKUP_LAST_SUCCESS,
    TUPLES_WRITTEN,
    AlertRule,
    Metrics,
    Priority,
    RuleGroup,
    Thresholds,
)

# Multi-window multi-burn-rate (Google SRE workbook, ch. 5): (burn factor, long, short window, for).
FAST_BURN = (14.4, "1h", "5m", "2m")  # 2% of a 30-day budget in one hour
SLOW_BURN = (6.0, "6h", "30m", "15m")  # 5% of a 30-day budget in six hours


@dataclass(frozen=True)
class AlertParams:
    """Per-stack settings for one system's alerts (built by `__main__.py` from config)."""

    namespace: str  # Kubernetes namespace of the system (kube-state-metrics/kubelet selectors)
    runbook_base_url: str  # e.g. https://github.com/org/opsplane/blob/main/docs/runbook.md
    pvc_regex: str = ".+"
    db_pool_size: int = 20
    backup_interval_seconds: int = 86_400
    backup_margin_seconds: int = 7_200
    backup_parts: tuple[str, ...] = ("db",)  # parts whose total absence also alerts
    drill_interval_seconds: int = 604_800
    drill_margin_seconds: int = 86_400
    cronjob_regex: str | None = None  # default: "<app>-.*"
    slo_target: float = 0.999
    thresholds: Thresholds = field(default_factory=Thresholds)
    extra_labels: dict[str, str] = field(default_factory=dict)
    kubernetes_alerts: bool = True  # disk, OOM, crash loop, CronJob (kube-state-metrics/kubelet)
    pitr: bool = False  # WAL archiving and base backups (opsplane:pitr.apps)
    archive_lag_seconds: int = 300
    base_backup_limit_seconds: int = 26 * 3600


def num(value: float) -> str:
    """A threshold as PromQL text: 18 not 18.0, 0.05 not 0.050000000000000003."""
    rounded = round(float(value), 9)
    return str(int(rounded)) if rounded.is_integer() else repr(rounded)


def selector(metric: str, **matchers: str) -> str:
    """`metric{a="x",b=~"y"}`; a matcher value starting with `~` is a regex match."""
    parts = []
    for label, value in matchers.items():
        op, text = ("=~", value[1:]) if value.startswith("~") else ("=", value)
        parts.append(f'{label}{op}"{text}"')
    return f"{metric}{{{','.join(parts)}}}"


def error_ratio(metrics: Metrics, window: str) -> str:
    """Share of 5xx responses over `window`, per job (0/0 with no traffic is NaN: never fires)."""
    job = metrics.backend_job
    errors = selector(metrics.http_requests_total, job=job, **{metrics.http_status_label: "~5.."})
    total = selector(metrics.http_requests_total, job=job)
    return f"sum by (job) (rate({errors}[{window}]))\n  /\nsum by (job) (rate({total}[{window}]))"


class _Builder:
    """Collects rules for one app so each rule constructor stays one small function."""

    def __init__(self, app: str, params: AlertParams) -> None:
        self.app = app
        self.params = params

    def rule(
        self, name: str, expr: str, for_: str, priority: Priority, summary: str, description: str
    ) -> AlertRule:
        labels = {"app": self.app, "namespace": self.params.namespace, **self.params.extra_labels}
        url = f"{self.params.runbook_base_url}#alert-{name.lower()}"
        return AlertRule(name, expr, for_, priority, summary, description, url, labels)


def availability_rules(b: _Builder, m: Metrics) -> list[AlertRule]:
    t, p = b.params.thresholds, b.params
    up = selector("up", job=m.backend_job)
    bucket = selector(m.http_duration_bucket, job=m.backend_job)
    q = num(t.latency_quantile)
    return [
        b.rule(
            "BackendDown",
            f"(sum by (job) ({up}) == 0) or absent({up})",
            "2m",
            "P1",
            "{{ $labels.job }} is down",
            f"No {m.backend_job} instance has answered a metrics scrape for 2 minutes.",
        ),
        b.rule(
            "HighErrorRate",
            f"(\n{error_ratio(m, '5m')}\n) > {num(t.error_ratio)}",
            "5m",
            "P2",
            "High 5xx error ratio on {{ $labels.job }}",
            f"More than {num(t.error_ratio * 100)}% of requests failed with 5xx for 5 minutes.",
        ),
        b.rule(
            "HighLatency",
            f"histogram_quantile({q}, sum by (job, le) (rate({bucket}[5m])))"
            f" > {num(t.latency_seconds)}",
            "5m",
            "P2",
            f"p{num(t.latency_quantile * 100)} latency above {num(t.latency_seconds)}s"
            " on {{ $labels.job }}",
            f"The {num(t.latency_quantile * 100)}th percentile response time has been above "
            f"{num(t.latency_seconds)}s for 5 minutes.",
        ),
        burn_rule(b, m, "ErrorBudgetBurnFast", FAST_BURN, "P2", p.slo_target),
        burn_rule(b, m, "ErrorBudgetBurnSlow", SLOW_BURN, "P3", p.slo_target),
    ]


def burn_rule(
    b: _Builder,
    m: Metrics,
    name: str,
    burn: tuple[float, str, str, str],
    priority: Priority,
    slo_target: float,
) -> AlertRule:
    factor, long_window, short_window, for_ = burn
    limit = f"{num(factor)} * (1 - {num(slo_target)})"
    expr = (
        f"(\n{error_ratio(m, long_window)}\n) > {limit}\n"
        f"and\n(\n{error_ratio(m, short_window)}\n) > {limit}"
    )
    return b.rule(
        name,
        expr,
        for_,
        priority,
        "{{ $labels.job }} is burning its error budget " + f"{num(factor)}x too fast",
        f"5xx ratio above {num(factor)}x the budget of a {num(slo_target * 100)}% availability "
        f"SLO over both {long_window} and {short_window}.",
    )


def datastore_rules(b: _Builder, m: Metrics) -> list[AlertRule]:
    rules = [
        exporter_down_rule(b, "DatabaseDown", m.database_up, m.database_job, "PostgreSQL"),
        exporter_down_rule(b, "RedisDown", m.cache_up, m.cache_job, "Redis"),
    ]
    if m.db_pool_active:
        pool = b.params.db_pool_size
        limit = pool * b.params.thresholds.db_pool_usage_ratio
        gauge = selector(m.db_pool_active, job=m.backend_job)
        rules.append(
            b.rule(
                "DatabaseConnectionPoolExhausted",
                f"max by (job) ({gauge}) > {num(limit)}",
                "2m",
                "P2",
                "Database connection pool of {{ $labels.job }} near capacity",
                f"More than {num(limit)} of {pool} pooled connections in use for 2 minutes.",
            )
        )
    return rules


def exporter_down_rule(b: _Builder, name: str, metric: str, job: str, what: str) -> AlertRule:
    """`*_up == 0` from the exporter, or the exporter gone (its series go stale: absent)."""
    sel = selector(metric, job=job)
    return b.rule(
        name,
        f"(min by (job) ({sel}) == 0) or absent({sel})",
        "2m",
        "P1",
        f"{what} of {b.app} is unreachable",
        f"{job} reports {what} down, or the exporter itself is gone, for 2 minutes.",
    )


def business_rules(b: _Builder, m: Metrics) -> list[AlertRule]:
    t = b.params.thresholds
    rules: list[AlertRule] = []
    if m.payments_total:
        failed = selector(
            m.payments_total,
            job=m.backend_job,
            **{m.payment_outcome_label: "~" + m.payment_failure_regex},
        )
        total = selector(m.payments_total, job=m.backend_job)
        rules.append(
            b.rule(
                "PaymentFailureRate",
                f"sum by (job) (rate({failed}[10m]))\n  /\nsum by (job) (rate({total}[10m]))\n"
                f"  > {num(t.payment_failure_ratio)}",
                "2m",
                "P2",
                "Payment failures above "
                + f"{num(t.payment_failure_ratio * 100)}%"
                + " on {{ $labels.job }}",
                f"More than {num(t.payment_failure_ratio * 100)}% of payments failed over 10 "
                "minutes.",
            )
        )
    if m.webhook_errors_total:
        errors = selector(m.webhook_errors_total, job=m.backend_job)
        rules.append(
            b.rule(
                "WebhookErrors",
                f"sum by (job) (rate({errors}[5m])) * 60 > {num(t.webhook_errors_per_minute)}",
                "2m",
                "P2",
                "Webhook errors on {{ $labels.job }}",
                f"More than {num(t.webhook_errors_per_minute)} payment webhook errors per "
                "minute (5-minute average).",
            )
        )
    if m.websocket_sessions:
        now = f"sum by (job) ({selector(m.websocket_sessions, job=m.backend_job)})"
        before = f"sum by (job) ({selector(m.websocket_sessions, job=m.backend_job)} offset 1h)"
        keep = num(1 - t.websocket_drop_ratio)
        rules.append(
            b.rule(
                "WebSocketDisconnects",
                f"({now} < {keep} * {before})\nand\n({before} >= {t.websocket_min_sessions})",
                "5m",
                "P2",
                "WebSocket sessions on {{ $labels.job }} dropped sharply",
                f"Active WebSocket sessions fell by more than {num(t.websocket_drop_ratio * 100)}%"
                " against the level one hour earlier.",
            )
        )
    return rules


def kubernetes_rules(b: _Builder) -> list[AlertRule]:
    p = b.params
    ns = p.namespace
    pvc = {"namespace": ns, "persistentvolumeclaim": "~" + p.pvc_regex}
    used = selector("kubelet_volume_stats_used_bytes", **pvc)
    capacity = selector("kubelet_volume_stats_capacity_bytes", **pvc)
    oom = selector(
        "kube_pod_container_status_last_terminated_reason", namespace=ns, reason="OOMKilled"
    )
    restarts = selector("kube_pod_container_status_restarts_total", namespace=ns)
    waiting = selector(
        "kube_pod_container_status_waiting_reason", namespace=ns, reason="CrashLoopBackOff"
    )
    jobs = {"namespace": ns, "job_name": "~" + (p.cronjob_regex or f"{b.app}-.*")}
    failed = selector("kube_job_status_failed", **jobs)
    started = selector("kube_job_status_start_time", **jobs)
    ppc = "namespace, pod, container"
    return [
        b.rule(
            "DiskUsageHigh",
            f"max by (namespace, persistentvolumeclaim) ({used} / {capacity})"
            f" > {num(p.thresholds.disk_usage_ratio)}",
            "5m",
            "P2",
            "Volume {{ $labels.persistentvolumeclaim }} is over "
            + f"{num(p.thresholds.disk_usage_ratio * 100)}% full",
            "A persistent volume of the system is filling up.",
        ),
        b.rule(
            "OOMKilled",
            f"(max by ({ppc}) ({oom}) == 1)\nand on ({ppc})\n(increase({restarts}[10m]) > 0)",
            "1m",
            "P2",
            "{{ $labels.container }} in {{ $labels.pod }} was OOM killed",
            "A container restarted in the last 10 minutes after running out of memory.",
        ),
        b.rule(
            "CrashLooping",
            f"max by ({ppc}) (max_over_time({waiting}[5m])) >= 1",
            "10m",
            "P1",
            "{{ $labels.container }} in {{ $labels.pod }} is crash looping",
            "The container has been in CrashLoopBackOff for 10 minutes.",
        ),
        b.rule(
            "CronJobFailing",
            f"(max by (namespace, job_name) ({failed}) > 0)\n"
            f"and on (namespace, job_name)\n"
            f"(time() - max by (namespace, job_name) ({started}) < {p.backup_interval_seconds})",
            "1m",
            "P2",
            "Job {{ $labels.job_name }} failed",
            "A Job of the system (backup, restore drill, ops task) failed within the last "
            "backup interval.",
        ),
    ]


def backup_rules(b: _Builder) -> list[AlertRule]:
    p = b.params
    backup_limit = p.backup_interval_seconds + p.backup_margin_seconds
    drill_limit = p.drill_interval_seconds + p.drill_margin_seconds
    last_backup = selector(BACKUP_LAST_SUCCESS, app=b.app)
    missing_parts = " or ".join(
        f"absent({selector(BACKUP_LAST_SUCCESS, app=b.app, part=part)})" for part in p.backup_parts
    )
    verify_ok = selector(BACKUP_VERIFY_SUCCESS, app=b.app)
    verify_run = selector(BACKUP_VERIFY_LAST_RUN, app=b.app)
    expr_backup = f"(time() - max by (app, part) ({last_backup}) > {backup_limit})"
    if missing_parts:
        expr_backup += f"\nor {missing_parts}"
    return [
        b.rule(
            "BackupMissing",
            expr_backup,
            "5m",
            "P2",
            "No successful {{ $labels.part }} backup of {{ $labels.app }}",
            f"The newest successful backup is older than {backup_limit}s "
            f"(schedule {p.backup_interval_seconds}s + margin {p.backup_margin_seconds}s), "
            "or none was ever recorded.",
        ),
        b.rule(
            "RestoreDrillFailed",
            f"min by (app) ({verify_ok}) == 0",
            "5m",
            "P2",
            "Restore drill of {{ $labels.app }} failed",
            "The last verify-backup run could not restore and check the newest backup.",
        ),
        b.rule(
            "RestoreDrillMissing",
            f"(time() - max by (app) ({verify_run}) > {drill_limit})\nor absent({verify_run})",
            "5m",
            "P3",
            "No recent restore drill of {{ $labels.app }}",
            f"No verify-backup run in the last {drill_limit}s "
            f"(schedule {p.drill_interval_seconds}s + margin {p.drill_margin_seconds}s).",
        ),
    ]


def pitr_rules(b: _Builder, m: Metrics) -> list[AlertRule]:
    """WAL archiving failing or lagging (postgres_exporter's pg_stat_archiver), and base backups
    missing (pushed by the base-backup sidecar)."""
    p = b.params
    job = {"job": m.database_job}
    failed = selector(ARCHIVER_FAILED, **job)
    archived = selector(ARCHIVER_ARCHIVED, **job)
    age = selector(ARCHIVER_LAST_ARCHIVE_AGE, **job)
    written = selector("", __name__=f"~{TUPLES_WRITTEN}", **job)
    last_base = selector(BASE_BACKUP_LAST_SUCCESS, app=b.app)
    limit = p.base_backup_limit_seconds
    return [
        b.rule(
            "WalArchivingFailing",
            f"increase({failed}[10m]) > 0 and increase({archived}[10m]) == 0",
            "5m",
            "P1",
            "WAL archiving of {{ $labels.job }} is failing",
            "archive_command fails and nothing was archived for 10 minutes: point-in-time "
            "recovery stops at the last archived segment and PostgreSQL keeps WAL on its disk.",
        ),
        b.rule(
            "WalArchiveLag",
            # an idle server switches no segment (archive_timeout needs activity): its archive
            # ages without anything at risk, so only lag while rows are being written pages
            f"{age} > {p.archive_lag_seconds}\nand on (job) "
            f"sum by (job) (increase({written}[{p.archive_lag_seconds}s])) > 0",
            "2m",
            "P1",
            "WAL archive of {{ $labels.job }} lags",
            f"The newest archived WAL segment is older than {p.archive_lag_seconds}s while rows "
            "are being written: a disaster now loses more than the archive timeout.",
        ),
        b.rule(
            "BaseBackupMissing",
            f"(time() - max by (app) ({last_base}) > {limit})\nor absent({last_base})",
            "10m",
            "P2",
            "No base backup of {{ $labels.app }} within " + f"{limit // 3600}h",
            f"No successful base backup in the last {limit}s: recovery replays ever more WAL, "
            "and retention cannot drop old WAL.",
        ),
    ]


def build_rule_groups(app: str, metrics: Metrics, params: AlertParams) -> list[RuleGroup]:
    """All alert groups of one system; groups are prefixed with the app so files can be merged."""
    b = _Builder(app, params)
    groups = [
        RuleGroup(f"{app}-availability", tuple(availability_rules(b, metrics))),
        RuleGroup(f"{app}-datastores", tuple(datastore_rules(b, metrics))),
        RuleGroup(f"{app}-business", tuple(business_rules(b, metrics))),
        RuleGroup(f"{app}-backups", tuple(backup_rules(b))),
    ]
    if params.pitr:
        groups.append(RuleGroup(f"{app}-pitr", tuple(pitr_rules(b, metrics))))
    if params.kubernetes_alerts:
        groups.append(RuleGroup(f"{app}-kubernetes", tuple(kubernetes_rules(b))))
    return [g for g in groups if g.rules]


def rule_to_dict(rule: AlertRule) -> dict[str, Any]:
    return {
        "alert": rule.name,
        "expr": rule.expr,
        "for": rule.for_,
        "labels": {**rule.labels, "severity": rule.severity, "priority": rule.priority},
        "annotations": {
            "summary": rule.summary,
            "description": rule.description,
            "runbook_url": rule.runbook_url,
        },
    }


def group_to_dict(group: RuleGroup) -> dict[str, Any]:
    out: dict[str, Any] = {"name": group.name}
    if group.interval:
        out["interval"] = group.interval
    out["rules"] = [rule_to_dict(r) for r in group.rules]
    return out


def to_rule_file(groups: Iterable[RuleGroup]) -> dict[str, Any]:
    """The Prometheus rule-file document (also the `spec` of a PrometheusRule)."""
    return {"groups": [group_to_dict(g) for g in groups]}


def alert_names(groups: Iterable[RuleGroup]) -> list[str]:
    return [r.name for g in groups for r in g.rules]
