"""The report model and the concurrent runner: a raising group is that group's FAIL, a hung group
is "timed out after N s" at the deadline (without waiting for it), JSON round-trips; the PITR
hook; `--watch` refreshes until Ctrl-C."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from automation.operations.status import (
    Check,
    Group,
    StatusReport,
    StatusTargets,
    run_checks,
    run_groups,
)
from automation.tasks.checks import pitr
from automation.tasks.pitr.state import ArchiverStats, NewestWal, PitrState
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
    assert elapsed < 0.5 + 1.0  # the deadline, not the 30 s the hung group would take
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


def test_pitr_on_without_a_bucket_fails_with_the_next_step() -> None:
    report = run_checks(StatusTargets(app="qr", pitr=True), timeout=2)
    [check] = report.checks
    assert (check.name, check.status) == ("pitr", "fail")
    assert "no --bucket" in check.detail and check.next == "docs/runbook.md#status-pitr"


def pitr_reading(**changes: object) -> PitrState:
    now = datetime.now(UTC)
    state = PitrState("s3://b/backups/pitr/qr/", window_start=now - timedelta(hours=3))
    state.window_end = now - timedelta(seconds=40)
    state.newest_wal = NewestWal("000000010000000000000007", "k", now - timedelta(seconds=40))
    state.newest_wal_age = 40.0
    state.archiver = ArchiverStats(7, "000000010000000000000007", now, 0, None, None, waiting=0)
    for name, value in changes.items():
        setattr(state, name, value)
    return state


def test_pitr_healthy_window_and_archiving_pass() -> None:
    window, archiving = pitr.judge(pitr_reading(), "qr")
    assert (window.name, window.status) == ("pitr:window", "pass")
    assert "recoverable" in window.detail
    assert (archiving.name, archiving.status) == ("pitr:archiving", "pass")
    assert "archived 40 s ago" in archiving.detail


def test_pitr_no_window_fails_and_names_base_backup() -> None:
    state = pitr_reading(window_start=None, window_end=None, problems=["no complete base backup"])
    window, _ = pitr.judge(state, "qr")
    assert window.status == "fail" and "no complete base backup" in window.detail
    assert "base-backup" in (window.next or "")


def test_pitr_archiving_failing_and_lag_fail() -> None:
    now = datetime.now(UTC)
    failing = ArchiverStats(7, "x", now - timedelta(minutes=9), 3, "000000010000000000000008", now)
    _, archiving = pitr.judge(pitr_reading(archiver=failing), "qr")
    assert archiving.status == "fail" and "FAILING: 3 failed" in archiving.detail
    stuck = ArchiverStats(7, "x", now - timedelta(minutes=9), 0, None, None, waiting=4)
    _, archiving = pitr.judge(pitr_reading(archiver=stuck, newest_wal_age=540.0), "qr")
    assert archiving.status == "fail" and "4 segments waiting" in archiving.detail


def test_watch_refreshes_until_interrupted() -> None:
    api = HttpService()
    reports = re.compile(r"^(PASS|WARN)  health:api  ", re.MULTILINE)  # WARN: a slow answer
    lines: list[str] = []
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "automation", "status", "--app", "qr",
             "--health-url", f"api={api.url()}", "--watch", "1"],
            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env=dict(os.environ, COLUMNS="200", PYTHONUNBUFFERED="1"),
        )  # fmt: skip
        assert proc.stdout is not None
        # Ctrl-C only once three reports are on stdout (counting server hits raced: a Ctrl-C
        # during a refresh abandons that round, and the report of a hit may not be printed yet).
        deadline = time.monotonic() + 30
        while len(reports.findall("".join(lines))) < 3 and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
        proc.send_signal(signal.SIGINT)
        rest, err = proc.communicate(timeout=20)
    finally:
        api.close()
    out = "".join(lines) + rest
    assert api.hits >= 3
    assert proc.returncode == 0, err
    assert len(reports.findall(out)) >= 3, out
    assert out.count("--- ") >= 2  # a timestamped separator per refresh
