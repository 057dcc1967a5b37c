"""pgtools: client tools of the server's major version, and connection settings off the argv."""

from __future__ import annotations

import stat
import subprocess
from pathlib import Path

import pytest

from automation.errors import TaskFailed, UserInputError
from automation.tasks.io import pgtools
from tests.services import Postgres, free_port


def test_server_major_is_the_embedded_servers(postgres: Postgres) -> None:
    assert pgtools.server_major(postgres.url()) == 16
    assert pgtools.server_version(postgres.url()).startswith("16.")


@pytest.mark.parametrize("name", ["pg_dump", "pg_restore", "psql"])
def test_picks_tools_of_the_servers_major(postgres: Postgres, name: str) -> None:
    """/usr/bin/<tool> on this machine is v15: the v16 ones must be chosen."""
    tool = pgtools.tools_for(postgres.url(), name)[name]
    version = subprocess.run([tool, "--version"], capture_output=True, text=True).stdout
    assert "(PostgreSQL) 16." in version


def test_env_dir_comes_first(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = tmp_path / "pg_dump"
    fake.write_text('#!/bin/sh\necho "pg_dump (PostgreSQL) 16.9"\n')
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("OPSPLANE_PG_BIN", str(tmp_path))
    assert pgtools.find_pg_tool("pg_dump", 16) == fake


def test_no_tool_of_that_major_is_one_clear_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPSPLANE_PG_BIN", raising=False)
    with pytest.raises(UserInputError) as caught:
        pgtools.find_pg_tool("pg_dump", 13)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith("no pg_dump for PostgreSQL 13: found ")
    assert "16 at " in message and "(pgserver)" in message  # what it did find, and where
    assert "install postgresql-client-13 or set OPSPLANE_PG_BIN" in message


def test_password_goes_to_the_environment_only() -> None:
    url = "postgresql://qr_user:s%40cret@db.example:6543/qr_db?sslmode=require"
    env = pgtools.libpq_env(url, base={"PGHOST": "stray", "PATH": "/bin"})
    assert env == {
        "PATH": "/bin",
        "PGHOST": "db.example",
        "PGPORT": "6543",
        "PGUSER": "qr_user",
        "PGPASSWORD": "s@cret",
        "PGDATABASE": "qr_db",
        "PGSSLMODE": "require",
    }
    assert pgtools.describe(url) == "db.example:6543/qr_db"
    assert "cret" not in pgtools.describe(url)
    assert "dbname=other" in pgtools.with_database(url, "other")


def test_bad_url_and_unreachable_server() -> None:
    with pytest.raises(UserInputError, match=r"--database-url .*: not a PostgreSQL URL"):
        pgtools.parse_url("postgresql://u@h:notaport/db x=")
    with pytest.raises(TaskFailed) as caught:
        pgtools.server_major(f"postgresql://u:topsecret@127.0.0.1:{free_port()}/db")
    assert "cannot connect to PostgreSQL at 127.0.0.1:" in str(caught.value)
    assert "topsecret" not in str(caught.value)
