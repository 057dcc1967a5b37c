"""The QR Clone Engine database the demo plays on (its schema and rows are in `qr_seed.sql`, which
the demo runs with psql), the disaster it recovers from, and what the demo reads to check steps."""

from __future__ import annotations

import psycopg
from psycopg import sql

QR_HEAD = "7f3a9c1d2e4b"
QR_TABLES = ("alembic_version", "accounts", "qr_items", "qr_events", "webhook_logs")
SEED_SQL = "automation/demo/qr_seed.sql"  # relative to the repository root, where psql runs

# A bad cleanup script: half the QR codes deleted, the scan history dropped.
DISASTER_SQL = "DROP TABLE qr_events; DELETE FROM qr_items WHERE id % 2 = 0;"


def counts(url: str) -> dict[str, int | None]:
    """Rows per QR table (None: the table is missing), and failed webhook events."""
    found: dict[str, int | None] = {}
    with psycopg.connect(url, autocommit=True) as conn:
        for table in QR_TABLES:
            exists = conn.execute("SELECT to_regclass(%s)", (f"public.{table}",)).fetchone()
            if exists is None or exists[0] is None:
                found[table] = None
                continue
            query = sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table))
            (n,) = conn.execute(query).fetchone() or (0,)
            found[table] = int(n)
        if found["webhook_logs"] is not None:
            row = conn.execute("SELECT count(*) FROM webhook_logs WHERE status = 'failed'")
            found["webhook_logs failed"] = int((row.fetchone() or (0,))[0])
    return found


def failed_event_ids(url: str) -> set[str]:
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT event_id FROM webhook_logs WHERE status = 'failed'")
        return {event_id for (event_id,) in rows}


def databases(admin_url: str, like: str) -> list[str]:
    with psycopg.connect(admin_url) as conn:
        rows = conn.execute(
            "SELECT datname FROM pg_database WHERE datname LIKE %s ORDER BY datname", (like,)
        )
        return [name for (name,) in rows]


def migration_head(url: str) -> str | None:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT max(version_num) FROM alembic_version").fetchone()
        return row[0] if row else None


def describe_counts(found: dict[str, int | None]) -> str:
    return ", ".join(
        f"{table} {'MISSING' if n is None else f'{n:,}'}" for table, n in found.items()
    )
