"""What can be recovered right now: base backups, the recoverable window, the newest archived WAL
and its age, and (given the server) whether archiving is failing.

The window starts at the end of the oldest complete base backup (the first consistent point)
and ends at the newest commit in the archived WAL, found by reading the newest segments with
`pg_waldump`: a time after it is in WAL that never left the server. When no commit follows the
newest base backup, the window ends at that backup's end.
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from automation.errors import TaskFailed
from automation.tasks.io import pgtools, s3io
from automation.tasks.pitr.barman import Archive, BaseBackup, fetch_wal, list_base_backups
from contract import wal_layout as wl

LAG_LIMIT = 300.0  # seconds without a new WAL segment before archiving counts as lagging
_COMMIT = re.compile(
    r"lsn: ([0-9A-F]+/[0-9A-F]+),.*desc: COMMIT (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d+)?) UTC"
)


@dataclass(frozen=True)
class NewestWal:
    segment: str
    key: str
    archived_at: datetime


@dataclass
class ArchiverStats:
    """pg_stat_archiver of the live server."""

    archived_count: int
    last_archived_wal: str | None
    last_archived_time: datetime | None
    failed_count: int
    last_failed_wal: str | None
    last_failed_time: datetime | None
    waiting: int = 0  # segments PostgreSQL keeps until they are archived (`.ready` files)

    @property
    def failing(self) -> bool:
        if self.last_failed_time is None:
            return False
        return self.last_archived_time is None or self.last_failed_time > self.last_archived_time


@dataclass
class PitrState:
    """`pitr status`, and what the `status` command checks."""

    archive: str
    base_backups: list[BaseBackup] = field(default_factory=list)
    window_start: datetime | None = None
    window_end: datetime | None = None
    newest_wal: NewestWal | None = None
    newest_wal_age: float | None = None  # seconds
    archiver: ArchiverStats | None = None
    problems: list[str] = field(default_factory=list)

    @property
    def archiving_failing(self) -> bool:
        return bool(self.archiver and self.archiver.failing)

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_json(self) -> dict[str, Any]:
        newest = self.newest_wal
        stats = self.archiver
        return {
            "archive": self.archive,
            "base_backups": [b.to_dict() for b in self.base_backups],
            "window": {
                "start": self.window_start.isoformat() if self.window_start else None,
                "end": self.window_end.isoformat() if self.window_end else None,
            },
            "newest_wal": {
                "segment": newest.segment if newest else None,
                "archived_at": newest.archived_at.isoformat() if newest else None,
                "age_seconds": self.newest_wal_age,
            },
            "archiving_failing": self.archiving_failing,
            "archiver": None if stats is None else {
                "archived_count": stats.archived_count,
                "last_archived_wal": stats.last_archived_wal,
                "failed_count": stats.failed_count,
                "waiting_segments": stats.waiting,
                "last_failed_wal": stats.last_failed_wal,
                "last_failed_time": stats.last_failed_time.isoformat()
                if stats.last_failed_time else None,
            },
            "problems": self.problems,
            "ok": self.ok,
            # the one-line failure every --json report carries (docs/automation.md)
            "error": None if self.ok else "; ".join(self.problems) or "not recoverable",
        }  # fmt: skip


def wal_segments(
    client: Any, archive: Archive, floor: str = ""
) -> list[tuple[str, dict[str, Any]]]:
    """(segment name, S3 object) of the archived segments from `floor` on (the newest base
    backup's end segment), sorted; without a floor, those of the newest log directory (barman
    groups segments in one directory per timeline+log id, 256 segments each)."""
    root = wl.wal_prefix(archive.prefix, archive.app)
    with s3io.s3_errors(client, archive.bucket):
        pages = client.get_paginator("list_objects_v2").paginate(
            Bucket=archive.bucket, Prefix=root, Delimiter="/"
        )
        dirs = sorted(p["Prefix"] for page in pages for p in page.get("CommonPrefixes", []))
    wanted = [d for d in dirs if d[len(root) :].rstrip("/") >= floor[:16]] if floor else dirs[-1:]
    found: list[tuple[str, dict[str, Any]]] = []
    for directory in wanted:
        for obj in s3io.list_keys(client, archive.bucket, directory):
            name = wl.segment_name(obj["Key"])
            plain = obj["Key"].rsplit("/", 1)[-1].split(".")[1:] in ([], ["gz"])
            if name is not None and plain and name >= floor:
                found.append((name, obj))
    return sorted(found, key=lambda item: item[0])


def newest_wal(segments: list[tuple[str, dict[str, Any]]]) -> NewestWal | None:
    if not segments:
        return None
    name, obj = segments[-1]
    return NewestWal(name, obj["Key"], obj["LastModified"])


@dataclass(frozen=True)
class Commit:
    """A commit record: its time and where its record starts (a recovery can stop right after
    it with `recovery_target_lsn`: a time target stops only before a later commit)."""

    time: datetime
    lsn: str


def last_commit_in(segment_file: Path, pg_major: int) -> Commit | None:
    """The newest commit `pg_waldump` finds in one segment file (None: no commit)."""
    waldump = pgtools.find_pg_tool("pg_waldump", pg_major)
    done = subprocess.run(
        [str(waldump), "--rmgr=Transaction", str(segment_file)],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "TZ": "UTC", "PGTZ": "UTC"},
        timeout=120,
    )
    found = _COMMIT.findall(done.stdout)
    if not found:
        return None
    lsn, stamp = found[-1]
    return Commit(datetime.fromisoformat(stamp).replace(tzinfo=UTC), lsn)


def newest_commit(
    archive: Archive, segments: list[tuple[str, dict[str, Any]]], pg_major: int, floor: str
) -> Commit | None:
    """The newest commit in the archive from segment `floor` on, reading segments newest first
    until one holds a commit (a long bulk load can fill many segments without one)."""
    candidates = [name for name, _ in segments if name >= floor]
    with tempfile.TemporaryDirectory(prefix="opsplane-wal-") as tmp:
        for name in reversed(candidates):
            path = Path(tmp) / name
            if not fetch_wal(archive, name, path):
                continue
            found = last_commit_in(path, pg_major)
            path.unlink(missing_ok=True)
            if found is not None:
                return found
    return None


@dataclass(frozen=True)
class Window:
    """Earliest and latest restorable time, and the newest commit after the newest base backup
    (None when none follows it: the window then ends at that backup's end)."""

    start: datetime
    end: datetime
    last_commit: Commit | None


def window(
    archive: Archive, backups: list[BaseBackup], segments: list[tuple[str, dict[str, Any]]]
) -> Window | None:
    """The recoverable window; None without a complete base backup."""
    done = [b for b in backups if b.status == "DONE"]
    if not done:
        return None
    newest = done[-1]
    commit = newest_commit(archive, segments, newest.pg_major, newest.end_wal)
    if commit is not None and commit.time <= newest.end:
        commit = None  # committed while the backup ran: the backup's end already holds it
    return Window(done[0].end, commit.time if commit else newest.end, commit)


def _floor(backups: list[BaseBackup]) -> str:
    """The newest complete base backup's end segment: the window needs no older WAL."""
    done = [b for b in backups if b.status == "DONE"]
    return done[-1].end_wal if done else ""


def archiver_stats(database_url: str) -> ArchiverStats:
    with pgtools.connect(database_url) as conn, pgtools.db_errors("reading pg_stat_archiver"):
        row = conn.execute(
            """SELECT archived_count, last_archived_wal, last_archived_time, failed_count,
                      last_failed_wal, last_failed_time FROM pg_stat_archiver"""
        ).fetchone()
        waiting = conn.execute(
            "SELECT count(*) FROM pg_ls_archive_statusdir() WHERE name LIKE '%.ready'"
        ).fetchone()
    assert row is not None
    count, last_wal, last_time, failed, failed_wal, failed_time = row
    return ArchiverStats(
        count,
        last_wal,
        last_time,
        failed,
        failed_wal,
        failed_time,
        waiting=int(waiting[0]) if waiting else 0,
    )


def pitr_state(
    bucket: str,
    app: str,
    prefix: str,
    *,
    database_url: str | None = None,
    client: Any = None,
    endpoint: str | None = None,
    region: str | None = None,
    now: datetime | None = None,
) -> PitrState:
    """Base backups, the recoverable window, the newest archived WAL and its age; with
    `database_url`, the server's archiver too (is archiving failing?). Problems are listed
    (one line each) rather than raised, except when S3 itself cannot be read."""
    archive = Archive(bucket, app, prefix, endpoint, region)
    client = client or archive.client()
    state = PitrState(archive.where())
    state.base_backups = list_base_backups(archive)
    segments = wal_segments(client, archive, _floor(state.base_backups))
    state.newest_wal = newest_wal(segments)
    found = window(archive, state.base_backups, segments)
    if found is not None:
        state.window_start, state.window_end = found.start, found.end
    moment = now or datetime.now(UTC)
    if state.newest_wal is not None:
        state.newest_wal_age = round((moment - state.newest_wal.archived_at).total_seconds(), 1)
    if database_url is not None:
        try:
            state.archiver = archiver_stats(database_url)
        except TaskFailed as exc:
            state.problems.append(f"archiver of the server unknown: {exc}")
    state.problems += _problems(state)
    return state


def lagging(state: PitrState) -> bool:
    """Segments wait on the server and nothing reached S3 for LAG_LIMIT (an idle server makes
    no WAL, so an old newest segment alone is not lag)."""
    age = state.newest_wal_age
    stats = state.archiver
    return stats is not None and stats.waiting > 0 and age is not None and age > LAG_LIMIT


def _problems(state: PitrState) -> list[str]:
    problems = []
    if state.archiving_failing:
        stats = state.archiver
        assert stats is not None
        problems.append(
            f"WAL archiving is failing: {stats.failed_count} failures, last for "
            f"{stats.last_failed_wal} at {stats.last_failed_time:%Y-%m-%d %H:%M:%S} UTC; "
            "PostgreSQL keeps the WAL until it is archived "
            "(see docs/runbook.md#alert-walarchivingfailing)"
        )
    if state.newest_wal is None:
        problems.append("no WAL archived yet (is archive_mode on with the archive_command?)")
    elif lagging(state):
        problems.append(
            f"archive lag: the newest WAL was archived {state.newest_wal_age:.0f}s ago and "
            f"{state.archiver.waiting if state.archiver else '?'} segments wait on the server"
        )
    if not any(b.status == "DONE" for b in state.base_backups):
        problems.append("no complete base backup: take one with `base-backup`")
    return problems


def data_directory(database_url: str) -> str:
    """The server's PGDATA (`SHOW data_directory`, superuser or pg_read_all_settings)."""
    with pgtools.connect(database_url) as conn, pgtools.db_errors("reading data_directory"):
        row = conn.execute("SHOW data_directory").fetchone()
    assert row is not None
    return str(row[0])
