"""Every alert of both systems, on both stacks, checked and unit-tested by promtool.

For each alert the cases below build input series from the runbook thresholds in `Thresholds` /
`AlertParams` (not from the rendered rules): one history where the alert fires with the expected
labels and annotations, and near misses just on the other side of the threshold where it must not.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import pytest
import yaml

from components.alerting.manifests import rule_file_yaml, to_yaml
from components.alerting.model import Metrics, Thresholds
from components.alerting.rules import AlertParams, build_rule_groups
from components.catalog import CATALOG

QR_METRICS, QR_THRESHOLDS = CATALOG["qr"].metrics, CATALOG["qr"].thresholds
QUICKBITE_METRICS = CATALOG["quickbite"].metrics
QUICKBITE_THRESHOLDS = CATALOG["quickbite"].thresholds

PROMTOOL = shutil.which("promtool")

# The runbooks' severity table, written out independently of the rules module.
EXPECTED_PRIORITY = {
    "BackendDown": "P1",
    "DatabaseDown": "P1",
    "RedisDown": "P1",
    "CrashLooping": "P1",
    "HighErrorRate": "P2",
    "HighLatency": "P2",
    "DatabaseConnectionPoolExhausted": "P2",
    "PaymentFailureRate": "P2",
    "WebhookErrors": "P2",
    "WebSocketDisconnects": "P2",
    "DiskUsageHigh": "P2",
    "OOMKilled": "P2",
    "CronJobFailing": "P2",
    "BackupMissing": "P2",
    "RestoreDrillFailed": "P2",
    "ErrorBudgetBurnFast": "P2",
    "ErrorBudgetBurnSlow": "P3",
    "RestoreDrillMissing": "P3",
}
EXPECTED_SEVERITY = {"P1": "critical", "P2": "warning", "P3": "info"}
RUNBOOK = "https://example.test/opsplane/docs/runbook.md"


@dataclass(frozen=True)
class Variant:
    """One system on one stack: the inputs `__main__.py` would pass."""

    app: str
    stack: str
    metrics: Metrics
    params: AlertParams
    pvc_example: str


@dataclass
class Case:
    alert: str
    what: str
    series: list[tuple[str, str]]
    eval_time: str
    fires: list[dict[str, str]] = field(default_factory=list)  # alert-specific labels per alert


def variants() -> list[Variant]:
    out = []
    for app, metrics, thresholds in (
        ("qr", QR_METRICS, QR_THRESHOLDS),
        ("quickbite", QUICKBITE_METRICS, QUICKBITE_THRESHOLDS),
    ):
        prod = AlertParams(
            namespace=app,
            runbook_base_url=RUNBOOK,
            pvc_regex=f"data-{app}-(db|redis)-.*",  # as the program passes them
            backup_parts=("db", "redis", "objects") if app == "qr" else ("db", "redis"),
            thresholds=thresholds,
            extra_labels={"stack": "prod"},
        )
        # dev: other schedules, pool size and SLO, so the thresholds are seen to follow the params
        dev = replace(
            prod,
            db_pool_size=10,
            backup_interval_seconds=3_600,
            backup_margin_seconds=600,
            drill_interval_seconds=86_400,
            drill_margin_seconds=3_600,
            slo_target=0.99,
            kubernetes_alerts=False,  # no kubelet or kube-state-metrics on a Docker host
            extra_labels={"stack": "dev"},
        )
        out.append(Variant(app, "prod", metrics, prod, f"data-{app}-db-0"))
        out.append(Variant(app, "dev", metrics, dev, f"data-{app}-db-0"))
    return out


def sel(metric: str, **labels: str) -> str:
    return metric + "{" + ",".join(f'{k}="{v}"' for k, v in labels.items()) + "}"


def counter(per_minute: float, minutes: int) -> str:
    """A counter growing `per_minute` every 1m sample."""
    return f"0+{per_minute:g}x{minutes}"


# ---- case builders: each returns firing cases and near misses for one alert -----------------


def backend_down(v: Variant) -> list[Case]:
    job = v.metrics.backend_job
    a, b = sel("up", job=job, instance="a"), sel("up", job=job, instance="b")
    return [
        Case("BackendDown", "all instances down 5m", [(a, "0x10")], "5m", [{"job": job}]),
        Case(
            "BackendDown",
            "no target at all",
            [(sel("up", job="other"), "1x10")],
            "5m",
            [{"job": job}],
        ),
        Case("BackendDown", "down 1m only", [(a, "0 0 1x10")], "5m"),
        Case("BackendDown", "one of two replicas down", [(a, "0x10"), (b, "1x10")], "5m"),
    ]


def _http(v: Variant, errors_per_min: float, total_per_min: float, minutes: int) -> list:
    m = v.metrics
    ok = sel(m.http_requests_total, job=m.backend_job, instance="a", **{m.http_status_label: "200"})
    bad = sel(
        m.http_requests_total, job=m.backend_job, instance="a", **{m.http_status_label: "500"}
    )
    return [
        (ok, counter(total_per_min - errors_per_min, minutes)),
        (bad, counter(errors_per_min, minutes)),
    ]


def high_error_rate(v: Variant) -> list[Case]:
    limit = v.params.thresholds.error_ratio
    job = {"job": v.metrics.backend_job}
    above = _http(v, (limit + 0.001) * 1000, 1000, 30)
    below = _http(v, (limit - 0.001) * 1000, 1000, 30)
    return [
        Case("HighErrorRate", "ratio just above", above, "20m", [job]),
        Case("HighErrorRate", "ratio just below", below, "20m"),
    ]


def _buckets(v: Variant, counts: list[float]) -> list[tuple[str, str]]:
    m, limit = v.metrics, v.params.thresholds.latency_seconds
    bounds = [f"{limit / 2:g}", f"{limit:g}", f"{limit * 1.5:g}", "+Inf"]
    return [
        (sel(m.http_duration_bucket, job=m.backend_job, instance="a", le=le), counter(c, 30))
        for le, c in zip(bounds, counts, strict=True)
    ]


def high_latency(v: Variant) -> list[Case]:
    """100 requests a minute; buckets at L/2, L, 1.5L. The quantile lands at 0.95L or 1.1L."""
    rank = 100 * v.params.thresholds.latency_quantile
    assert rank > 90, "case builder assumes a quantile above 0.9"
    below = (rank - 90) / 0.1  # L/2 + (L/2)(rank-c)/(100-c) = 0.95L
    above = (rank - 20) / 0.8  # L + (L/2)(rank-c)/(100-c) = 1.1L
    return [
        Case(
            "HighLatency",
            "quantile 1.1x limit",
            _buckets(v, [above / 2, above, 100, 100]),
            "20m",
            [{"job": v.metrics.backend_job}],
        ),
        Case("HighLatency", "quantile 0.95x limit", _buckets(v, [below, 100, 100, 100]), "20m"),
    ]


def _burn_cases(v: Variant, alert: str, factor: float, minutes: int, spike: int) -> list[Case]:
    budget = 1 - v.params.slo_target
    total = 10_000
    job = {"job": v.metrics.backend_job}
    quiet, loud = minutes - spike, budget * factor * 3 * total
    m = v.metrics
    bad = sel(
        m.http_requests_total, job=m.backend_job, instance="a", **{m.http_status_label: "500"}
    )
    ok = sel(m.http_requests_total, job=m.backend_job, instance="a", **{m.http_status_label: "200"})
    spiky = [
        (ok, counter(total - loud, minutes)),
        (bad, f"0x{quiet} {loud:g}+{loud:g}x{spike - 1}"),
    ]
    return [
        Case(
            alert,
            "steady burn 1.2x",
            _http(v, budget * factor * 1.2 * total, total, minutes),
            f"{minutes}m",
            [job],
        ),
        Case(
            alert,
            "steady burn 0.9x",
            _http(v, budget * factor * 0.9 * total, total, minutes),
            f"{minutes}m",
        ),
        Case(alert, "short spike: only the short window burns", spiky, f"{minutes}m"),
    ]


def burn_fast(v: Variant) -> list[Case]:
    return _burn_cases(v, "ErrorBudgetBurnFast", 14.4, 90, 10)


def burn_slow(v: Variant) -> list[Case]:
    return _burn_cases(v, "ErrorBudgetBurnSlow", 6, 420, 40)


def pool_exhausted(v: Variant) -> list[Case]:
    m = v.metrics
    if not m.db_pool_active:
        return []
    limit = v.params.db_pool_size * v.params.thresholds.db_pool_usage_ratio
    gauge = sel(m.db_pool_active, job=m.backend_job, instance="a")
    name = "DatabaseConnectionPoolExhausted"
    return [
        Case(name, "one over 90%", [(gauge, f"{limit + 1:g}x10")], "5m", [{"job": m.backend_job}]),
        Case(name, "exactly 90%", [(gauge, f"{limit:g}x10")], "5m"),
    ]


def _exporter_down(alert: str, metric: str, job: str) -> list[Case]:
    s = sel(metric, job=job, instance="a")
    return [
        Case(alert, "exporter reports down", [(s, "0x10")], "5m", [{"job": job}]),
        Case(alert, "exporter gone", [(sel("up", job="other"), "1x10")], "5m", [{"job": job}]),
        Case(alert, "down for one scrape", [(s, "0 1x10")], "5m"),
    ]


def database_down(v: Variant) -> list[Case]:
    return _exporter_down("DatabaseDown", v.metrics.database_up, v.metrics.database_job)


def redis_down(v: Variant) -> list[Case]:
    return _exporter_down("RedisDown", v.metrics.cache_up, v.metrics.cache_job)


def payment_failures(v: Variant) -> list[Case]:
    m = v.metrics
    if not m.payments_total:
        return []
    limit = v.params.thresholds.payment_failure_ratio
    failed_value = m.payment_failure_regex.split("|")[0]

    def series(failed: float) -> list[tuple[str, str]]:
        base = {"job": m.backend_job, "instance": "a"}
        return [
            (
                sel(m.payments_total, **base, **{m.payment_outcome_label: "success"}),
                counter(1000 - failed, 30),
            ),
            (
                sel(m.payments_total, **base, **{m.payment_outcome_label: failed_value}),
                counter(failed, 30),
            ),
        ]

    return [
        Case(
            "PaymentFailureRate",
            "failures just above",
            series((limit + 0.001) * 1000),
            "20m",
            [{"job": m.backend_job}],
        ),
        Case("PaymentFailureRate", "failures just below", series((limit - 0.001) * 1000), "20m"),
    ]


def webhook_errors(v: Variant) -> list[Case]:
    m = v.metrics
    if not m.webhook_errors_total:
        return []
    limit = v.params.thresholds.webhook_errors_per_minute
    s = sel(m.webhook_errors_total, job=m.backend_job, instance="a")
    return [
        Case(
            "WebhookErrors",
            "one over per minute",
            [(s, counter(limit + 1, 30))],
            "20m",
            [{"job": m.backend_job}],
        ),
        Case("WebhookErrors", "one under per minute", [(s, counter(limit - 1, 30))], "20m"),
    ]


def websocket_drop(v: Variant) -> list[Case]:
    m, t = v.metrics, v.params.thresholds
    if not m.websocket_sessions:
        return []
    s = sel(m.websocket_sessions, job=m.backend_job, instance="a")
    keep = 100 * (1 - t.websocket_drop_ratio)
    small = t.websocket_min_sessions - 1
    return [
        Case(
            "WebSocketDisconnects",
            "drop just over",
            [(s, f"100x60 {keep - 1:g}x30")],
            "80m",
            [{"job": m.backend_job}],
        ),
        Case("WebSocketDisconnects", "drop just under", [(s, f"100x60 {keep + 1:g}x30")], "80m"),
        Case("WebSocketDisconnects", "tiny level", [(s, f"{small}x60 0x30")], "80m"),
    ]


def disk_usage(v: Variant) -> list[Case]:
    if not v.params.kubernetes_alerts:
        return []
    ns, pvc, limit = v.params.namespace, v.pvc_example, v.params.thresholds.disk_usage_ratio

    def volume(claim: str, used: float) -> list[tuple[str, str]]:
        labels = {"namespace": ns, "persistentvolumeclaim": claim, "job": "kubelet"}
        return [
            (sel("kubelet_volume_stats_used_bytes", **labels), f"{used:g}x10"),
            (sel("kubelet_volume_stats_capacity_bytes", **labels), "1000x10"),
        ]

    return [
        Case(
            "DiskUsageHigh",
            "just over",
            volume(pvc, (limit + 0.01) * 1000),
            "8m",
            [{"namespace": ns, "persistentvolumeclaim": pvc}],
        ),
        Case("DiskUsageHigh", "just under", volume(pvc, (limit - 0.01) * 1000), "8m"),
        Case("DiskUsageHigh", "someone else's volume", volume("scratch", 990), "8m"),
    ]


def oom_killed(v: Variant) -> list[Case]:
    if not v.params.kubernetes_alerts:
        return []
    ns = v.params.namespace
    who = {"namespace": ns, "pod": f"{v.app}-backend-0", "container": "app"}
    ksm = {**who, "job": "kube-state-metrics"}
    reason = sel("kube_pod_container_status_last_terminated_reason", **ksm, reason="OOMKilled")
    restarts = sel("kube_pod_container_status_restarts_total", **ksm)
    return [
        Case(
            "OOMKilled",
            "restart after OOM",
            [(reason, "1x20"), (restarts, "0x10 1x10")],
            "13m",
            [who],
        ),
        Case("OOMKilled", "old OOM, no restart", [(reason, "1x20"), (restarts, "1x20")], "13m"),
    ]


def crash_looping(v: Variant) -> list[Case]:
    if not v.params.kubernetes_alerts:
        return []
    who = {"namespace": v.params.namespace, "pod": f"{v.app}-backend-0", "container": "app"}
    s = sel("kube_pod_container_status_waiting_reason", **who, reason="CrashLoopBackOff")
    return [
        Case("CrashLooping", "looping 20m", [(s, "1x30")], "20m", [who]),
        Case("CrashLooping", "looping 4m then fine", [(s, "1x4 0x30")], "9m"),
    ]


def cronjob_failing(v: Variant) -> list[Case]:
    if not v.params.kubernetes_alerts:
        return []
    ns, window = v.params.namespace, v.params.backup_interval_seconds
    who = {"namespace": ns, "job_name": f"{v.app}-db-backup-29000000"}
    failed, started = sel("kube_job_status_failed", **who), sel("kube_job_status_start_time", **who)
    eval_s = 600
    recent = eval_s - window // 2
    return [
        Case(
            "CronJobFailing",
            "failed half an interval ago",
            [(failed, "1x20"), (started, f"{recent}x20")],
            "10m",
            [who],
        ),
        Case(
            "CronJobFailing",
            "succeeded",
            [(failed, "0x20"), (started, f"{recent}x20")],
            "10m",
        ),
        Case(
            "CronJobFailing",
            "failure older than the interval",
            [(failed, "1x20"), (started, f"{eval_s - window - 60}x20")],
            "10m",
        ),
    ]


def _age_cases(alert: str, metric: str, labels: dict[str, str], limit: int) -> list[Case]:
    """A timestamp gauge whose age at eval (1800s) is 6m over or 1m under `limit`."""
    eval_s = 1800
    s = sel(metric, **labels)
    return [
        Case(alert, "age just outside", [(s, f"{eval_s - limit - 360}x40")], "30m", [labels]),
        Case(alert, "age just inside", [(s, f"{eval_s - limit + 60}x40")], "30m"),
    ]


def backup_missing(v: Variant) -> list[Case]:
    """The db part ages past schedule + margin while every other required part stays fresh."""
    p = v.params
    limit = p.backup_interval_seconds + p.backup_margin_seconds
    metric = "opsplane_backup_last_success_timestamp_seconds"
    others = [(sel(metric, app=v.app, part=x), "1700x40") for x in p.backup_parts if x != "db"]
    db = {"app": v.app, "part": "db"}
    aged = [
        replace(c, series=c.series + others) for c in _age_cases("BackupMissing", metric, db, limit)
    ]
    return [
        *aged,
        Case("BackupMissing", "never backed up the db", others, "10m", [db]),
        Case(
            "BackupMissing",
            "other app's backup is irrelevant",
            [
                (sel(metric, app="other", part="db"), "-1e9x40"),
                (sel(metric, app=v.app, part="db"), "1700x40"),
                *others,
            ],
            "30m",
        ),
        *[
            Case(
                "BackupMissing",
                f"never backed up {part}",
                [(sel(metric, app=v.app, part=x), "1700x40") for x in p.backup_parts if x != part],
                "10m",
                [{"app": v.app, "part": part}],
            )
            for part in p.backup_parts[1:]
        ],
        Case(
            "BackupMissing",
            "every required part has a recent backup",
            [(sel(metric, app=v.app, part=x), "1700x40") for x in p.backup_parts],
            "30m",
        ),
    ]


def drill_failed(v: Variant) -> list[Case]:
    s = sel("opsplane_backup_verify_success", app=v.app)
    return [
        Case("RestoreDrillFailed", "drill failed", [(s, "0x20")], "10m", [{"app": v.app}]),
        Case("RestoreDrillFailed", "drill ok", [(s, "1x20")], "10m"),
    ]


def drill_missing(v: Variant) -> list[Case]:
    p = v.params
    limit = p.drill_interval_seconds + p.drill_margin_seconds
    metric = "opsplane_backup_verify_last_run_timestamp_seconds"
    return [
        *_age_cases("RestoreDrillMissing", metric, {"app": v.app}, limit),
        Case(
            "RestoreDrillMissing",
            "never ran",
            [(sel("up", job="x"), "1x20")],
            "10m",
            [{"app": v.app}],
        ),
    ]


BUILDERS: list[Callable[[Variant], list[Case]]] = [
    backend_down,
    high_error_rate,
    high_latency,
    burn_fast,
    burn_slow,
    pool_exhausted,
    database_down,
    redis_down,
    payment_failures,
    webhook_errors,
    websocket_drop,
    disk_usage,
    oom_killed,
    crash_looping,
    cronjob_failing,
    backup_missing,
    drill_failed,
    drill_missing,
]


# ---- rendering the promtool test file ---------------------------------------------------------


def all_cases(v: Variant) -> list[Case]:
    return [case for build in BUILDERS for case in build(v)]


def render_template(text: str, labels: dict[str, str]) -> str:
    """Enough of Go templating for our annotations: `{{ $labels.name }}`."""
    return re.sub(r"\{\{\s*\$labels\.(\w+)\s*\}\}", lambda m: labels[m.group(1)], text)


def expected_alert(v: Variant, case: Case, specific: dict[str, str], rules: dict) -> dict:
    priority = EXPECTED_PRIORITY[case.alert]
    labels = {
        **specific,
        "app": v.app,
        "namespace": v.params.namespace,
        "stack": v.stack,
        "priority": priority,
        "severity": EXPECTED_SEVERITY[priority],
    }
    annotations = {k: render_template(t, labels) for k, t in rules[case.alert].items()}
    annotations["runbook_url"] = f"{RUNBOOK}#alert-{case.alert.lower()}"
    return {"exp_labels": labels, "exp_annotations": annotations}


def annotation_templates(rule_file: dict) -> dict[str, dict[str, str]]:
    return {
        r["alert"]: {k: t for k, t in r["annotations"].items() if k != "runbook_url"}
        for g in rule_file["groups"]
        for r in g["rules"]
    }


def promtool_suite(v: Variant, cases: list[Case], templates: dict, rules_path: str) -> dict:
    tests = []
    for case in cases:
        tests.append(
            {
                "name": f"{v.app}/{v.stack} {case.alert}: {case.what}",
                "interval": "1m",
                "input_series": [{"series": s, "values": vals} for s, vals in case.series],
                "alert_rule_test": [
                    {
                        "eval_time": case.eval_time,
                        "alertname": case.alert,
                        "exp_alerts": [expected_alert(v, case, f, templates) for f in case.fires],
                    }
                ],
            }
        )
    return {"rule_files": [rules_path], "evaluation_interval": "1m", "tests": tests}


def single_rule_file(rule_file: dict, alert: str) -> dict:
    """The rendered rule of `alert`, alone in its group: promtool evaluates every loaded rule at
    every step of every test, so one alert per file keeps the suite fast."""
    for group in rule_file["groups"]:
        for rule in group["rules"]:
            if rule["alert"] == alert:
                return {"groups": [{**group, "rules": [rule]}]}
    raise KeyError(alert)


def write_suite(v: Variant, params: AlertParams, tmp: Path, only: str | None = None) -> list[Path]:
    """Render `params`' rules and the cases built from `v` (the thresholds they straddle come
    from `v`, not from `params`) into `tmp`: per alert one rule file and one test file."""
    text = rule_file_yaml(build_rule_groups(v.app, v.metrics, params))
    (tmp / "rules.yml").write_text(text)
    rule_file = yaml.safe_load(text)
    templates = annotation_templates(rule_file)
    by_alert: dict[str, list[Case]] = {}
    for case in all_cases(v):
        if only in (None, case.alert):
            by_alert.setdefault(case.alert, []).append(case)
    paths = []
    for alert, cases in by_alert.items():
        rules_name = f"rules-{alert}.yml"
        (tmp / rules_name).write_text(to_yaml(single_rule_file(rule_file, alert)))
        path = tmp / f"test-{alert}.yml"
        path.write_text(yaml.safe_dump(promtool_suite(v, cases, templates, rules_name)))
        paths.append(path)
    return paths


def run_promtool(*args: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL, "promtool is not installed (Debian package `prometheus`)"
    return subprocess.run(
        [PROMTOOL, *map(str, args)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


VARIANTS = variants()
IDS = [f"{v.app}-{v.stack}" for v in VARIANTS]


@pytest.mark.parametrize("v", VARIANTS, ids=IDS)
def test_promtool_check_rules_passes(v: Variant, tmp_path: Path) -> None:
    groups = build_rule_groups(v.app, v.metrics, v.params)
    (tmp_path / "rules.yml").write_text(rule_file_yaml(groups))
    result = run_promtool("check", "rules", "rules.yml", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    count = sum(len(g.rules) for g in groups)
    assert f"SUCCESS: {count} rules found" in result.stdout


@pytest.mark.parametrize("v", VARIANTS, ids=IDS)
def test_every_alert_has_a_firing_case_and_a_near_miss(v: Variant) -> None:
    names = {r.name for g in build_rule_groups(v.app, v.metrics, v.params) for r in g.rules}
    cases = all_cases(v)
    firing = {c.alert for c in cases if c.fires}
    quiet = {c.alert for c in cases if not c.fires}
    assert names == firing == quiet
    assert names <= set(EXPECTED_PRIORITY)


@pytest.mark.parametrize("v", VARIANTS, ids=IDS)
def test_promtool_unit_tests_pass(v: Variant, tmp_path: Path) -> None:
    files = write_suite(v, v.params, tmp_path)
    result = run_promtool("test", "rules", *files, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


@pytest.mark.parametrize(
    ("change", "alert"),
    [
        ({"thresholds": Thresholds(error_ratio=0.048, latency_quantile=0.95)}, "HighErrorRate"),
        ({"db_pool_size": 19}, "DatabaseConnectionPoolExhausted"),
        ({"backup_margin_seconds": 7_200 + 600}, "BackupMissing"),
        ({"slo_target": 0.9995}, "ErrorBudgetBurnFast"),
    ],
)
def test_suite_catches_a_wrong_threshold(change: dict, alert: str, tmp_path: Path) -> None:
    """The near misses are near: nudging one threshold makes promtool fail on that alert."""
    v = next(x for x in VARIANTS if x.app == "qr" and x.stack == "prod")
    files = write_suite(v, replace(v.params, **change), tmp_path, only=alert)
    result = run_promtool("test", "rules", *files, cwd=tmp_path)
    assert result.returncode != 0
    assert f"alertname: {alert}," in result.stdout + result.stderr
