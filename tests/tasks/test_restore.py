"""Restore against real services: embedded PostgreSQL 16 and S3 over HTTP (moto server)."""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import json

import pytest
from typer.testing import CliRunner

from automation.cli import app as cli_app
from automation.errors import TaskFailed
from automation.tasks import restore as r
from automation.tasks.io.gz import gunzip_stream
from automation.tasks.io.pgtools import database_name
from automation.tasks.io.s3io import s3_client
from automation.tasks.restore.source import prefetch, switches_database
from contract import backup_layout as bf
from tests.schemas import QR_HEAD, QUICKBITE_HEAD
from tests.tasks.test_restore_support import (
    create_qr,
    create_quickbite,
    custom_dump,
    databases,
    hand_made_dump,
    managed_backup,
    other_db_url,
    scramble,
    table_checksums,
)


def restore(url: str, bucket: str, *, app: str | None = None, key: str | None = None, **kw):
    client = s3_client()
    source = r.resolve_source(client, bucket, prefix="backups", app=app, key=key)
    return r.restore_database(url, client, source, **kw)


def run_cli(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli_app, ["restore", *args])
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture
def qr(postgres, s3):
    """A live QR database, a bucket with one managed backup of it, and its checksums then."""
    url = postgres.create_database("qr")
    create_qr(url)
    bucket = s3.create_bucket()
    manifest_key = managed_backup(url, bucket, "qr")
    return url, bucket, manifest_key, table_checksums(url)


def test_qr_round_trip_plain_restores_exactly_what_was_backed_up(postgres, qr):
    url, bucket, _, backed_up = qr
    scramble(url)
    damaged = table_checksums(url)
    assert damaged != backed_up

    report = restore(url, bucket, app="qr")

    assert table_checksums(url) == backed_up
    assert report.migration_head == QR_HEAD
    assert report.tables["public.accounts"] == 300
    assert [s.name for s in report.steps] == ["verify", "create", "load", "check", "swap"]
    assert report.pre_restore is not None
    assert table_checksums(other_db_url(url, report.pre_restore)) == damaged  # kept
    assert databases(postgres, report.database + "_restore_") == []


def test_quickbite_round_trip_custom_format_with_parallel_jobs(postgres, s3):
    url = postgres.create_database("quickbite")
    create_quickbite(url)
    bucket = s3.create_bucket()
    managed_backup(url, bucket, "quickbite", fmt="custom")
    backed_up = table_checksums(url)
    scramble(url)

    code, out, err = run_cli(
        "--database-url", url, "--bucket", bucket, "--app", "quickbite", "--latest",
        "--jobs", "2", "--yes", "--json",
    )  # fmt: skip

    assert code == 0, err
    report = json.loads(out)["database"]
    assert report["format"] == "custom"
    assert report["migration_head"] == QUICKBITE_HEAD
    assert table_checksums(url) == backed_up
    assert "pg_restore --jobs 2" in {s["name"]: s["detail"] for s in report["steps"]}["load"]


def test_runbook_style_hand_made_sql_gz_restores(postgres, s3):
    """`pg_dump | gzip` uploaded by hand: no metadata, no manifest, any key."""
    url = postgres.create_database("qr")
    create_qr(url, rows=120)
    backed_up = table_checksums(url)
    bucket = s3.create_bucket()
    s3.client().put_object(
        Bucket=bucket, Key="manual/backup_20251027.sql.gz", Body=hand_made_dump(postgres, url)
    )
    scramble(url)

    report = restore(url, bucket, key="manual/backup_20251027.sql.gz")

    assert table_checksums(url) == backed_up
    assert report.format == "plain"
    assert "not recorded" in report.steps[0].detail  # no checksum to compare, said so


def refused_cleanly(postgres, url: str, before: dict[str, str], call) -> str:
    """Run `call`, expect a refusal; the live database and the server's database list unchanged."""
    live = database_name(url)
    databases_before = databases(postgres, live)
    with pytest.raises(TaskFailed) as refusal:
        call()
    assert table_checksums(url) == before
    assert databases(postgres, live) == databases_before == [live]
    return str(refusal.value)


