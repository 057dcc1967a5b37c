"""The schema head against real PostgreSQL (pgserver), for both migration tables."""

from __future__ import annotations

import psycopg
import pytest

from automation.errors import TaskFailed, UserInputError
from automation.tasks.schema import read_schema_head
from tests.schemas import QR_HEAD, QUICKBITE_HEAD, create_qr_schema, create_quickbite_schema


def test_alembic_head_and_its_move(postgres) -> None:
    url = postgres.create_database("schema_qr")
    assert read_schema_head(url, "alembic_version") is None  # no table yet
    create_qr_schema(url, rows=5)
    assert read_schema_head(url, "alembic_version") == QR_HEAD
    with psycopg.connect(url) as conn:
        conn.execute("UPDATE alembic_version SET version_num = 'b2c3d4e5f6a7'")
    assert read_schema_head(url, "alembic_version") == "b2c3d4e5f6a7"
    assert read_schema_head(url, "flyway_schema_history") is None  # not this app's table


def test_flyway_head_is_the_highest_successful_version(postgres) -> None:
    url = postgres.create_database("schema_qb")
    create_quickbite_schema(url, rows=5)
    assert read_schema_head(url, "flyway_schema_history") == QUICKBITE_HEAD
    with psycopg.connect(url) as conn:
        for rank, version, success in ((7, "6.1", True), (8, "10", True), (9, "11", False)):
            conn.execute(
                """INSERT INTO flyway_schema_history (installed_rank, version, description,
                   type, script, installed_by, execution_time, success)
                   VALUES (%s, %s, 'm', 'SQL', 'V.sql', 'quickbite', 1, %s)""",
                (rank, version, success),
            )
        conn.execute(  # a repeatable migration has no version: never the head
            """INSERT INTO flyway_schema_history (installed_rank, version, description, type,
               script, installed_by, execution_time, success)
               VALUES (10, NULL, 'views', 'SQL', 'R__views.sql', 'quickbite', 1, true)"""
        )
    assert read_schema_head(url, "flyway_schema_history") == "10"  # numeric, not "6.1" < "6"


def test_unknown_table_and_unreachable_server_are_one_line(postgres) -> None:
    with pytest.raises(UserInputError, match="migration table 'schema_migrations'"):
        read_schema_head(postgres.url(), "schema_migrations")
    with pytest.raises(TaskFailed, match=r"cannot connect to PostgreSQL at 127\.0\.0\.1:1/"):
        read_schema_head("postgresql://u@127.0.0.1:1/x", "alembic_version")
