"""The base-backup sidecar's liveness: the schedule loop's promise (a Unix time in a file) and the
probe the program declares, run as the kubelet would (`sh -c`)."""

from __future__ import annotations

import subprocess
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from automation.tasks.pitr import basebackup
from contract import wal_layout as wl


def probe(path: Path) -> int:
    return subprocess.run(wl.heartbeat_probe(str(path)), capture_output=True).returncode


def promised(path: Path) -> float:
    return int(path.read_text()) - time.time()


def test_the_probe_passes_while_the_promise_holds_and_fails_after(tmp_path: Path) -> None:
    heartbeat = tmp_path / "dead line"  # quoted in the command
    assert probe(heartbeat) != 0  # never written: not alive yet
    basebackup.promise(heartbeat, 180)
    assert probe(heartbeat) == 0 and 178 <= promised(heartbeat) <= 180
    basebackup.promise(heartbeat, -1)  # a promise that ran out: the loop is wedged
    assert probe(heartbeat) != 0


def test_waiting_renews_the_promise_every_beat(tmp_path: Path) -> None:
    heartbeat = tmp_path / "deadline"
    writes: list[float] = []
    real_promise = basebackup.promise

    def counting(path: Path, seconds: float) -> None:
        writes.append(seconds)
        real_promise(path, seconds)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(basebackup, "promise", counting)
        started = time.monotonic()
        basebackup.wait_until(datetime.now(UTC) + timedelta(seconds=0.5), heartbeat, beat=0.1)
    assert time.monotonic() - started >= 0.45
    assert len(writes) >= 3 and set(writes) == {wl.HEARTBEAT_IDLE_SECONDS}
    assert probe(heartbeat) == 0


def test_a_backup_round_promises_the_longest_a_backup_may_take(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    heartbeat = tmp_path / "deadline"
    seen: list[float] = []

    class Job:
        def run(self) -> dict[str, Any]:
            seen.append(promised(heartbeat))  # what the probe reads while the backup runs
            return {"backup_id": "20261201T000000"}

    fire = datetime.now(UTC) + timedelta(seconds=0.2)
    monkeypatch.setattr(basebackup, "next_fire", lambda cron, now: fire)
    lines: list[str] = []
    basebackup.run_on_schedule(Job(), "* * * * *", lines.append, rounds=1, heartbeat=heartbeat)  # type: ignore[arg-type]
    [during] = seen
    assert wl.BASE_BACKUP_MAX_SECONDS - 5 <= during <= wl.BASE_BACKUP_MAX_SECONDS
    assert lines[-1] == "base backup 20261201T000000 done"
