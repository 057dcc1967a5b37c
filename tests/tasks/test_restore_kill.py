"""The restore process SIGKILLed at each step: the live name holds the old database or the
restored one, never a mix, and the next run reports what the dead one left behind.

The process kills itself where `OPSPLANE_TEST_KILL_AT` says (automation/tasks/restore/,
`kill_point`); that variable exists for these tests only.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from automation.tasks.backups import KILL_ENV
from automation.tasks.io.pgtools import database_name
from tests.tasks.test_restore_support import (
    create_qr,
    databases,
    managed_backup,
    other_db_url,
    scramble,
    table_checksums,
)

REPO = Path(__file__).resolve().parents[2]


def run_restore(url: str, bucket: str, kill_at: str | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env.pop(KILL_ENV, None)
    if kill_at:
        env[KILL_ENV] = kill_at
    args = ["--database-url", url, "--bucket", bucket, "--app", "qr", "--latest", "--yes", "--json"]
    return subprocess.run(
        [sys.executable, "-m", "automation", "restore", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def oid_of(postgres, name: str) -> int | None:
    with psycopg.connect(postgres.url()) as conn:
        row = conn.execute("SELECT oid FROM pg_database WHERE datname = %s", (name,)).fetchone()
    return row[0] if row else None


def allow_connections(postgres, name: str) -> bool:
    """Whether `name` accepts connections; re-allows it (as the next restore/cleanup does)."""
    with psycopg.connect(postgres.url(), autocommit=True) as conn:
        allowed = conn.execute(
            "SELECT datallowconn FROM pg_database WHERE datname = %s", (name,)
        ).fetchone()[0]
        conn.execute(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS true')
    return allowed


# step -> whether the live name holds the restored database after the kill
KILL_POINTS = {
    "streaming": False,  # psql is half-way through the dump, in the new database
    "pg_restore": False,  # custom format: pg_restore --jobs 2 is loading the new database
    "before_swap": False,  # the new database is loaded and checked
    "swap_begin": False,  # live blocked, its sessions ended, renames not yet run
    "after_first_rename": False,  # live -> pre_restore done, not committed
    "after_swap": True,  # both renames committed
}


@pytest.mark.parametrize("kill_at", list(KILL_POINTS))
def test_sigkill_leaves_old_or_restored_database_never_a_mix(postgres, s3, kill_at):
    url = postgres.create_database("qr")
    live = database_name(url)
    create_qr(url, rows=200)
    bucket = s3.create_bucket()
    managed_backup(url, bucket, "qr", fmt="custom" if kill_at == "pg_restore" else "plain")
    restored = table_checksums(url)
    scramble(url)
    old = table_checksums(url)
    old_oid = oid_of(postgres, live)

    killed = run_restore(url, bucket, kill_at)

    assert killed.returncode == -signal.SIGKILL, killed.stderr
    swapped = KILL_POINTS[kill_at]
    assert (oid_of(postgres, live) != old_oid) is swapped
    # a kill inside the swap can leave the live database refusing connections (never changed)
    blocked = not allow_connections(postgres, live)
    assert blocked is (kill_at in ("swap_begin", "after_first_rename"))
    assert table_checksums(url) == (restored if swapped else old)
    leftovers = databases(postgres, f"{live}_restore_")
    assert len(leftovers) == (0 if swapped else 1)
    if swapped:
        [pre] = databases(postgres, f"{live}_pre_restore_")
        assert table_checksums(other_db_url(url, pre)) == old

    if blocked:  # put the block back: the next run must find and repair it by itself
        with psycopg.connect(postgres.url(), autocommit=True) as conn:
            conn.execute(f'ALTER DATABASE "{live}" WITH ALLOW_CONNECTIONS false')
    again = run_restore(url, bucket)

    assert again.returncode == 0, again.stderr
    report = json.loads(again.stdout)["database"]
    assert report["leftovers"] == leftovers
    for name in leftovers:
        assert "leftover" in again.stderr and name in again.stderr
    assert bool(report["repaired"]) is blocked
    assert table_checksums(url) == restored
