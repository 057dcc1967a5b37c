"""The schema head: which migration the database is at, read from the app's migration table.

Alembic keeps its head in `alembic_version.version_num` (one row; several on a branched history,
joined with ","); Flyway in `flyway_schema_history`, whose head is the highest successful
versioned migration (compared part by part: `1.10` > `1.9`). `deploy` reads it before and after a
release: an automatic rollback is only safe while it has not moved (docs/deploy.md).
"""

from __future__ import annotations

import re

import psycopg

from automation.errors import UserInputError
from automation.tasks.io import pgtools

TABLES = ("alembic_version", "flyway_schema_history")


def flyway_order(version: str) -> tuple[int, ...]:
    """Flyway's version order: numeric part by part, `.` and `_` both separate."""
    return tuple(int(p) if p.isdigit() else 0 for p in re.split(r"[._]", version))


def _exists(conn: psycopg.Connection, table: str) -> bool:
    row = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (table,)).fetchone()
    return bool(row and row[0])


def head_of(conn: psycopg.Connection, table: str) -> str | None:
    """The head recorded in `table`; None when the table does not exist or is empty."""
    if table not in TABLES:
        raise UserInputError(f"migration table {table!r}: use one of {', '.join(TABLES)}")
    if not _exists(conn, table):
        return None
    if table == "alembic_version":
        rows = conn.execute("SELECT version_num FROM alembic_version ORDER BY 1").fetchall()
        return ",".join(str(r[0]) for r in rows) or None
    rows = conn.execute(
        "SELECT version FROM flyway_schema_history WHERE success AND version IS NOT NULL"
    ).fetchall()
    versions = [str(r[0]) for r in rows]
    return max(versions, key=flyway_order) if versions else None


def read_schema_head(database_url: str, table: str) -> str | None:
    """Connect, read the head from `table`, disconnect (read-only, a few milliseconds)."""
    with pgtools.connect(database_url) as conn:
        conn.read_only = True
        with pgtools.db_errors(
            f"reading the schema head of {pgtools.describe(database_url)}",
            f"check the role can read {table}",
        ):
            return head_of(conn, table)
