"""The parallel script loader (automation/tasks/pgload.py) against a real PostgreSQL 16.

The main check: a pg_dump of a database with the awkward parts (rows holding `\\.`, tabs,
newlines and backslashes, an empty table, sequences, a large object, a function whose body holds
SET lines and blank lines, a view, a materialized view with an index, a partitioned table, a
trigger, foreign keys (two tables referencing each other, a deferrable one, one NOT VALID), a
comment, a grant) loaded N-wide in tiny pieces and odd chunk sizes gives
the same schema and the same rows as the source.
"""

from __future__ import annotations

import os
import subprocess
import threading
from pathlib import Path

import psycopg
import pytest

from automation.errors import TaskFailed
from automation.tasks import pgload
from automation.tasks.backups import BackupRef, no_bar
from automation.tasks.io.pgtools import database_name
from automation.tasks.restore.load import CustomLoad, split_at_foreign_keys
from automation.tasks.restore.source import verify_custom
from tests.services import Postgres
from tests.tasks.test_restore_support import table_checksums

AWKWARD_SCHEMA = r"""
CREATE ROLE pgload_reader;
CREATE SCHEMA shop;
CREATE TABLE shop.customers (id bigserial PRIMARY KEY, email text UNIQUE NOT NULL, note text);
CREATE TABLE shop.orders (
    id bigserial PRIMARY KEY, customer_id bigint NOT NULL REFERENCES shop.customers(id),
    total int NOT NULL CHECK (total >= 0), placed_at timestamptz NOT NULL DEFAULT now());
CREATE INDEX orders_by_customer ON shop.orders (customer_id, placed_at DESC);
CREATE TABLE shop.empty_table (id int PRIMARY KEY);
CREATE TABLE shop.events (id int NOT NULL, day date NOT NULL, kind text) PARTITION BY RANGE (day);
CREATE TABLE shop.events_2026 PARTITION OF shop.events
    FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');
CREATE TABLE shop.events_2027 PARTITION OF shop.events
    FOR VALUES FROM ('2027-01-01') TO ('2028-01-01');
ALTER TABLE shop.events ADD PRIMARY KEY (id, day);
CREATE INDEX events_kind ON shop.events (kind);
CREATE FUNCTION shop.touch() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN

SET LOCAL search_path = shop;
  NEW.note := coalesce(NEW.note, 'touched');

  RETURN NEW;
END $$;
CREATE TRIGGER customers_touch BEFORE INSERT ON shop.customers
    FOR EACH ROW EXECUTE FUNCTION shop.touch();
CREATE VIEW shop.big_orders AS SELECT * FROM shop.orders WHERE total > 500;
CREATE MATERIALIZED VIEW shop.totals AS
    SELECT customer_id, sum(total) AS total FROM shop.orders GROUP BY customer_id;
CREATE UNIQUE INDEX totals_customer ON shop.totals (customer_id);
COMMENT ON TABLE shop.orders IS 'one row per order; -- Name: not a header; Type: INDEX; Schema: x';
GRANT SELECT ON shop.orders TO pgload_reader;
CREATE TABLE shop.a (id int PRIMARY KEY, b_id int);
CREATE TABLE shop.b (id int PRIMARY KEY, a_id int REFERENCES shop.a(id));
ALTER TABLE shop.a ADD FOREIGN KEY (b_id) REFERENCES shop.b(id) DEFERRABLE INITIALLY DEFERRED;
INSERT INTO shop.a SELECT i, NULL FROM generate_series(1, 500) AS i;
INSERT INTO shop.b SELECT i, 501 - i FROM generate_series(1, 500) AS i;
UPDATE shop.a SET b_id = id;
INSERT INTO shop.b VALUES (9999, NULL);
ALTER TABLE shop.b ADD CONSTRAINT b_not_checked FOREIGN KEY (id) REFERENCES shop.a(id) NOT VALID;
INSERT INTO shop.customers (email, note)
    SELECT 'c' || i || '@example.com',
           CASE i % 5 WHEN 0 THEN E'line one\nline two' WHEN 1 THEN E'tab\there'
                      WHEN 2 THEN E'\\.' WHEN 3 THEN E'back\\slash \\. end' ELSE NULL END
    FROM generate_series(1, 3000) AS i;
INSERT INTO shop.orders (customer_id, total) SELECT 1 + i % 3000, i % 1000
    FROM generate_series(1, 9000) AS i;
INSERT INTO shop.events SELECT i, date '2026-06-01' + (i % 400), 'k' || (i % 7)
    FROM generate_series(1, 2000) AS i;
REFRESH MATERIALIZED VIEW shop.totals;
SELECT lo_from_bytea(0, convert_to(repeat('large object ', 2000), 'UTF8'));
"""


