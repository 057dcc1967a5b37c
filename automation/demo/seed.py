"""A QR Clone Engine database as the runbook shows it (Alembic), with generated rows, and the
disaster the demo recovers from."""

from __future__ import annotations

import json

import psycopg
from psycopg import sql

QR_HEAD = "7f3a9c1d2e4b"
QR_TABLES = ("alembic_version", "accounts", "qr_items", "qr_events", "webhook_logs")
WEBHOOK_LOGS = 30  # every third one failed: 10 events for replay

QR_DDL = """
CREATE TABLE alembic_version (version_num varchar(32) PRIMARY KEY);
CREATE TABLE accounts (
    id uuid PRIMARY KEY, email text NOT NULL UNIQUE, plan text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now());
CREATE TABLE qr_items (
    id bigserial PRIMARY KEY, owner_id uuid NOT NULL REFERENCES accounts(id),
    target_url text NOT NULL, payload jsonb NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now());
CREATE INDEX idx_qr_items_owner_created ON qr_items(owner_id, created_at DESC);
CREATE TABLE qr_events (
    id bigserial PRIMARY KEY, item_id bigint NOT NULL REFERENCES qr_items(id), type text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now());
CREATE TABLE webhook_logs (
    id bigserial PRIMARY KEY, event_id text NOT NULL UNIQUE, event_type text NOT NULL,
    status text NOT NULL, error_message text, payload text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now());
"""

# A bad cleanup script: half the QR codes deleted, the scan history dropped.
DISASTER_SQL = "DROP TABLE qr_events; DELETE FROM qr_items WHERE id % 2 = 0;"

EVENT_TYPES = (
    "checkout.session.completed",
    "invoice.payment_succeeded",
    "customer.subscription.updated",
)


def create_database(admin_url: str, name: str) -> None:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def seed_qr(url: str, rows: int) -> None:
    """`rows` accounts, 2x QR codes, 3x scan events, WEBHOOK_LOGS Stripe events (a third failed)."""
    with psycopg.connect(url) as conn:
        conn.execute(QR_DDL)
        conn.execute("INSERT INTO alembic_version VALUES (%s)", (QR_HEAD,))
        conn.execute(
            """INSERT INTO accounts (id, email, plan)
               SELECT md5(i::text)::uuid, 'user' || i || '@example.com',
                      (ARRAY['free','pro','team'])[1 + i %% 3]
               FROM generate_series(1, %s) AS i""",
            (rows,),
        )
        conn.execute(
            """INSERT INTO qr_items (owner_id, target_url, payload)
               SELECT md5((1 + i %% %s)::text)::uuid, 'https://example.com/' || i,
                      jsonb_build_object('size', 256, 'color', '#000000', 'n', i)
               FROM generate_series(1, %s) AS i""",
            (rows, rows * 2),
        )
        conn.execute(
            """INSERT INTO qr_events (item_id, type)
               SELECT 1 + i %% %s, (ARRAY['scan','create','export'])[1 + i %% 3]
               FROM generate_series(1, %s) AS i""",
            (rows * 2, rows * 3),
        )
        insert_webhook_logs(conn, WEBHOOK_LOGS)


def insert_webhook_logs(conn: psycopg.Connection, count: int) -> None:
    """Stripe Event payloads as the app logged them; every third delivery failed (a timeout)."""
    for i in range(1, count + 1):
        event_id = f"evt_demo_{i:04d}"
        event_type = EVENT_TYPES[i % 3]
        body = {"id": event_id, "object": "event", "type": event_type, "data": {"object": {"n": i}}}
        conn.execute(
            """INSERT INTO webhook_logs (event_id, event_type, status, error_message, payload,
                                         created_at)
               VALUES (%s, %s, %s, %s, %s, now() - make_interval(mins => %s))""",
            (
                event_id,
                event_type,
                "failed" if i % 3 == 0 else "processed",
                "timeout" if i % 3 == 0 else None,
                json.dumps(body, separators=(",", ":")),
                i,
            ),
        )


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


def disaster(url: str) -> None:
    with psycopg.connect(url) as conn:
        conn.execute(DISASTER_SQL)


def describe_counts(found: dict[str, int | None]) -> str:
    return ", ".join(
        f"{table} {'MISSING' if n is None else f'{n:,}'}" for table, n in found.items()
    )
