"""Support code for the restore tests (no tests here): table checksums, backups made both ways,
a plain redis-server and a backup run with a Redis part."""

from __future__ import annotations

import gzip
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from automation.tasks.backup import BackupOptions, run_backup
from automation.tasks.io.pgtools import libpq_env
from tests import schemas
from tests.services import free_port


def create_qr(url: str, rows: int = 300) -> None:
    schemas.create_qr_schema(url, rows=rows)


def create_quickbite(url: str, rows: int = 300) -> None:
    schemas.create_quickbite_schema(url, rows=rows)


def table_checksums(url: str) -> dict[str, str]:
    """md5 over every row of every user table, in a stable order: equal means same data."""
    with psycopg.connect(url) as conn:
        tables = conn.execute(
            """SELECT schemaname, tablename FROM pg_tables
               WHERE schemaname NOT IN ('pg_catalog', 'information_schema') ORDER BY 1, 2"""
        ).fetchall()
        sums = {}
        for schema, table in tables:
            query = sql.SQL(
                "SELECT count(*) || ':' || coalesce(md5(string_agg(t::text, ',' ORDER BY t::text)),"
                " '') FROM {}.{} AS t"
            ).format(sql.Identifier(schema), sql.Identifier(table))
            sums[f"{schema}.{table}"] = conn.execute(query).fetchone()[0]
    return sums


def databases(postgres, like: str) -> list[str]:
    with psycopg.connect(postgres.url()) as conn:
        rows = conn.execute(
            "SELECT datname FROM pg_database WHERE datname LIKE %s ORDER BY 1", (like + "%",)
        ).fetchall()
    return [r[0] for r in rows]


def scramble(url: str) -> None:
    """Data loss: what the restore is for. Deletes and changes rows in every table it finds."""
    with psycopg.connect(url) as conn:
        for table in ("qr_events", "payments", "webhook_logs"):
            if conn.execute("SELECT to_regclass(%s)", (table,)).fetchone()[0]:
                conn.execute(
                    sql.SQL("DELETE FROM {} WHERE id % 2 = 0").format(sql.Identifier(table))
                )
        conn.execute("CREATE TABLE scratch (x int)")
        conn.execute("INSERT INTO scratch VALUES (1)")


def managed_backup(url: str, bucket: str, app: str, fmt: str = "plain") -> str:
    """A backup made by the backup task; returns its manifest key."""
    result = run_backup(BackupOptions(bucket=bucket, database_url=url, app=app, format=fmt))
    return result.manifest_key


def hand_made_dump(postgres, url: str) -> bytes:
    """The runbook's way: `pg_dump -U qr_user qr_db | gzip` (no metadata, no manifest)."""
    dump = subprocess.run(
        [str(postgres.bin_dir / "pg_dump")], env=libpq_env(url), capture_output=True, check=True
    ).stdout
    return gzip.compress(dump)


def custom_dump(postgres, url: str) -> bytes:
    return subprocess.run(
        [str(postgres.bin_dir / "pg_dump"), "--format=custom"],
        env=libpq_env(url),
        capture_output=True,
        check=True,
    ).stdout


def other_db_url(url: str, name: str) -> str:
    """The same server URL (postgresql://user@/db?host=...), another database."""
    head, _, tail = url.partition("?")
    return head.rsplit("/", 1)[0] + "/" + name + ("?" + tail if tail else "")


class RedisServer:
    def __init__(self, data_dir: Path, appendonly: str = "no") -> None:
        self.port = free_port()
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--dir",
             str(data_dir), "--dbfilename", "dump.rdb", "--save", "", "--appendonly", appendonly],
            stdout=subprocess.DEVNULL,
        )  # fmt: skip
        for _ in range(100):
            if self.cli("PING") == "PONG":
                return
            time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def cli(self, *args: str) -> str:
        out = subprocess.run(
            ["redis-cli", "-p", str(self.port), *args], capture_output=True, text=True, check=False
        )
        return out.stdout.strip()

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)


def backup_with_redis(url: str, bucket: str, objects_bucket: str | None) -> None:
    source_dir = Path(tempfile.mkdtemp(prefix="opsplane-redis-src-"))
    source = RedisServer(source_dir)
    try:
        source.cli("SET", "session:1", "alice")
        source.cli("SET", "quota:acct", "42")
        run_backup(
            BackupOptions(
                bucket=bucket, database_url=url, app="qr",
                redis_url=f"redis://127.0.0.1:{source.port}", objects_bucket=objects_bucket,
            )
        )  # fmt: skip
    finally:
        source.stop()
        shutil.rmtree(source_dir, ignore_errors=True)


def redis_value(data_dir: Path, key: str) -> str:
    server = RedisServer(data_dir, appendonly="yes")
    try:
        return server.cli("GET", key)
    finally:
        server.stop()


def backed_up_then_lost(url: str, client: Any, bucket: str, objects_bucket: str, objects: int = 3):
    """QR's database, `objects` exports (`exports/<i>.png`) and a Redis, backed up as one run into
    `bucket`; then loss: rows scrambled, exports/1.png overwritten. Returns the table checksums
    at backup time."""
    create_qr(url, rows=80)
    for i in range(objects):
        client.put_object(Bucket=objects_bucket, Key=f"exports/{i}.png", Body=f"png {i}".encode())
    backup_with_redis(url, bucket, objects_bucket)
    backed_up = table_checksums(url)
    scramble(url)
    client.put_object(Bucket=objects_bucket, Key="exports/1.png", Body=b"overwritten")
    return backed_up


def redis_dir_with_newer_state(prefix: str) -> Path:
    """A stopped Redis' data directory (AOF on, as deployed) holding a write made after the
    backup: session:1 = mallory."""
    redis_dir = Path(tempfile.mkdtemp(prefix=prefix))
    live = RedisServer(redis_dir, appendonly="yes")
    try:
        live.cli("SET", "session:1", "mallory")
    finally:
        live.stop()
    return redis_dir