def pg_dump(postgres: Postgres, url: str, *args: str) -> bytes:
    env = {**os.environ, "PGHOST": postgres.socket_dir, "PGUSER": "postgres"}
    database = database_name(url)
    return subprocess.run(
        [str(postgres.bin_dir / "pg_dump"), *args, database],
        env=env,
        capture_output=True,
        check=True,
    ).stdout


def schema_of(postgres: Postgres, url: str) -> list[bytes]:
    """The schema as pg_dump prints it, minus the lines that name the database."""
    text = pg_dump(postgres, url, "--schema-only", "--no-comments")
    return [line for line in text.splitlines() if not line.startswith(b"-- Dumped")]


def large_objects(url: str) -> list[tuple[int, bytes]]:
    with psycopg.connect(url) as conn:
        return conn.execute(
            "SELECT length(lo_get(oid)), md5(lo_get(oid))::bytea FROM pg_largeobject_metadata"
        ).fetchall()


def sequences(url: str) -> list[tuple[str, int]]:
    with psycopg.connect(url) as conn:
        return conn.execute(
            "SELECT sequencename, last_value FROM pg_sequences ORDER BY 1"
        ).fetchall()


def load(
    postgres: Postgres,
    script: bytes,
    target: str,
    tmp_path: Path,
    *,
    sessions: int,
    chunk: int,
    psql: Path | None = None,
) -> pgload.LoadStats:
    loader = pgload.ScriptLoader(psql or postgres.bin_dir / "psql", target, sessions, tmp_path)
    pieces = (script[i : i + chunk] for i in range(0, len(script), chunk))
    return loader.load(pieces)


@pytest.fixture(scope="module")
def awkward(postgres: Postgres) -> tuple[str, bytes]:
    url = postgres.create_database("awkward")
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("DROP ROLE IF EXISTS pgload_reader")
        conn.execute(AWKWARD_SCHEMA)
    return url, pg_dump(postgres, url)


@pytest.mark.parametrize(("sessions", "chunk"), [(1, 65536), (3, 7), (2, 4096)])
def test_a_pg_dump_loaded_n_wide_equals_its_source(
    postgres, awkward, tmp_path, monkeypatch, sessions, chunk
):
    source, script = awkward
    monkeypatch.setattr(pgload, "COPY_PIECE", 2000)  # cut every table into several pieces
    target = postgres.create_database("loaded")
    stats = load(postgres, script, target, tmp_path, sessions=sessions, chunk=chunk)
    assert stats.pg_dump_layout
    assert stats.parallel_copies == 7 and stats.copy_pieces > stats.parallel_copies
    assert stats.post_parallel >= 8 and stats.post_serial >= 6  # FKs, trigger, ACL, refresh
    assert stats.foreign_keys_validated == 3  # the NOT VALID one stays not validated
    assert table_checksums(target) == table_checksums(source)
    assert schema_of(postgres, target) == schema_of(postgres, source)
    assert large_objects(target) == large_objects(source) != []
    assert sequences(target) == sequences(source)
    with psycopg.connect(target) as conn:  # the trigger came back, and after the data
        conn.execute("INSERT INTO shop.customers (email) VALUES ('new@example.com')")
        assert conn.execute(
            "SELECT note FROM shop.customers WHERE email = 'new@example.com'"
        ).fetchone() == ("touched",)


