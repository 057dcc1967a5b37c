"""The two systems' database shapes, as the runbooks show them, with generated rows.

QR Clone Engine (Alembic): accounts, qr_items, qr_events, webhook_logs, alembic_version.
QuickBite (Flyway): flyway_schema_history, users, orders, payments, payment_webhook_logs.
"""

from __future__ import annotations

import json
from pathlib import Path

import psycopg

from automation.demo.seed import QR_HEAD  # the head the demo seeds too

QUICKBITE_HEAD = "6"

QR_DDL = (Path(__file__).parents[1] / "automation" / "demo" / "qr_schema.sql").read_text()

QUICKBITE_DDL = """
CREATE TABLE flyway_schema_history (
    installed_rank int PRIMARY KEY, version varchar(50), description varchar(200) NOT NULL,
    type varchar(20) NOT NULL, script varchar(1000) NOT NULL, checksum int,
    installed_by varchar(100) NOT NULL, installed_on timestamp NOT NULL DEFAULT now(),
    execution_time int NOT NULL, success boolean NOT NULL);
CREATE TABLE users (id bigserial PRIMARY KEY, email text NOT NULL UNIQUE, name text NOT NULL);
CREATE TABLE orders (
    id bigserial PRIMARY KEY, user_id bigint NOT NULL REFERENCES users(id),
    total_cents int NOT NULL, status text NOT NULL, created_at timestamptz NOT NULL DEFAULT now());
CREATE TABLE payments (
    id bigserial PRIMARY KEY, order_id bigint NOT NULL REFERENCES orders(id),
    provider_ref text NOT NULL, amount_cents int NOT NULL, status text NOT NULL);
CREATE TABLE webhook_logs (
    id bigserial PRIMARY KEY, event_id text NOT NULL UNIQUE, event_type text NOT NULL,
    status text NOT NULL, error_message text, payload text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now());
"""


def create_qr_schema(url: str, rows: int = 1000) -> None:
    """QR Clone Engine schema with `rows` accounts, 2x items, 3x events, rows//10 webhook logs."""
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
        insert_webhook_logs(conn, max(rows // 10, 1), stripe=True)


def create_quickbite_schema(url: str, rows: int = 1000) -> None:
    """QuickBite schema: six Flyway migrations, `rows` users, 2x orders and payments."""
    with psycopg.connect(url) as conn:
        conn.execute(QUICKBITE_DDL)
        conn.execute(
            """INSERT INTO flyway_schema_history
               (installed_rank, version, description, type, script, checksum, installed_by,
                execution_time, success)
               SELECT i, i::text, 'migration ' || i, 'SQL', 'V' || i || '__m.sql', i * 7,
                      'quickbite', 10, true
               FROM generate_series(1, 6) AS i"""
        )
        conn.execute(
            """INSERT INTO users (email, name)
               SELECT 'eater' || i || '@example.com', 'Eater ' || i
               FROM generate_series(1, %s) AS i""",
            (rows,),
        )
        conn.execute(
            """INSERT INTO orders (user_id, total_cents, status)
               SELECT 1 + i %% %s, 100 + i %% 5000, 'PAID' FROM generate_series(1, %s) AS i""",
            (rows, rows * 2),
        )
        conn.execute(
            """INSERT INTO payments (order_id, provider_ref, amount_cents, status)
               SELECT i, 'pay_' || i, 100 + i %% 5000, 'CAPTURED'
               FROM generate_series(1, %s) AS i""",
            (rows * 2,),
        )
        insert_webhook_logs(conn, max(rows // 10, 1), stripe=False)


def insert_webhook_logs(conn: psycopg.Connection, count: int, *, stripe: bool) -> None:
    """Webhook log rows: every third one failed. Payloads are Stripe Event or Razorpay shapes."""
    for i in range(1, count + 1):
        event_id = f"evt_{i:06d}" if stripe else f"rzp_evt_{i:06d}"
        event_type = (
            [
                "checkout.session.completed",
                "invoice.payment_succeeded",
                "customer.subscription.updated",
            ][i % 3]
            if stripe
            else "payment.captured"
        )
        body = (
            {"id": event_id, "object": "event", "type": event_type, "data": {"object": {"n": i}}}
            if stripe
            else {"event": event_type, "payload": {"payment": {"entity": {"id": f"pay_{i}"}}}}
        )
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