def test_checksum_mismatch_is_refused_and_live_untouched(postgres, qr, s3):
    url, bucket, manifest_key, _ = qr
    scramble(url)  # the state a restore would replace
    before = table_checksums(url)
    db_key = manifest_key.replace("manifest.json", "db.sql.gz")
    client = s3.client()
    # same object, another (valid) dump: the stored sha256 no longer matches the content
    metadata = client.head_object(Bucket=bucket, Key=db_key)["Metadata"]
    client.put_object(
        Bucket=bucket, Key=db_key, Body=gzip.compress(b"SELECT 1;\n"), Metadata=metadata
    )

    message = refused_cleanly(postgres, url, before, lambda: restore(url, bucket, app="qr"))

    assert "checksum mismatch" in message and "nothing was changed" in message


def test_truncated_gzip_is_refused_and_live_untouched(postgres, s3):
    url = postgres.create_database("qr")
    create_qr(url, rows=200)
    before = table_checksums(url)
    bucket = s3.create_bucket()
    whole = hand_made_dump(postgres, url)
    s3.client().put_object(Bucket=bucket, Key="cut.sql.gz", Body=whole[: len(whole) // 2])

    message = refused_cleanly(postgres, url, before, lambda: restore(url, bucket, key="cut.sql.gz"))

    assert "gzip stream ends early" in message


def test_corrupt_gzip_is_refused(postgres, s3):
    url = postgres.create_database("qr")
    create_qr(url, rows=200)
    before = table_checksums(url)
    bucket = s3.create_bucket()
    data = bytearray(hand_made_dump(postgres, url))
    for i in range(len(data) // 3, len(data) // 3 + 64):
        data[i] ^= 0x5A
    s3.client().put_object(Bucket=bucket, Key="bad.sql.gz", Body=bytes(data))

    message = refused_cleanly(postgres, url, before, lambda: restore(url, bucket, key="bad.sql.gz"))

    assert "not a valid gzip stream" in message or "gzip stream ends early" in message


def test_unreadable_custom_archive_is_refused(postgres, s3):
    """A hand-made archive (no recorded sha256) with bytes flipped inside a data block: every
    block is read before anything is created, and the damage is found there."""
    url = postgres.create_database("qb")
    create_quickbite(url, rows=400)
    before = table_checksums(url)
    bucket = s3.create_bucket()
    body = damaged_custom_archive(postgres, url)
    s3.client().put_object(Bucket=bucket, Key="damaged.dump", Body=body)  # no recorded sha256

    message = refused_cleanly(
        postgres, url, before, lambda: restore(url, bucket, key="damaged.dump")
    )

    assert "unreadable custom archive (data)" in message


def damaged_custom_archive(postgres, url: str) -> bytes:
    """A custom archive with bytes flipped inside its last data block."""
    data = bytearray(custom_dump(postgres, url))
    for i in range(len(data) - 2000, len(data) - 1500):
        data[i] ^= 0xFF
    return bytes(data)


def upload_with_checksum(s3, bucket: str, key: str, body: bytes) -> None:
    """As if pg_dump had written these bytes: the recorded sha256 is theirs."""
    sha = hashlib.sha256(body).hexdigest()
    s3.client().put_object(Bucket=bucket, Key=key, Body=body, Metadata={bf.META_SHA256: sha})


def test_custom_archive_with_matching_checksum_but_a_bad_block_fails_in_the_load(postgres, s3):
    """The checksum matches, so the blocks are first read by the load into the new database:
    the load fails there, the new database is dropped, the live one is unchanged."""
    url = postgres.create_database("qb")
    create_quickbite(url, rows=400)
    before = table_checksums(url)
    bucket = s3.create_bucket()
    upload_with_checksum(s3, bucket, "damaged.dump", damaged_custom_archive(postgres, url))
    lines: list[str] = []

    message = refused_cleanly(
        postgres, url, before, lambda: restore(url, bucket, key="damaged.dump", log=lines.append)
    )

    assert message.startswith("pg_restore --jobs 1 failed loading the archive: ")
    assert "could not uncompress data" in message or "could not read" in message, message
    assert any("the live database qb" in line and "unchanged" in line for line in lines)
    assert any("blocks read by the load" in line for line in lines)


def test_dry_run_reads_every_block_of_a_custom_archive(postgres, s3):
    url = postgres.create_database("qb")
    create_quickbite(url, rows=400)
    before = table_checksums(url)
    bucket = s3.create_bucket()
    upload_with_checksum(s3, bucket, "damaged.dump", damaged_custom_archive(postgres, url))

    message = refused_cleanly(
        postgres, url, before, lambda: restore(url, bucket, key="damaged.dump", dry_run=True)
    )

    assert "unreadable custom archive (data)" in message and "nothing was changed" in message


@pytest.mark.parametrize("jobs", [1, 2])
def test_custom_load_progress_counts_every_entry_once(postgres, s3, jobs):
    url = postgres.create_database("qb")
    create_quickbite(url, rows=50)
    bucket = s3.create_bucket()
    upload_with_checksum(s3, bucket, "qb.dump", custom_dump(postgres, url))
    bars: dict[str, list[float]] = {}

    @contextlib.contextmanager
    def bar(description: str, total: float | None = None):
        advanced = bars.setdefault(f"{description} of {total}", [])
        yield advanced.append

    report = restore(url, bucket, key="qb.dump", jobs=jobs, bar=bar)

    entries = int(report.steps[0].detail.split(" entries listed")[0].rsplit(" ", 1)[1])
    by_pg_restore = next(k for k in bars if k.startswith(f"load (pg_restore --jobs {jobs},"))
    by_psql = next(
        k for k in bars if k.startswith(f"foreign keys and later entries (psql x{jobs})")
    )
    head, tail = (int(k.rsplit(" of ", 1)[1]) for k in (by_pg_restore, by_psql))
    assert head + tail == entries and head > 10 and tail >= 1, bars
    assert sum(bars[by_pg_restore]) == head and sum(bars[by_psql]) == tail, bars


def test_row_counts_that_differ_from_the_manifest_are_refused_before_the_swap(postgres, qr, s3):
    url, bucket, manifest_key, _ = qr
    client = s3.client()
    manifest = json.loads(client.get_object(Bucket=bucket, Key=manifest_key)["Body"].read())
    manifest["database"]["tables"]["public.accounts"] += 1
    client.put_object(Bucket=bucket, Key=manifest_key, Body=json.dumps(manifest).encode())
    scramble(url)
    before = table_checksums(url)

    message = refused_cleanly(postgres, url, before, lambda: restore(url, bucket, app="qr"))

    assert "public.accounts: 300 rows, backup recorded 301" in message


def test_dry_run_verifies_and_changes_nothing(postgres, qr):
    url, bucket, _, _ = qr
    scramble(url)
    before = table_checksums(url)
    live = database_name(url)
    names_before = databases(postgres, live)

    code, out, err = run_cli(
        "--database-url", url, "--bucket", bucket, "--app", "qr", "--latest", "--dry-run", "--json"
    )  # fmt: skip

    assert code == 0, err
    report = json.loads(out)["database"]
    assert report["dry_run"] is True
    assert [s["name"] for s in report["steps"]] == ["verify"]
    assert table_checksums(url) == before
    assert databases(postgres, live) == names_before


def test_restore_without_yes_and_without_a_tty_refuses(qr):
    url, bucket, _, before = qr
    code, _, err = run_cli("--database-url", url, "--bucket", bucket, "--app", "qr", "--latest")
    assert code == 2
    assert "--yes" in err
    assert table_checksums(url) == before


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        ([], "--stack STACK --app APP, or --database-url"),
        (["--database-url", "postgresql:///x", "--bucket", "b"], "exactly one of --key"),
        (["--database-url", "postgresql:///x", "--bucket", "b", "--key", "k", "--latest"], "one"),
        (["--stack", "dev"], "--app"),
        (["--stack", "dev", "--app", "qr", "--component", "disk"], "--component 'disk'"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(args, fragment):
    code, _, err = run_cli(*args)
    assert code == 2
    assert fragment in err
    assert "Traceback" not in err


def test_cleanup_lists_and_drops_pre_restore_copies(postgres, qr):
    url, bucket, _, backed_up = qr
    report = restore(url, bucket, app="qr")
    assert report.pre_restore in databases(postgres, report.database)

    code, out, _ = run_cli("--database-url", url, "--cleanup", "--dry-run", "--json")
    assert code == 0
    assert json.loads(out)["found"] == [report.pre_restore]
    assert report.pre_restore in databases(postgres, report.database)

    code, out, err = run_cli("--database-url", url, "--cleanup", "--yes", "--json")
    assert code == 0, err
    assert json.loads(out)["dropped"] == [report.pre_restore]
    assert databases(postgres, report.database) == [report.database]
    assert table_checksums(url) == backed_up


def test_restore_when_the_live_database_is_gone(postgres, qr):
    """Complete system failure: the database itself was lost; restore recreates it."""
    import psycopg

    url, bucket, _, backed_up = qr
    live = database_name(url)
    with psycopg.connect(postgres.url(), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE "{live}"')

    report = restore(url, bucket, app="qr", create=True)

    assert report.pre_restore is None
    assert table_checksums(url) == backed_up


def test_sessions_on_the_live_database_are_ended_by_the_swap(qr):
    import psycopg

    url, bucket, _, backed_up = qr
    idle = psycopg.connect(url)
    try:
        report = restore(url, bucket, app="qr")
        assert report.sessions_ended == 1
        with pytest.raises(psycopg.OperationalError):
            idle.execute("SELECT 1")
    finally:
        idle.close()
    assert table_checksums(url) == backed_up


def test_gunzip_stream_handles_multi_member_and_small_chunks():
    data = gzip.compress(b"a" * 100_000) + gzip.compress(b"b" * 10)
    pieces = [data[i : i + 7] for i in range(0, len(data), 7)]
    assert b"".join(gunzip_stream(pieces, limit=1000)) == b"a" * 100_000 + b"b" * 10
    with pytest.raises(ValueError, match="truncated"):
        b"".join(gunzip_stream([data[:-3]]))
    with pytest.raises(ValueError, match="empty"):
        b"".join(gunzip_stream([]))
    with pytest.raises(ValueError, match="not a valid gzip stream"):
        b"".join(gunzip_stream([data[:20] + b"\xff" * 50 + data[70:]]))


def test_prefetch_keeps_order_and_passes_errors_to_the_reader():
    assert list(prefetch(iter([b"a", b"b", b"c"]), depth=1)) == [b"a", b"b", b"c"]

    def failing():
        yield b"first"
        raise RuntimeError("S3 went away")

    stream = prefetch(failing())
    assert next(stream) == b"first"
    with pytest.raises(RuntimeError, match="S3 went away"):
        next(stream)


def test_a_dump_that_connects_elsewhere_is_refused(postgres, s3):
    """`pg_dump --create` output would `\\connect` to the live database and write there."""
    url = postgres.create_database("qr")
    create_qr(url, rows=50)
    before = table_checksums(url)
    bucket = s3.create_bucket()
    dump = (
        b"CREATE TABLE t (x int);\n\\connect "
        + database_name(url).encode()
        + b"\nDROP TABLE accounts;\n"
    )
    s3.client().put_object(Bucket=bucket, Key="create.sql.gz", Body=gzip.compress(dump))

    message = refused_cleanly(
        postgres, url, before, lambda: restore(url, bucket, key="create.sql.gz")
    )

    assert "\\connect" in message


def test_cleanup_skips_a_leftover_that_is_in_use(postgres):
    """A `_restore_` database with a session may be a restore running now: never forced."""
    import psycopg

    url = postgres.create_database("qr")
    live = database_name(url)
    busy, idle = f"{live}_restore_20250101_000000", f"{live}_restore_20250101_000001"
    with psycopg.connect(postgres.url(), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{busy}"')
        conn.execute(f'CREATE DATABASE "{idle}"')
    holder = psycopg.connect(other_db_url(url, busy))
    try:
        code, out, err = run_cli("--database-url", url, "--cleanup", "--yes", "--json")
    finally:
        holder.close()

    assert code == 0, err
    report = json.loads(out)
    assert report["dropped"] == [idle]
    assert list(report["skipped"]) == [busy]
    assert databases(postgres, live) == [live, busy]


@pytest.mark.parametrize(
    ("tail", "out", "found"),
    [
        (b"\n", b"\\connect db\n", True),
        (b"x\n\\conn", b"ect db\n", True),  # cut between two inflated chunks
        (b"abc", b"SET a = 1;\n\\c db\n", True),
        (b"\n", b"COPY t (a) FROM stdin;\n\\N\n\\.\n", False),
        (b"\n", b"x\\connect y\n", False),  # not at a line start
    ],
)
def test_connect_lines_are_found_also_across_chunks(tail, out, found):
    assert switches_database(tail, out) is found
