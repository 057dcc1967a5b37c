"""Issue #17, the restore and verify-backup side: throwaway databases a killed drill leaves, targets
restore must refuse, PostgreSQL stopped mid-restore, and two restores at once. Real pgserver
PostgreSQL (a second, private server for the one that is stopped), moto over HTTP; kills and
pauses are real signals (`OPSPLANE_TEST_KILL_AT`, automation/tasks/backups.py `kill_point`)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pgserver
import psycopg
import pytest
from pgserver._commands import pg_ctl
from typer.testing import CliRunner

from automation.cli import app as cli_app
from automation.errors import TaskFailed
from automation.tasks import pgswap
from automation.tasks import restore as r
from automation.tasks.backups import KILL_ENV, KILL_SIGNAL_ENV
from automation.tasks.io.pgtools import database_name
from automation.tasks.io.s3io import s3_client
from automation.tasks.restore.database import restore_stamp
from contract import backup_layout as bf
from tests.services import S3, Postgres
from tests.tasks.test_restore_support import (
    create_qr,
    databases,
    managed_backup,
    other_db_url,
    scramble,
    table_checksums,
)

REPO = Path(__file__).resolve().parents[2]


def cli(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli_app, list(args))
    assert "Traceback" not in result.stderr + result.stdout
    return result.exit_code, result.stdout, result.stderr


def automation(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    """`python -m automation ARGS` as its own process (so it can be signalled)."""
    full = {k: v for k, v in os.environ.items() if k not in (KILL_ENV, KILL_SIGNAL_ENV)}
    return subprocess.Popen(
        [sys.executable, "-m", "automation", *args],
        cwd=REPO,
        env=full | (env or {}),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_stopped(proc: subprocess.Popen[str], timeout: float = 90) -> None:
    """Until the process has stopped itself (SIGSTOP at its kill point)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        state = Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        if state == "T":
            return
        time.sleep(0.05)
    raise AssertionError("the process never reached its stop point")


def settled_leftovers(url: str, live: str) -> list[pgswap.Leftover]:
    """`pgswap.leftovers` once the killed process' sessions have ended (the server notices a
    closed socket a moment later)."""
    deadline = time.monotonic() + 15
    while True:
        found = pgswap.leftovers(url, live)
        if not any(x.in_use for x in found) or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


@pytest.fixture
def qr(postgres: Postgres, s3: S3) -> tuple[str, str, str]:
    """A live QR database and a bucket holding one managed backup of it (url, bucket, key)."""
    url = postgres.create_database("qr")
    create_qr(url, rows=200)
    bucket = s3.create_bucket()
    return url, bucket, managed_backup(url, bucket, "qr")


class TestThrowawayDatabasesAreAlwaysFound:
    """#17.2: a killed `verify-backup` leaves `<db>_verify_<ts>`: `pgswap.leftovers` (what `status`
    calls) finds it, the next drill reports it, `restore --cleanup` drops it."""

    def test_sigkilled_drill_leftover_is_reported_and_cleaned_up(self, postgres, qr) -> None:
        url, bucket, _ = qr
        live = database_name(url)
        args = ["verify-backup", "--database-url", url, "--bucket", bucket, "--latest"]
        drill = automation(*args, env={KILL_ENV: "verify_restoring"})
        drill.communicate(timeout=120)
        assert drill.returncode == -signal.SIGKILL

        [left] = settled_leftovers(url, live)
        assert left.kind == bf.KIND_VERIFY and left.interrupted
        assert bf.parse_throwaway(left.name) is not None
        assert left in pgswap.leftovers(url)  # status lists the whole server

        code, out, err = cli(*args, "--json")
        assert code == 0, err
        assert json.loads(out)["leftovers"] == [left.name]
        assert left.name in err and "restore --cleanup" in err

        code, out, _ = cli("restore", "--database-url", url, "--cleanup", "--dry-run", "--json")
        assert json.loads(out)["found"] == [left.name]
        code, out, err = cli("restore", "--database-url", url, "--cleanup", "--yes", "--json")
        assert code == 0, err
        assert json.loads(out)["dropped"] == [left.name]
        assert databases(postgres, f"{live}_verify_") == []

    def test_sigterm_mid_drill_leaves_nothing_cleanup_cannot_find(self, postgres, qr) -> None:
        url, bucket, _ = qr
        live = database_name(url)
        args = ["verify-backup", "--database-url", url, "--bucket", bucket, "--latest"]
        drill = automation(*args, env={KILL_ENV: "verify_restoring", KILL_SIGNAL_ENV: "SIGSTOP"})
        wait_stopped(drill)
        drill.send_signal(signal.SIGTERM)
        drill.send_signal(signal.SIGCONT)
        drill.communicate(timeout=120)
        assert drill.returncode != 0

        left = databases(postgres, f"{live}_verify_")
        assert sorted(x.name for x in settled_leftovers(url, live)) == left
        cli("restore", "--database-url", url, "--cleanup", "--yes")
        assert databases(postgres, f"{live}_verify_") == []

    def test_a_running_drill_is_in_use_not_a_leftover(self, postgres) -> None:
        url = postgres.create_database("qr")
        live = database_name(url)
        name = bf.throwaway_name(live, bf.KIND_VERIFY, bf.throwaway_stamp())
        with pgswap.Claim(url, f"verify-backup {name}") as claim:
            claim.take(name)
            with psycopg.connect(postgres.url(), autocommit=True) as conn:
                conn.execute(f'CREATE DATABASE "{name}"')
            [found] = pgswap.leftovers(url, live)
            assert found.in_use and not found.interrupted
            code, out, err = cli("restore", "--database-url", url, "--cleanup", "--yes", "--json")
            assert code == 0, err
            assert list(json.loads(out)["skipped"]) == [name]
        [found] = pgswap.leftovers(url, live)  # the claim ended with its session
        assert found.interrupted

    def test_one_pattern_names_and_reads_every_kind(self) -> None:
        stamp = bf.throwaway_stamp()
        for kind in bf.THROWAWAY_KINDS:
            name = bf.throwaway_name("qr_db", kind, stamp)
            assert bf.parse_throwaway(name) == bf.Throwaway(name, "qr_db", kind, stamp)
        long_live = "x" * 60
        name = bf.throwaway_name(long_live, bf.KIND_VERIFY, stamp)
        assert len(name) == bf.MAX_IDENTIFIER
        assert bf.parse_throwaway(name).belongs_to(long_live)  # type: ignore[union-attr]
        assert bf.parse_throwaway("qr_db") is None


