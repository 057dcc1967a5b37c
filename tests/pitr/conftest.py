"""A PostgreSQL 16 cluster (pgserver's binaries, run as the unprivileged user the tool uses) that
archives every WAL segment to moto S3 over HTTP with barman-cloud, and helpers to write
timestamped batches and run the CLI."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest

from automation.tasks.pitr.barman import Archive, take_base_backup
from automation.tasks.pitr.instance import Instance, run_as, tool_path
from contract import wal_layout as wl
from tests.services import S3, free_port, s3, s3_server

REPO = Path(__file__).resolve().parents[2]
APP = "qr"
PREFIX = "backups"


def pg_bin() -> Path:
    import pgserver

    return Path(pgserver.__file__).parent / "pginstall" / "bin"


def aws_env(endpoint: str) -> dict[str, str]:
    return {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }


@dataclass
class Cluster:
    """The archiving cluster and its app database (`qr`)."""

    instance: Instance
    bucket: str
    endpoint: str
    root: Path

    @property
    def url(self) -> str:
        return self.instance.url("qr")

    @property
    def admin(self) -> str:
        return self.instance.url("postgres")

    @property
    def archive(self) -> Archive:
        return Archive(self.bucket, APP, PREFIX)

    def base_backup(self) -> str:
        return take_base_backup(self.admin, self.archive)

    def write_history(self) -> tuple[str, list[datetime]]:
        """A base backup, then batches 1, 2 and 3 a second apart, all archived: the backup's id
        and each batch's commit time (the targets tests recover to lie between them)."""
        backup_id = self.base_backup()
        times = []
        for batch in (1, 2, 3):
            time.sleep(1.0)
            times.append(write_batch(self.url, batch))
        time.sleep(0.5)
        self.switch_and_wait()
        return backup_id, times

    def switch_and_wait(self, timeout: float = 60) -> str:
        """Close the current segment and wait until PostgreSQL reports it archived."""
        with psycopg.connect(self.admin, autocommit=True) as conn:
            segment = conn.execute("SELECT pg_walfile_name(pg_switch_wal())").fetchone()[0]
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                last = conn.execute("SELECT last_archived_wal FROM pg_stat_archiver").fetchone()[0]
                if last is not None and last >= segment:
                    return segment
                time.sleep(0.2)
        raise AssertionError(f"segment {segment} not archived within {timeout}s")


def make_cluster(
    bucket: str, endpoint: str, archive_endpoint: str | None = None, archive_timeout: int = 60
) -> Cluster:
    """initdb, archive settings (the shared archive_command), start, create database qr."""
    root = Path(tempfile.mkdtemp(prefix="pitr-c-"))
    inst = Instance(root / "data", pg_bin(), free_port(), run_as())
    inst.initdb()
    command = wl.archive_command(bucket, APP, PREFIX, tool=str(tool_path(wl.WAL_ARCHIVE_TOOL)))
    inst.configure(
        {
            "wal_level": "replica",
            "archive_mode": "on",
            "archive_timeout": archive_timeout,
            "archive_command": command,
            "max_wal_size": "64MB",
        }
    )
    env = {**os.environ, **aws_env(archive_endpoint or endpoint), "HOME": str(root)}
    inst.start(env)
    inst.wait_ready(60)
    with psycopg.connect(inst.url(), autocommit=True) as conn:
        conn.execute("CREATE DATABASE qr")
    with psycopg.connect(inst.url("qr"), autocommit=True) as conn:
        conn.execute("CREATE TABLE orders (id serial PRIMARY KEY, batch int NOT NULL, note text)")
        conn.execute("CREATE TABLE alembic_version (version_num text PRIMARY KEY)")
        conn.execute("INSERT INTO alembic_version VALUES ('a1')")
    return Cluster(inst, bucket, endpoint, root)


def write_batch(url: str, batch: int, rows: int = 50) -> datetime:
    """`rows` orders of `batch` in one transaction; returns the server's time after commit."""
    with psycopg.connect(url, autocommit=True) as conn:
        with conn.transaction():
            conn.execute(
                "INSERT INTO orders (batch, note) "
                "SELECT %s, 'order ' || g FROM generate_series(1, %s) g",
                (batch, rows),
            )
        return conn.execute("SELECT clock_timestamp()").fetchone()[0].astimezone(UTC)


def batches(url: str) -> dict[int, int]:
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT batch, count(*) FROM orders GROUP BY 1 ORDER BY 1").fetchall()
    return {int(b): int(n) for b, n in rows}


def stop_instances(root: Path) -> None:
    """Stop every PostgreSQL whose data directory is under `root` (tests' cleanup)."""
    for pidfile in root.rglob("postmaster.pid"):
        Instance(pidfile.parent, pg_bin(), owner=run_as()).stop("immediate")


def cli(
    *args: str, env: dict[str, str] | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "automation", *args],
        cwd=REPO,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.fixture
def work_dir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="pitr-w-"))
    try:
        yield path
    finally:
        stop_instances(path)
        shutil.rmtree(path, ignore_errors=True)


def mid(a: datetime, b: datetime) -> datetime:
    return a + (b - a) / 2


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat()


def no_traceback(result: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in result.stderr, result.stderr


__all__ = ["S3", "s3", "s3_server"]
