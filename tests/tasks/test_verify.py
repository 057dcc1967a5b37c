"""`verify-backup` (the restore drill) and `check_backup_integrity` against real services: damaged
backups are caught with a clear line, hand-made runbook dumps verify as far as possible, the
throwaway database never outlives the drill, and the result reaches the backup's tags and the
Pushgateway."""

from __future__ import annotations

import gzip
import json
import subprocess

import psycopg
import pytest

from automation.tasks.backups import find_backup
from automation.tasks.io import s3io
from automation.tasks.verify import check_backup_integrity
from tests.schemas import QR_HEAD
from tests.services import S3, Postgres, free_port
from tests.tasks import (
    SourceDb,
    capture_pushes,
    databases,
    key_ending,
    load_manifest,
    make_source,
    one_line_error,
    promtool_accepts,
    run_cli,
)


@pytest.fixture(scope="module")
def source(postgres: Postgres) -> SourceDb:
    return make_source(postgres, "qr", rows=500)


def make_backup(source: SourceDb, bucket: str, fmt: str = "plain") -> dict:
    result = run_cli("backup", "--database-url", source.url, "--bucket", bucket, "--app", "qr",
                     "--format", fmt, "--json")  # fmt: skip
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


def verify(source: SourceDb, bucket: str, *args: str):
    return run_cli("verify-backup", "--database-url", source.url, "--bucket", bucket, *args)


def replace_body(s3: S3, bucket: str, key: str, body: bytes) -> None:
    """Overwrite the bytes but keep the recorded metadata: what silent damage looks like."""
    client = s3.client()
    metadata = client.head_object(Bucket=bucket, Key=key)["Metadata"]
    client.put_object(Bucket=bucket, Key=key, Body=body, Metadata=metadata)


def verified_tag(s3: S3, bucket: str, key: str) -> str | None:
    return s3io.get_tags(s3.client(), bucket, key).get("verified")


def no_throwaway_left(postgres: Postgres, source: SourceDb) -> bool:
    """No drill database of `source` is left (other tests leave theirs on the shared server)."""
    return not [d for d in databases(postgres) if d.startswith(f"{source.name}_verify_")]


def test_checksum_mismatch_fails_with_one_line(
    source: SourceDb, s3: S3, postgres: Postgres
) -> None:
    bucket = s3.create_bucket("sum")
    key = make_backup(source, bucket)["parts"][0]["key"]
    data = s3.client().get_object(Bucket=bucket, Key=key)["Body"].read()
    sql = gzip.decompress(data).replace(b"7f3a9c1d2e4b", b"000000000000")  # same length
    forged = gzip.compress(sql, compresslevel=1)
    replace_body(s3, bucket, key, forged)
    result = verify(source, bucket, "--key", key)
    assert result.exit_code == 1
    line = one_line_error(result)
    assert f"backup s3://{bucket}/{key} did NOT verify" in line
    assert "checksum mismatch: recorded sha256" in line and "use another one" in line
    assert "size mismatch" in line  # gzip level 1 makes it a different size too
    assert verified_tag(s3, bucket, key) == "failed"
    assert no_throwaway_left(postgres, source)  # integrity fails before any database is created

    # same size, valid gzip, one recorded digit off: only the checksum can tell
    replace_body(s3, bucket, key, data)
    client = s3.client()
    metadata = client.head_object(Bucket=bucket, Key=key)["Metadata"]
    metadata["sha256"] = ("0" if metadata["sha256"][0] != "0" else "1") + metadata["sha256"][1:]
    client.copy_object(Bucket=bucket, Key=key, CopySource={"Bucket": bucket, "Key": key},
                       Metadata=metadata, MetadataDirective="REPLACE")  # fmt: skip
    only_sum = verify(source, bucket, "--key", key)
    assert only_sum.exit_code == 1
    line = one_line_error(only_sum)
    assert "checksum mismatch" in line and "size mismatch" not in line


