"""Support code for the restore tests (no tests here): table checksums, backups made both ways."""

from __future__ import annotations

import gzip
import subprocess

import psycopg
from psycopg import sql

from automation.tasks.backup import BackupOptions, run_backup
from automation.tasks.pgtools import libpq_env
from tests import schemas


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
