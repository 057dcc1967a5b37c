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
        def has_base_backup(self, log: Any) -> bool:
            return True

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


class FirstBackupJob:
    """A job whose archive holds `existing` finished base backups; records what ran when."""

    def __init__(self, existing: int, heartbeat: Path) -> None:
        self.existing, self.heartbeat, self.events = existing, heartbeat, []  # type: ignore[var-annotated]

    @property
    def archive(self) -> Any:
        class Where:
            def where(self) -> str:
                return "s3://b/backups/pitr/qr"

        return Where()

    def has_base_backup(self, log: Any) -> bool:
        self.events.append("listed")
        return self.existing > 0

    def run(self) -> dict[str, Any]:
        self.events.append(("backup", promised(self.heartbeat)))
        self.existing += 1
        return {"backup_id": f"2026120{self.existing}T000000"}


@pytest.mark.parametrize(("existing", "startup_backups"), [(0, 1), (1, 0)])
def test_the_loop_backs_up_at_start_only_when_the_archive_has_none(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, existing: int, startup_backups: int
) -> None:
    """PITR just turned on: the first base backup is taken at once, not at the first firing
    (01:30 UTC by default), so something is recoverable and BaseBackupMissing does not page."""
    heartbeat = tmp_path / "deadline"
    job = FirstBackupJob(existing, heartbeat)
    fires: list[str] = []

    def next_fire(cron: str, now: datetime) -> datetime:
        fires.append(f"after {sum(1 for e in job.events if e != 'listed')} backups")
        return datetime.now(UTC) + timedelta(seconds=0.05)

    monkeypatch.setattr(basebackup, "next_fire", next_fire)
    lines: list[str] = []
    basebackup.run_on_schedule(job, "30 1 * * *", lines.append, rounds=1, heartbeat=heartbeat)  # type: ignore[arg-type]
    assert job.events[0] == "listed"
    backups = [e for e in job.events if e != "listed"]
    assert len(backups) == startup_backups + 1  # then the scheduled round
    assert fires == [f"after {startup_backups} backups"]  # the first one came before any wait
    for _, during in backups:
        assert wl.BASE_BACKUP_MAX_SECONDS - 5 <= during <= wl.BASE_BACKUP_MAX_SECONDS
    first = [x for x in lines if "taking the first one now" in x]
    assert len(first) == startup_backups
