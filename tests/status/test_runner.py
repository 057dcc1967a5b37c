"""The report model and the concurrent runner: a raising group is that group's FAIL, a hung group
is "timed out after N s" at the deadline (without waiting for it), JSON round-trips; the PITR
hook; `--watch` refreshes until Ctrl-C."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from automation.operations.status import (
    Check,
    Group,
    StatusReport,
    StatusTargets,
    run_checks,
    run_groups,
)
from automation.tasks.checks import backups
from tests.status import HttpService

REPO = Path(__file__).resolve().parents[2]


def test_a_raising_group_fails_alone_and_a_hung_one_times_out_at_the_deadline() -> None:
    release = threading.Event()

    def hang() -> list[Check]:
        release.wait(30)
        return [Check("slow", "pass", "late")]

    def boom() -> list[Check]:
        raise RuntimeError("connection reset\n by peer")

    groups = [
        Group("ok", lambda: [Check("ok", "pass", "fine")], "n/a"),
        Group("boom", boom, "docs/runbook.md#x"),
        Group("slow", hang, "docs/runbook.md#y"),
        Group("empty", list, "n/a"),
    ]
    started = time.monotonic()
    report = run_groups(groups, 0.5, app="qr")
    elapsed = time.monotonic() - started
    release.set()
    assert elapsed < 0.5 + 0.3
    assert [c.to_json() for c in report.checks] == [
        {"name": "ok", "status": "pass", "detail": "fine", "next": None},
        {"name": "boom", "status": "fail", "detail": "connection reset by peer",
         "next": "docs/runbook.md#x"},
        {"name": "slow", "status": "fail", "detail": "timed out after 0.5 s",
         "next": "docs/runbook.md#y"},
        {"name": "empty", "status": "pass", "detail": "nothing to check", "next": None},
    ]  # fmt: skip
    assert report.failed and report.worst == "fail"
    assert report.counts() == {"pass": 2, "warn": 0, "fail": 2}


def test_report_json_round_trips() -> None:
    report = StatusReport(
        "qr", [Check("a", "warn", "x", "do y"), Check("b", "pass", "z")], stack="dev", seconds=0.2
    )
    document = json.loads(json.dumps(report.to_json()))
    assert document["status"] == "warn" and document["failed"] is False
    assert StatusReport.from_json(document) == report


def test_pitr_on_without_the_pitr_status_warns_instead_of_guessing() -> None:
    report = run_checks(StatusTargets(app="qr", pitr=True), timeout=2)
    [check] = report.checks
    assert check.name == "pitr" and check.status == "warn"
    assert "status_checks is missing" in check.detail
    assert check.next == "docs/runbook.md#status-pitr"


def test_pitr_checks_come_from_the_pitr_module(monkeypatch) -> None:
    import types

    module = types.ModuleType("automation.tasks.pitr")
    module.status_checks = lambda targets, timeout: [  # type: ignore[attr-defined]
        Check("pitr:archive", "pass", f"{targets.app}: archiving, lag 3 s")
    ]
    monkeypatch.setitem(sys.modules, "automation.tasks.pitr", module)
    assert backups.pitr_checks(StatusTargets(app="qr", pitr=True), 2) == [
        Check("pitr:archive", "pass", "qr: archiving, lag 3 s")
    ]


def test_watch_refreshes_until_interrupted() -> None:
    api = HttpService()
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "automation", "status", "--app", "qr",
             "--health-url", f"api={api.url()}", "--watch", "1"],
            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env=dict(os.environ, COLUMNS="200"),
        )  # fmt: skip
        deadline = time.monotonic() + 20
        while api.hits < 3 and time.monotonic() < deadline:
            time.sleep(0.1)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=20)
    finally:
        api.close()
    assert api.hits >= 3
    assert proc.returncode == 0, err
    assert out.count("PASS  health:api") >= 3
    assert out.count("--- ") >= 2  # a timestamped separator per refresh
