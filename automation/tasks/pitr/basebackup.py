"""`base-backup`: one barman-cloud base backup (+ retention, + the success metric), or the
sidecar's loop doing that on a schedule."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from automation.errors import OpsError, UserInputError
from automation.tasks.pitr.barman import (
    Archive,
    apply_retention,
    list_base_backups,
    take_base_backup,
)
from automation.tasks.pitr.schedule import next_fire
from automation.tasks.pitr.state import data_directory
from contract import wal_layout as wl

METRIC = "opsplane_pitr_base_backup_last_success_timestamp_seconds"  # alerting.model
Log = Callable[[str], None]


@dataclass(frozen=True)
class BaseBackupJob:
    database_url: str
    pgdata: Path
    archive: Archive
    retention_days: int | None = None
    pushgateway: str | None = None

    def check(self) -> None:
        """Refuse before any backup: bad retention, or a PGDATA that is not the server's."""
        if self.retention_days is not None and self.retention_days < 1:
            raise UserInputError(f"--retention-days {self.retention_days}: use at least 1")
        served = data_directory(self.database_url)
        here = os.path.realpath(self.pgdata)
        if not self.pgdata.is_dir() or here != os.path.realpath(served):
            raise UserInputError(
                f"--pgdata {self.pgdata}: the server's data directory is {served}; run "
                "base-backup where it is mounted (the database pod's base-backup sidecar)"
            )

    def has_base_backup(self, log: Log) -> bool:
        """Whether the archive already holds a finished base backup of this server (its name in
        the bucket is the app: barman-cloud-backup-list). A listing that fails counts as none:
        one extra backup costs less than nothing recoverable until the schedule fires."""
        try:
            backups = list_base_backups(self.archive)
        except OpsError as exc:
            log(f"listing base backups failed ({exc}); backing up now to be sure")
            return False
        return any(b.status == "DONE" for b in backups)

    def run(self) -> dict[str, Any]:
        """One backup, then retention, then the success metric."""
        backup_id = take_base_backup(self.database_url, self.archive)
        document: dict[str, Any] = {"backup_id": backup_id, "archive": self.archive.where()}
        if self.retention_days is not None:
            apply_retention(self.archive, self.retention_days)
            document["retention"] = f"RECOVERY WINDOW OF {self.retention_days} DAYS"
        if self.pushgateway:
            push_success(self.pushgateway, self.archive.app)
        return document


def push_success(gateway: str, app: str) -> None:
    from automation.tasks.backups import prometheus_text, push_metrics

    body = prometheus_text(
        [(METRIC, {"app": app}, time.time())],
        {METRIC: "Unix time of the newest successful base backup (point-in-time recovery)"},
    )
    push_metrics(gateway, "opsplane-base-backup", {"app": app}, body)


def run_on_schedule(
    job: BaseBackupJob,
    cron: str,
    log: Log,
    *,
    rounds: int | None = None,
    heartbeat: Path = Path(wl.HEARTBEAT_FILE),
) -> None:
    """At start, back up at once when the archive holds no finished base backup of this server
    (PITR just turned on: without one nothing is recoverable and BaseBackupMissing pages before
    the schedule first fires). Then sleep until `cron` fires, back up, repeat (`rounds` times, or
    forever). A failed round is logged and the loop goes on: the BaseBackupMissing alert watches
    the success metric. `heartbeat` holds the time by which the loop writes again (the sidecar's
    liveness probe)."""
    promise(heartbeat, wl.BASE_BACKUP_MAX_SECONDS)  # the listing and a first backup may run
    if not job.has_base_backup(log):
        log(f"no base backup in {job.archive.where()} yet: taking the first one now")
        _round(job, log)
    done = 0
    while rounds is None or done < rounds:
        fire = next_fire(cron, datetime.now(UTC))
        log(f"next base backup at {fire:%Y-%m-%d %H:%M} UTC")
        wait_until(fire, heartbeat)
        promise(heartbeat, wl.BASE_BACKUP_MAX_SECONDS)
        _round(job, log)
        done += 1


def _round(job: BaseBackupJob, log: Log) -> None:
    try:
        log(f"base backup {job.run()['backup_id']} done")
    except OpsError as exc:
        log(f"base backup failed: {exc}")


def wait_until(fire: datetime, heartbeat: Path, *, beat: float = 60.0) -> None:
    """Sleep until `fire`, renewing the liveness promise every `beat` seconds."""
    while (left := (fire - datetime.now(UTC)).total_seconds()) > 0:
        promise(heartbeat, wl.HEARTBEAT_IDLE_SECONDS)
        time.sleep(min(beat, left))


def promise(heartbeat: Path, seconds: float) -> None:
    """Write the Unix time by which the loop will write again (whole, as `date +%s` reads it)."""
    partial = heartbeat.with_name(heartbeat.name + ".partial")
    partial.write_text(f"{int(time.time() + seconds)}\n")
    os.replace(partial, heartbeat)  # the probe never reads half a number