@pytest.mark.parametrize("fmt", ["plain", "custom"])
def test_truncated_object_fails_with_one_line(source: SourceDb, s3: S3, fmt: str) -> None:
    bucket = s3.create_bucket("trunc")
    part = make_backup(source, bucket, fmt)["parts"][0]
    data = s3.client().get_object(Bucket=bucket, Key=part["key"])["Body"].read()
    replace_body(s3, bucket, part["key"], data[: len(data) // 2])
    result = verify(source, bucket, "--latest")
    assert result.exit_code == 1
    line = one_line_error(result)
    if fmt == "plain":
        assert "gzip stream ends early (truncated object)" in line
    else:
        assert "custom archive unreadable (pg_restore)" in line
    assert f"size mismatch: recorded {len(data)} bytes, stored {len(data) // 2}" in line
    assert "checksum mismatch" in line
    assert verified_tag(s3, bucket, part["key"]) == "failed"

    # the reusable check (the restore helper calls it before touching anything) says the same
    client = s3.client()
    ref = find_backup(client, bucket, key=part["key"])
    with pytest.raises(Exception, match=r"truncated|unreadable"):
        check_backup_integrity(client, ref, pg_restore_for(source))


def pg_restore_for(source: SourceDb):
    from automation.tasks.io import pgtools

    return pgtools.tools_for(source.url, "pg_restore")["pg_restore"]


def test_integrity_of_a_good_backup(source: SourceDb, s3: S3) -> None:
    bucket = s3.create_bucket("good")
    part = make_backup(source, bucket, "custom")["parts"][0]
    client = s3.client()
    ref = find_backup(client, bucket, app="qr")
    assert (ref.key, ref.format, ref.sha256) == (part["key"], "custom", part["sha256"])
    assert ref.migration_head == QR_HEAD
    integrity = check_backup_integrity(client, ref, pg_restore_for(source))
    assert (integrity.sha256, integrity.size) == (part["sha256"], part["size"])
    assert integrity.checksum_recorded and integrity.archive_complete


def test_recorded_facts_are_really_compared(source: SourceDb, s3: S3, postgres: Postgres) -> None:
    """Change what the manifest recorded: the drill notices rows and head that do not match."""
    bucket = s3.create_bucket("facts")
    summary = make_backup(source, bucket)
    manifest = load_manifest(s3, bucket, summary["manifest_key"])
    manifest["database"]["tables"]["public.accounts"] += 1
    manifest["database"]["tables"]["public.gone"] = 3
    manifest["database"]["migration_head"] = "0000deadbeef"
    s3.client().put_object(
        Bucket=bucket, Key=summary["manifest_key"], Body=json.dumps(manifest).encode()
    )
    result = verify(source, bucket, "--latest", "--json")
    assert result.exit_code == 1
    report = json.loads(result.stdout)
    checks = {c["name"]: c for c in report["checks"]}
    assert checks["restore"]["ok"] is True
    assert checks["tables present"] == {
        "name": "tables present",
        "ok": False,
        "detail": "missing: public.gone",
    }
    assert checks["row counts"]["ok"] is False
    assert "public.accounts 500 != 501" in checks["row counts"]["detail"]
    assert checks["migration head"]["ok"] is False
    assert QR_HEAD in checks["migration head"]["detail"]
    assert no_throwaway_left(postgres, source)


def test_runbook_style_dump_verifies_and_says_what_it_could_not_check(
    source: SourceDb, s3: S3, postgres: Postgres
) -> None:
    """`pg_dump -U user db | gzip`, uploaded by hand under the runbook's name, no metadata."""
    bucket = s3.create_bucket("hand")
    dump = subprocess.run(
        f"{postgres.bin_dir / 'pg_dump'} '{source.url}' | gzip",
        shell=True, capture_output=True, check=True,
    ).stdout  # fmt: skip
    key = "backups/backup_20251027.sql.gz"
    s3.client().put_object(Bucket=bucket, Key=key, Body=dump)

    result = verify(source, bucket, "--key", key, "--json")
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["ok"] is True
    assert report["format"] == "plain"
    checks = {c["name"]: c for c in report["checks"]}
    assert checks["integrity"]["ok"] and "computed" in checks["integrity"]["detail"]
    assert checks["restore"]["ok"]
    assert checks["migration head found"]["detail"] == QR_HEAD
    assert checks["tables restored"]["detail"] == "5 tables"
    assert any("checksum" in item for item in report["not_checked"])
    assert any("migration head" in item for item in report["not_checked"])
    assert verified_tag(s3, bucket, key) == "ok"

    text = verify(source, bucket, "--key", key)
    assert "not checked checksum (none recorded: backup made by hand)" in text.stderr
    assert "restore time" in text.stderr
    assert text.stdout.strip() == f"VERIFIED {key}"


def test_unrestorable_sql_fails_and_the_throwaway_database_is_dropped(
    source: SourceDb, s3: S3, postgres: Postgres
) -> None:
    bucket = s3.create_bucket("badsql")
    key = "backups/backup_20251028.sql.gz"
    body = gzip.compress(b"CREATE TABLE ok_so_far (id int);\nSELECT no_such_function();\n")
    s3.client().put_object(Bucket=bucket, Key=key, Body=body)
    result = verify(source, bucket, "--key", key)
    assert result.exit_code == 1
    line = one_line_error(result)
    assert "restore (psql) failed" in line and "no_such_function" in line
    assert verified_tag(s3, bucket, key) == "failed"
    assert no_throwaway_left(postgres, source)


def test_not_a_backup_is_bad_input(source: SourceDb, s3: S3) -> None:
    bucket = s3.create_bucket("junk")
    s3.client().put_object(Bucket=bucket, Key="backups/notes.txt", Body=b"hello")
    result = verify(source, bucket, "--key", "backups/notes.txt")
    assert result.exit_code == 2
    assert "neither gzip nor a pg_dump custom archive" in one_line_error(result)
    missing = verify(source, bucket, "--key", "backups/nope.sql.gz")
    assert missing.exit_code == 1
    assert "no object s3://" in one_line_error(missing)


def test_key_or_latest_exactly_one(source: SourceDb, s3: S3) -> None:
    bucket = s3.create_bucket("flags")
    both = verify(source, bucket, "--key", "x", "--latest")
    neither = verify(source, bucket)
    assert both.exit_code == neither.exit_code == 2
    assert "exactly one of --key KEY or --latest" in one_line_error(both)
    empty = verify(source, bucket, "--latest")
    assert empty.exit_code == 1
    assert "no complete database backup under" in one_line_error(empty)


def test_pushes_success_metric(source: SourceDb, s3: S3) -> None:
    bucket = s3.create_bucket("push")
    make_backup(source, bucket)
    with capture_pushes() as (gateway, pushes):
        result = verify(source, bucket, "--latest", "--pushgateway", gateway)
    assert result.exit_code == 0, result.stderr
    [(path, body)] = pushes
    assert path == "/metrics/job/opsplane_backup_verify/app/qr"
    samples = dict(line.rsplit(" ", 1) for line in body.splitlines() if not line.startswith("#"))
    assert samples['opsplane_backup_verify_success{app="qr"}'] == "1"
    assert float(samples['opsplane_backup_verify_last_run_timestamp_seconds{app="qr"}']) > 1.7e9
    assert promtool_accepts(body)


def test_unreachable_database_fails_and_pushes_failure(source: SourceDb, s3: S3) -> None:
    bucket = s3.create_bucket("nodb")
    make_backup(source, bucket)
    url = f"postgresql://qr_user:pw-not-shown@127.0.0.1:{free_port()}/qr_db"
    with capture_pushes() as (gateway, pushes):
        result = run_cli("verify-backup", "--database-url", url, "--bucket", bucket, "--latest",
                         "--app", "qr", "--pushgateway", gateway)  # fmt: skip
    assert result.exit_code == 1
    line = one_line_error(result)
    assert "cannot connect to PostgreSQL at 127.0.0.1:" in line
    assert "pw-not-shown" not in result.stderr + result.stdout
    [(_, body)] = pushes
    assert 'opsplane_backup_verify_success{app="qr"} 0' in body


def test_role_without_createdb_is_one_clear_line(
    source: SourceDb, s3: S3, postgres: Postgres
) -> None:
    bucket = s3.create_bucket("nocreate")
    make_backup(source, bucket)
    with psycopg.connect(postgres.url(), autocommit=True) as conn:
        conn.execute("DROP ROLE IF EXISTS drill_nocreatedb")
        conn.execute("CREATE ROLE drill_nocreatedb LOGIN NOCREATEDB")
    url = source.url.replace("postgresql://postgres@", "postgresql://drill_nocreatedb@")
    result = run_cli("verify-backup", "--database-url", url, "--bucket", bucket, "--latest")
    assert result.exit_code == 1
    line = one_line_error(result)
    assert "cannot create the throwaway database qr_" in line
    assert "permission denied to create database" in line
    assert "needs CREATEDB" in line
    assert verified_tag(s3, bucket, make_key(s3, bucket)) is None  # no verdict on the backup


def make_key(s3: S3, bucket: str) -> str:
    return key_ending(s3, bucket, ".sql.gz")