@pytest.mark.parametrize("jobs", [1, 2])
def test_a_custom_archive_restored_in_two_parts_equals_its_source(
    postgres, awkward, tmp_path, jobs
):
    """CustomLoad: `pg_restore --jobs` up to the first foreign key, the loader from
    there (foreign keys NOT VALID + validated N-wide, then the grant, then the refresh)."""
    source, _ = awkward
    archive = tmp_path / "awkward.dump"
    archive.write_bytes(pg_dump(postgres, source, "--format=custom"))
    pg_restore, psql = postgres.bin_dir / "pg_restore", postgres.bin_dir / "psql"
    ref = BackupRef(bucket="b", key="awkward.dump", format="custom", size=archive.stat().st_size)
    entries = verify_custom(archive, pg_restore, ref)
    head, tail = split_at_foreign_keys(entries)
    assert sorted(head + tail) == sorted(entries)
    later = (" FK CONSTRAINT ", " ACL ", " MATERIALIZED VIEW DATA ")  # the grant, the refresh
    assert not any(kind in line for line in head for kind in later)
    assert all(any(kind in line for line in tail) for kind in later)
    target = postgres.create_database("from_custom")

    load = CustomLoad(archive, target, pg_restore, psql, jobs, no_bar, tmp_path)
    done = load.run(entries)

    assert f"3 foreign keys validated {jobs}-wide" in done  # the NOT VALID one stays so
    assert table_checksums(target) == table_checksums(source)
    assert schema_of(postgres, target) == schema_of(postgres, source)
    assert large_objects(target) == large_objects(source) != []
    assert sequences(target) == sequences(source)


def test_an_inserts_dump_loads_through_one_data_session(postgres, awkward, tmp_path):
    source, _ = awkward
    script = pg_dump(postgres, source, "--inserts")
    target = postgres.create_database("inserts")
    stats = load(postgres, script, target, tmp_path, sessions=2, chunk=1000)
    assert stats.parallel_copies == 0
    assert table_checksums(target) == table_checksums(source)


def test_a_script_without_pg_dump_headers_runs_as_written(postgres, tmp_path):
    script = (
        b"CREATE TABLE t (id int PRIMARY KEY, v text);\n"
        b"COPY t (id, v) FROM stdin;\n1\t-- Name: x; Type: INDEX; Schema: y\n2\tb\n\\.\n"
        b"UPDATE t SET v = v || '!' WHERE id = 2;\n"
        b"SELECT 1"  # no final newline or semicolon: psql runs it at the end of input
    )
    target = postgres.create_database("plain")
    stats = load(postgres, script, target, tmp_path, sessions=3, chunk=5)
    assert not stats.pg_dump_layout and stats.parallel_copies == 0
    with psycopg.connect(target) as conn:
        rows = conn.execute("SELECT id, v FROM t ORDER BY id").fetchall()
    assert rows == [(1, "-- Name: x; Type: INDEX; Schema: y"), (2, "b!")]


def no_psql_left() -> bool:
    """No psql session of a loader (they run with `-o /dev/null -f -`) is still running."""
    out = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    return " -o /dev/null -f -" not in out


def no_copy_thread_left() -> bool:
    """The COPY threads of a failed load end (they are woken, not left waiting for pieces)."""
    for thread in threading.enumerate():
        if thread.name.startswith("copy-"):
            thread.join(timeout=5)
    return not any(t.name.startswith("copy-") and t.is_alive() for t in threading.enumerate())


def test_a_bad_row_fails_with_psqls_error_and_stops_every_session(
    postgres, awkward, tmp_path, monkeypatch
):
    _, script = awkward
    monkeypatch.setattr(pgload, "COPY_PIECE", 2000)
    bad = script.replace(b"\n4500\t1501\t500\t", b"\n4500\t1501\tnot-a-number\t", 1)
    assert bad != script
    target = postgres.create_database("bad")
    with pytest.raises(TaskFailed, match='invalid input syntax for type integer: "not-a-number"'):
        load(postgres, bad, target, tmp_path, sessions=3, chunk=8192)
    assert no_psql_left()
    assert no_copy_thread_left()