class TestRestoreRefusesWrongTargets:
    """#17.3: templates and the maintenance database are never replaced; a database that does
    not exist is created only with --create; the confirmation says which case it is."""

    @pytest.mark.parametrize("target", ["template0", "template1", "postgres"])
    def test_template_and_maintenance_databases_are_refused(self, postgres, qr, target) -> None:
        _, bucket, key = qr
        before = databases(postgres, "")
        code, _, err = cli("restore", "--database-url", postgres.url(target), "--bucket", bucket,
                           "--key", key, "--yes")  # fmt: skip
        assert code == 2
        assert f"'{target}'" in err and "template or maintenance database" in err
        assert databases(postgres, "") == before
        with psycopg.connect(postgres.url()) as conn:
            assert conn.execute(
                "SELECT datistemplate FROM pg_database WHERE datname = 'template1'"
            ).fetchone() == (True,)

    def test_a_user_template_is_refused(self, postgres, qr) -> None:
        _, bucket, key = qr
        url = postgres.create_database("tpl")
        with psycopg.connect(postgres.url(), autocommit=True) as conn:
            conn.execute(f'ALTER DATABASE "{database_name(url)}" IS_TEMPLATE true')
        code, _, err = cli("restore", "--database-url", url, "--bucket", bucket, "--key", key,
                           "--yes")  # fmt: skip
        assert code == 2 and "is a template" in err

    def test_a_mistyped_database_is_refused_unless_create(self, postgres, qr) -> None:
        url, bucket, key = qr
        typo = other_db_url(url, database_name(url) + "_typo")
        code, _, err = cli("restore", "--database-url", typo, "--bucket", bucket, "--key", key,
                           "--yes")  # fmt: skip
        assert code == 2
        assert "does not exist" in err and "--create" in err
        assert databases(postgres, database_name(typo)) == []

        code, _, err = cli("restore", "--database-url", typo, "--bucket", bucket, "--key", key,
                           "--yes", "--create")  # fmt: skip
        assert code == 0, err
        assert table_checksums(typo) == table_checksums(url)

    def test_the_confirmation_says_replace_or_create(self, qr) -> None:
        url, bucket, key = qr
        base = ["restore", "--bucket", bucket, "--key", key]
        _, _, existing = cli(*base, "--database-url", url)
        assert "replace the existing database" in existing and "--yes" in existing
        fresh = other_db_url(url, database_name(url) + "_new")
        _, _, created = cli(*base, "--database-url", fresh, "--create")
        assert "create database" in created and "does not exist yet" in created


@contextlib.contextmanager
def private_postgres() -> Iterator[tuple[pgserver.PostgresServer, str]]:
    """A PostgreSQL server of this test's own (it gets stopped), and its maintenance URL."""
    data = Path(tempfile.mkdtemp(prefix="opsplane-pg-stop-"))
    server = pgserver.get_server(data, cleanup_mode="delete")
    socket_dir = server.get_uri().split("host=")[1]
    try:
        yield server, f"postgresql://postgres@/postgres?host={socket_dir}"
    finally:
        start(server)
        server.cleanup()


def stop_fast(server: pgserver.PostgresServer) -> None:
    pg_ctl(["-w", "-m", "fast", "stop"], pgdata=server.pgdata, user=server.system_user)


def start(server: pgserver.PostgresServer) -> None:
    with server._lock:  # what get_server does: start it unless it runs
        server.ensure_postgres_running()


