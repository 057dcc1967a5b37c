"""The point-in-time recovery alerts (opsplane:pitr.apps), checked and unit-tested by promtool:
WAL archiving failing (P1), archive lag over 5 minutes (P1), no base backup within 26 h (P2).
Each has a history where it fires and a near miss where it must not."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from components.alerting.manifests import rule_file_yaml, to_yaml
from components.alerting.model import (
    ARCHIVER_ARCHIVED,
    ARCHIVER_FAILED,
    ARCHIVER_LAST_ARCHIVE_AGE,
    BASE_BACKUP_LAST_SUCCESS,
)
from components.alerting.rules import build_rule_groups
from tests.alerts.test_promtool_rules import (
    EXPECTED_SEVERITY,
    RUNBOOK,
    Case,
    Variant,
    annotation_templates,
    render_template,
    run_promtool,
    sel,
    single_rule_file,
    variants,
)

PRIORITY = {"WalArchivingFailing": "P1", "WalArchiveLag": "P1", "BaseBackupMissing": "P2"}
PITR_VARIANTS = [replace(v, params=replace(v.params, pitr=True)) for v in variants()]
IDS = [f"{v.app}-{v.stack}" for v in PITR_VARIANTS]


def cases(v: Variant) -> list[Case]:
    job = {"job": v.metrics.database_job}
    failed, archived = sel(ARCHIVER_FAILED, **job), sel(ARCHIVER_ARCHIVED, **job)
    age = sel(ARCHIVER_LAST_ARCHIVE_AGE, **job)
    inserted = sel("pg_stat_database_tup_inserted", datname="qr", **job)
    updated = sel("pg_stat_database_tup_updated", datname="qr", **job)
    base = sel(BASE_BACKUP_LAST_SUCCESS, app=v.app)
    lag, limit = v.params.archive_lag_seconds, v.params.base_backup_limit_seconds
    at = 27 * 3600  # eval time of the base backup cases, in seconds
    return [
        Case("WalArchivingFailing", "failures, nothing archived",
             [(failed, "0+1x40"), (archived, "7x40")], "30m", [job]),
        Case("WalArchivingFailing", "failures but archiving goes on",
             [(failed, "0+1x40"), (archived, "0+1x40")], "30m"),
        Case("WalArchiveLag", "newest segment ages past the limit while rows are inserted",
             [(age, f"0+60x{lag // 60 + 10}"), (inserted, f"0+5x{lag // 60 + 10}")],
             f"{lag // 60 + 4}m", [job]),
        Case("WalArchiveLag", "... or only updated",
             [(age, f"0+60x{lag // 60 + 10}"), (updated, f"0+1x{lag // 60 + 10}")],
             f"{lag // 60 + 4}m", [job]),
        Case("WalArchiveLag", "exactly at the limit",
             [(age, f"{lag}x20"), (inserted, "0+5x20")], "15m"),
        Case("WalArchiveLag", "an idle server: the archive ages, nothing is written",
             [(age, f"0+60x{lag // 60 + 30}"), (inserted, f"42x{lag // 60 + 30}")],
             f"{lag // 60 + 20}m"),
        Case("BaseBackupMissing", "newest older than the limit",
             [(base, f"{at - limit - 900}x1700")], f"{at // 60}m", [{}]),
        Case("BaseBackupMissing", "never recorded", [(sel("up", job="other"), "1x30")], "20m",
             [{}]),
        Case("BaseBackupMissing", "just inside the limit",
             [(base, f"{at - limit + 60}x1700")], f"{at // 60}m"),
    ]  # fmt: skip


def expected(v: Variant, alert: str, specific: dict[str, str], templates: dict) -> dict:
    labels = {**specific, "app": v.app, "namespace": v.params.namespace, "stack": v.stack}
    labels |= {"priority": PRIORITY[alert], "severity": EXPECTED_SEVERITY[PRIORITY[alert]]}
    notes = {k: render_template(t, labels) for k, t in templates[alert].items()}
    notes["runbook_url"] = f"{RUNBOOK}#alert-{alert.lower()}"
    return {"exp_labels": labels, "exp_annotations": notes}


def suite(v: Variant, tmp: Path) -> list[Path]:
    rule_file = yaml.safe_load(rule_file_yaml(build_rule_groups(v.app, v.metrics, v.params)))
    templates = annotation_templates(rule_file)
    paths = []
    for alert in PRIORITY:
        (tmp / f"rules-{alert}.yml").write_text(to_yaml(single_rule_file(rule_file, alert)))
        tests = [
            {
                "name": f"{v.app}/{v.stack} {c.alert}: {c.what}",
                "interval": "1m",
                "input_series": [{"series": s, "values": vals} for s, vals in c.series],
                "alert_rule_test": [
                    {
                        "eval_time": c.eval_time,
                        "alertname": alert,
                        "exp_alerts": [expected(v, alert, f, templates) for f in c.fires],
                    }
                ],
            }
            for c in cases(v)
            if c.alert == alert
        ]
        path = tmp / f"test-{alert}.yml"
        doc = {"rule_files": [f"rules-{alert}.yml"], "evaluation_interval": "1m", "tests": tests}
        path.write_text(yaml.safe_dump(doc))
        paths.append(path)
    return paths


def test_pitr_alerts_only_when_enabled() -> None:
    v = variants()[0]
    names = {r.name for g in build_rule_groups(v.app, v.metrics, v.params) for r in g.rules}
    assert not names & set(PRIORITY)
    on = replace(v.params, pitr=True)
    rules = {r.name: r for g in build_rule_groups(v.app, v.metrics, on) for r in g.rules}
    assert {name: rules[name].priority for name in PRIORITY} == PRIORITY


@pytest.mark.parametrize("v", PITR_VARIANTS, ids=IDS)
def test_pitr_rules_pass_promtool_check_and_unit_tests(v: Variant, tmp_path: Path) -> None:
    groups = build_rule_groups(v.app, v.metrics, v.params)
    (tmp_path / "rules.yml").write_text(rule_file_yaml(groups))
    checked = run_promtool("check", "rules", "rules.yml", cwd=tmp_path)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert {c.alert for c in cases(v) if c.fires} == {c.alert for c in cases(v) if not c.fires}
    result = run_promtool("test", "rules", *suite(v, tmp_path), cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_looser_lag_limit_is_caught(tmp_path: Path) -> None:
    """The near misses are near: a lag limit one minute longer fails the firing case."""
    v = PITR_VARIANTS[0]
    looser = replace(
        v, params=replace(v.params, archive_lag_seconds=v.params.archive_lag_seconds + 120)
    )
    rule_file = yaml.safe_load(rule_file_yaml(build_rule_groups(v.app, v.metrics, looser.params)))
    paths = suite(v, tmp_path)  # cases from the real limit ...
    (tmp_path / "rules-WalArchiveLag.yml").write_text(
        to_yaml(single_rule_file(rule_file, "WalArchiveLag"))  # ... rules from the looser one
    )
    result = run_promtool("test", "rules", *[p for p in paths if "Lag" in p.name], cwd=tmp_path)
    assert result.returncode != 0