def test_a_failing_index_build_is_reported(postgres, tmp_path):
    script = (
        b"--\n-- PostgreSQL database dump\n--\n\nSET client_min_messages = warning;\n\n"
        b"--\n-- Name: t; Type: TABLE; Schema: public; Owner: postgres\n--\n\n"
        b"CREATE TABLE public.t (id int);\n\n"
        b"--\n-- Data for Name: t; Type: TABLE DATA; Schema: public; Owner: postgres\n--\n\n"
        b"COPY public.t (id) FROM stdin;\n1\n1\n\\.\n\n"
        b"--\n-- Name: t t_pkey; Type: CONSTRAINT; Schema: public; Owner: postgres\n--\n\n"
        b"ALTER TABLE ONLY public.t\n    ADD CONSTRAINT t_pkey PRIMARY KEY (id);\n\n"
    )
    target = postgres.create_database("dup")
    with pytest.raises(TaskFailed, match="could not create unique index"):
        load(postgres, script, target, tmp_path, sessions=2, chunk=100)


def test_a_script_cut_inside_a_copy_block_is_refused(postgres, awkward, tmp_path):
    _, script = awkward
    cut = script[: script.index(b"\\.\n", script.index(b"COPY shop.orders")) - 10]
    target = postgres.create_database("cut")
    with pytest.raises(TaskFailed, match="ends inside a COPY block"):
        load(postgres, cut, target, tmp_path, sessions=2, chunk=65536)


def test_settings_are_recognised_only_where_pg_dump_writes_them():
    assert pgload.setting_key(b"SET default_tablespace = '';\n") == b"default_tablespace"
    assert pgload.setting_key(b"SELECT pg_catalog.set_config('search_path', '', false);\n") == (
        b"search_path"
    )
    assert pgload.setting_key(b"SET SESSION AUTHORIZATION 'app';\n") == b"session authorization"
    assert pgload.setting_key(b"CREATE TABLE t (id int);\n") is None


def restricting_psql(postgres: Postgres) -> Path:
    """A psql that knows `\\restrict` (PostgreSQL 15.14, 16.10, 17.6 and later; make setup
    installs Debian's postgresql-client). pgserver's own 16.2 psql predates it."""
    env = {**os.environ, "PGHOST": postgres.socket_dir, "PGUSER": "postgres"}
    for candidate in (Path("/usr/bin/psql"), postgres.bin_dir / "psql"):
        if candidate.exists():
            probe = subprocess.run(
                [str(candidate), "-X", "-v", "ON_ERROR_STOP=1", "-d", "postgres", "-f", "-"],
                input=b"\\restrict k\nSELECT 1;\n\\unrestrict k\n",
                env=env,
                capture_output=True,
                check=False,
            )
            if probe.returncode == 0:
                return candidate
    raise AssertionError("no psql with \\restrict here: install postgresql-client (make setup)")


def as_new_pg_dump_writes_it(script: bytes) -> bytes:
    """pg_dump since 17.6/16.10/15.14 opens the script with `\\restrict KEY` and ends it with
    `\\unrestrict KEY` (so a restoring psql runs no meta-command planted in the dump)."""
    head = b"--\n-- PostgreSQL database dump\n--\n\n"
    assert script.startswith(head)
    return head + b"\\restrict k3y\n\n" + script[len(head) :] + b"\\unrestrict k3y\n\n"


def test_a_restricted_dump_loads_n_wide(postgres, awkward, tmp_path, monkeypatch):
    source, script = awkward
    monkeypatch.setattr(pgload, "COPY_PIECE", 2000)
    target = postgres.create_database("restricted")
    psql = restricting_psql(postgres)
    restricted = as_new_pg_dump_writes_it(script)
    stats = load(postgres, restricted, target, tmp_path, sessions=2, chunk=4096, psql=psql)
    assert stats.copy_pieces > stats.parallel_copies and stats.foreign_keys_validated == 3
    assert table_checksums(target) == table_checksums(source)
    assert schema_of(postgres, target) == schema_of(postgres, source)


def test_a_meta_command_planted_in_a_restricted_dump_does_not_run(postgres, awkward, tmp_path):
    _, script = awkward
    planted = tmp_path / "planted"
    end = b"--\n-- PostgreSQL database dump complete"
    restricted = as_new_pg_dump_writes_it(script)
    attack = restricted.replace(end, b"\\! touch " + str(planted).encode() + b"\n" + end)
    assert attack != restricted
    target = postgres.create_database("planted")
    with pytest.raises(TaskFailed, match="restrict"):
        pgload.ScriptLoader(restricting_psql(postgres), target, 2, tmp_path).load([attack])
    assert not planted.exists()