class TestServerStoppedMidRestore:
    """#17.8: `pg_ctl stop -m fast` while the load runs: the error is the load's, the leftover is
    named with the `--cleanup` command, and no drop is claimed that did not happen."""

    def test_stopped_server_is_reported_honestly(self, s3) -> None:
        with private_postgres() as (server, admin):
            with psycopg.connect(admin, autocommit=True) as conn:
                conn.execute("CREATE DATABASE qr")
            url = other_db_url(admin, "qr")
            create_qr(url, rows=3000)
            bucket = s3.create_bucket()
            managed_backup(url, bucket, "qr")
            scramble(url)
            lines: list[str] = []

            @contextlib.contextmanager
            def stopping_bar(description: str, total: float | None = None):
                stopped = False

                def advance(n: float = 1) -> None:
                    nonlocal stopped
                    if description.startswith("load") and not stopped:
                        stopped = True
                        stop_fast(server)

                yield advance

            client = s3_client()
            source = r.resolve_source(client, bucket, prefix="backups", app="qr", key=None)
            with pytest.raises(TaskFailed) as failed:
                r.restore_database(url, client, source, log=lines.append, bar=stopping_bar)

            message = str(failed.value)
            start(server)
            [left] = databases(_Server(admin), "qr_restore_")
            assert message.index("psql") < message.index("the live database qr is unchanged")
            assert left in message and "restore --cleanup" in message
            assert "cannot connect" not in message.split(";")[0]  # the load's error comes first
            assert not any("dropped" in line for line in lines)
            assert any(left in line and "left behind" in line for line in lines)

            code, out, err = cli("restore", "--database-url", url, "--cleanup", "--yes", "--json")
            assert code == 0, err
            assert json.loads(out)["dropped"] == [left]

    def test_stopped_during_the_swap_is_one_honest_line(self, s3) -> None:
        with private_postgres() as (server, admin):
            with psycopg.connect(admin, autocommit=True) as conn:
                conn.execute("CREATE DATABASE qr")
            url = other_db_url(admin, "qr")
            create_qr(url, rows=200)
            bucket = s3.create_bucket()
            managed_backup(url, bucket, "qr")
            scramble(url)
            old = table_checksums(url)
            args = ["restore", "--database-url", url, "--bucket", bucket, "--app", "qr",
                    "--latest", "--yes"]  # fmt: skip
            proc = automation(*args, env={KILL_ENV: "swap_begin", KILL_SIGNAL_ENV: "SIGSTOP"})
            wait_stopped(proc)
            stop_fast(server)
            proc.send_signal(signal.SIGCONT)
            _, err = proc.communicate(timeout=120)

            assert proc.returncode == 1, err
            assert "Traceback" not in err
            [line] = [x for x in err.splitlines() if x.startswith("error:")]
            assert "PostgreSQL went away during the swap" in line and "--cleanup" in line
            start(server)
            with psycopg.connect(admin, autocommit=True) as conn:  # as the next restore would
                conn.execute('ALTER DATABASE "qr" WITH ALLOW_CONNECTIONS true')
            assert table_checksums(url) == old  # the swap never committed


class _Server:
    """`databases()` wants an object with `url()`: the private server's maintenance URL."""

    def __init__(self, admin: str) -> None:
        self.admin = admin

    def url(self) -> str:
        return self.admin


class TestConcurrentRestoresAreRefused:
    """#17.10: a second restore of the same database while one runs is refused with one line
    naming the first; names never collide, even in the same second as a killed run."""

    def test_second_restore_is_refused_naming_the_first(self, postgres, qr) -> None:
        url, bucket, key = qr
        live = database_name(url)
        restored = table_checksums(url)
        scramble(url)
        args = ["restore", "--database-url", url, "--bucket", bucket, "--key", key, "--yes"]
        first = automation(*args, env={KILL_ENV: "before_swap", KILL_SIGNAL_ENV: "SIGSTOP"})
        try:
            wait_stopped(first)
            code, _, err = cli(*args)
        finally:
            first.send_signal(signal.SIGCONT)
        _, first_err = first.communicate(timeout=120)

        assert code == 1
        [line] = [x for x in err.splitlines() if x.startswith("error:")]
        assert f"a restore of {live}: already running" in line
        assert f"pid {first.pid}" in line
        assert first.returncode == 0, first_err
        assert table_checksums(url) == restored
        assert databases(postgres, f"{live}_restore_") == []

    def test_a_leftover_of_the_same_second_does_not_collide(self, postgres, qr) -> None:
        url, bucket, key = qr
        live = database_name(url)
        same_second = f"{live}_restore_{datetime.now(UTC):%Y%m%d_%H%M%S}"  # the older form
        with psycopg.connect(postgres.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{same_second}"')
        code, out, err = cli("restore", "--database-url", url, "--bucket", bucket, "--key", key,
                             "--yes", "--json")  # fmt: skip
        assert code == 0, err
        assert json.loads(out)["database"]["leftovers"] == [same_second]
        now = datetime.now(UTC)
        assert len({restore_stamp(now) for _ in range(100)}) == 100
