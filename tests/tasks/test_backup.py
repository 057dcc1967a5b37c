"""`backup` and `backups list|pin` against real services: pgserver, moto server over HTTP, and
redis-server; every failure path checked for its one-line message, its exit code, and that it
left no manifest, no object and no open multipart upload behind."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import stat
import subprocess
import time
from pathlib import Path

import psycopg
import pytest

from automation.tasks.io import s3io
from contract import backup_layout as bf
from tests.services import S3, Postgres, free_port
from tests.tasks import Redis as RedisServer
from tests.tasks import (
    SourceDb,
    bucket_keys,
    capture_pushes,
    load_manifest,
    make_source,
    one_line_error,
    open_uploads,
    promtool_accepts,
    redis_server_fixture,  # noqa: F401  (the redis_server fixture)
    row_counts,
    run_cli,
    start_redis,
)


@pytest.fixture(scope="module")
def qr_source(postgres: Postgres) -> SourceDb:
    return make_source(postgres, "qr", rows=1000)


@pytest.fixture(scope="module")
def quickbite_source(postgres: Postgres) -> SourceDb:
    return make_source(postgres, "quickbite", rows=1000)


def backup_json(*args: str) -> dict:
    result = run_cli("backup", *args, "--json")
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


@pytest.mark.parametrize("system", ["qr", "quickbite"])
@pytest.mark.parametrize("fmt", ["plain", "custom"])
def test_backup_list_verify_round_trip(
    system: str, fmt: str, qr_source: SourceDb, quickbite_source: SourceDb, s3: S3
) -> None:
    source = qr_source if system == "qr" else quickbite_source
    bucket = s3.create_bucket("rt")
    summary = backup_json("--database-url", source.url, "--bucket", bucket, "--app", system,
                          "--format", fmt)  # fmt: skip

    # the manifest, written last, records the facts the source really has
    manifest = load_manifest(s3, bucket, summary["manifest_key"])
    assert manifest["database"]["tables"] == row_counts(source.url)
    assert manifest["database"]["migration_head"] == source.head
    assert manifest["database"]["server_version"].startswith("16")
    [part] = manifest["parts"]
    assert part["key"].endswith(bf.DB_PLAIN if fmt == "plain" else bf.DB_CUSTOM)

    # the stored object is what the manifest and its metadata say, byte for byte
    body = s3.client().get_object(Bucket=bucket, Key=part["key"])
    data = body["Body"].read()
    assert hashlib.sha256(data).hexdigest() == part["sha256"] == body["Metadata"]["sha256"]
    assert len(data) == part["size"] == int(body["Metadata"]["size"])
    assert body["Metadata"]["format"] == fmt
    assert body["Metadata"]["migration-head"] == source.head
    assert body["Metadata"]["app"] == system
    assert data.startswith(b"\x1f\x8b" if fmt == "plain" else b"PGDMP")
    if fmt == "plain":
        assert b"CREATE TABLE public.webhook_logs" in gzip.decompress(data)
    tags = s3io.get_tags(s3.client(), bucket, part["key"])
    assert tags == {"retention": "standard"}

    listed = run_cli("backups", "list", "--bucket", bucket, "--json")
    assert listed.exit_code == 0, listed.stderr
    [entry] = json.loads(listed.stdout)
    assert (entry["app"], entry["format"], entry["complete"]) == (system, fmt, True)
    assert entry["parts"] == [part["key"].rsplit("/", 1)[1]]
    assert entry["verified"] is None

    verified = run_cli("verify-backup", "--database-url", source.url, "--bucket", bucket,
                       "--latest", "--json")  # fmt: skip
    assert verified.exit_code == 0, verified.stderr
    report = json.loads(verified.stdout)
    assert report["ok"] is True
    assert report["key"] == part["key"]
    assert {c["name"] for c in report["checks"]} >= {"integrity", "restore", "row counts"}
    assert report["restore_seconds"] is not None
    assert report["not_checked"] == []

    [after] = json.loads(run_cli("backups", "list", "--bucket", bucket, "--json").stdout)
    assert after["verified"] == "ok"
    assert bf.RUN_ID_PATTERN.match(after["verified_at"])


def test_keys_sort_by_time_and_latest_is_newest_complete_run(qr_source: SourceDb, s3: S3) -> None:
    bucket = s3.create_bucket("sort")
    first = backup_json("--database-url", qr_source.url, "--bucket", bucket)
    time.sleep(1.1)  # run ids have one-second resolution
    second = backup_json("--database-url", qr_source.url, "--bucket", bucket)
    assert first["run_id"] < second["run_id"]
    assert first["app"] == qr_source.name  # app defaults to the database name

    # a run that died before its manifest (db part only) is newer but never "latest"
    client = s3.client()
    part = second["parts"][0]["key"]
    orphan = part.replace(second["run_id"], "29991231T235959Z")
    client.copy_object(Bucket=bucket, Key=orphan, CopySource={"Bucket": bucket, "Key": part})

    runs = json.loads(run_cli("backups", "list", "--bucket", bucket, "--json").stdout)
    assert [r["run_id"] for r in runs] == ["29991231T235959Z", second["run_id"], first["run_id"]]
    assert [r["complete"] for r in runs] == [False, True, True]

    from automation.tasks.backups import find_backup

    ref = find_backup(client, bucket, "backups", None, None)
    assert ref.key == part
    assert ref.run_id == second["run_id"]


def test_redis_and_objects_parts_in_one_run(
    qr_source: SourceDb, s3: S3, redis_server: RedisServer, tmp_path: Path
) -> None:
    for i in range(50):
        redis_server.cli("SET", f"session:{i}", f"value-{i}")
    client = s3.client()
    exports = s3.create_bucket("qr-exports")
    originals = {f"exports/{i}.png": os.urandom(1000 + i) for i in range(5)}
    for key, data in originals.items():
        client.put_object(Bucket=exports, Key=key, Body=data)
    bucket = s3.create_bucket("full")

    summary = backup_json("--database-url", qr_source.url, "--bucket", bucket, "--app", "qr",
                          "--redis-url", redis_server.url, "--objects-bucket", exports)  # fmt: skip

    manifest = load_manifest(s3, bucket, summary["manifest_key"])
    formats = sorted(p["format"] for p in manifest["parts"])
    assert formats == ["object"] * 5 + ["plain", "rdb"]
    for p in manifest["parts"]:  # every part's recorded checksum is the stored object's
        stored = client.get_object(Bucket=bucket, Key=p["key"])["Body"].read()
        assert hashlib.sha256(stored).hexdigest() == p["sha256"]
    for key, data in originals.items():
        mirrored = bf.part_key("backups", "qr", summary["run_id"], bf.OBJECTS_DIR + key)
        assert client.get_object(Bucket=bucket, Key=mirrored)["Body"].read() == data

    # the RDB is a clean snapshot: a fresh redis-server loads it and has the keys
    rdb_key = next(p["key"] for p in manifest["parts"] if p["format"] == "rdb")
    rdb = gzip.decompress(client.get_object(Bucket=bucket, Key=rdb_key)["Body"].read())
    assert rdb.startswith(b"REDIS") and rdb[-9] == 0xFF
    restored_dir = tmp_path / "restored"
    restored_dir.mkdir()
    (restored_dir / "dump.rdb").write_bytes(rdb)
    proc, restored = start_redis(restored_dir, "--dbfilename", "dump.rdb")
    try:
        assert restored.cli("DBSIZE") == "50"
        assert restored.cli("GET", "session:7") == "value-7"
    finally:
        proc.terminate()
        proc.wait(timeout=10)

    [entry] = json.loads(run_cli("backups", "list", "--bucket", bucket, "--json").stdout)
    assert entry["parts"] == ["db.sql.gz", "objects", "redis.rdb.gz"]


def test_redis_wrong_password_fails_cleanly(s3: S3, redis_server: RedisServer) -> None:
    bucket = s3.create_bucket("rpw")
    bad = redis_server.url.replace(redis_server.password, "wrong")
    result = run_cli("backup", "--redis-url", bad, "--app", "qr", "--bucket", bucket)
    assert result.exit_code == 1
    line = one_line_error(result)
    assert "--redis-url: Redis at 127.0.0.1:" in line and "AUTH failed" in line
    assert "wrong" not in result.stderr + result.stdout  # the password is never printed
    assert bucket_keys(s3, bucket) == []
    assert open_uploads(s3, bucket) == []


# --- failures: one line, non-zero, nothing left behind ----------------------------------------


def test_unreachable_s3_is_one_clear_line(
    qr_source: SourceDb, s3: S3, monkeypatch: pytest.MonkeyPatch
) -> None:
    bucket = s3.create_bucket("down")
    closed = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("AWS_ENDPOINT_URL", closed)
    result = run_cli("backup", "--database-url", qr_source.url, "--bucket", bucket)
    assert result.exit_code == 1
    line = one_line_error(result)
    assert f"S3 endpoint {closed} is unreachable" in line
    assert "AWS_ENDPOINT_URL" in line
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3.endpoint)
    assert bucket_keys(s3, bucket) == []


def test_missing_bucket_is_one_clear_line(qr_source: SourceDb, s3: S3) -> None:
    result = run_cli("backup", "--database-url", qr_source.url, "--bucket", "no-such-bucket-x1")
    assert result.exit_code == 1
    line = one_line_error(result)
    assert "bucket 'no-such-bucket-x1' does not exist at " + s3.endpoint in line
    assert "--bucket" in line


def test_unreachable_database_is_one_clear_line(s3: S3, tmp_path: Path) -> None:
    bucket = s3.create_bucket("nodb")
    url = f"postgresql://postgres:hunter2@127.0.0.1:{free_port()}/qr_db"
    result = run_cli("backup", "--database-url", url, "--bucket", bucket)
    assert result.exit_code == 1
    line = one_line_error(result)
    assert "cannot connect to PostgreSQL at 127.0.0.1:" in line and "/qr_db" in line
    assert "hunter2" not in result.stderr + result.stdout
    assert bucket_keys(s3, bucket) == []
    assert open_uploads(s3, bucket) == []


def test_pg_dump_dying_mid_stream_aborts_the_upload(
    qr_source: SourceDb, s3: S3, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A pg_dump that writes 20 MB (several parts already uploaded) and then fails."""
    fake = tmp_path / "pg_dump"
    fake.write_text(
        "#!/bin/sh\n"
        'if [ "$1" = "--version" ]; then echo "pg_dump (PostgreSQL) 16.2"; exit 0; fi\n'
        "head -c 20000000 /dev/urandom\n"
        'echo "pg_dump: error: query failed: server closed the connection unexpectedly" >&2\n'
        "exit 1\n"
    )
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("OPSPLANE_PG_BIN", str(tmp_path))
    bucket = s3.create_bucket("dies")
    result = run_cli("backup", "--database-url", qr_source.url, "--bucket", bucket)
    assert result.exit_code == 1
    line = one_line_error(result)
    assert "pg_dump of" in line and "failed (exit 1)" in line
    assert "server closed the connection unexpectedly" in line
    assert bucket_keys(s3, bucket) == []  # no part, no manifest
    assert open_uploads(s3, bucket) == []  # the multipart upload was aborted
    runs = json.loads(run_cli("backups", "list", "--bucket", bucket, "--json").stdout)
    assert runs == []


def test_failure_after_a_stored_part_removes_the_whole_run(
    qr_source: SourceDb, s3: S3, tmp_path: Path
) -> None:
    """db part stored, then Redis (which answers PING, so the pre-flight passes) refuses the
    snapshot: the db part is deleted again."""
    bucket = s3.create_bucket("half")
    proc, redis = start_redis(tmp_path, "--rename-command", "SYNC", "", "--rename-command",
                              "PSYNC", "")  # fmt: skip
    try:
        result = run_cli("backup", "--database-url", qr_source.url, "--bucket", bucket,
                         "--redis-url", redis.url, "--app", "qr")  # fmt: skip
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    assert result.exit_code == 1
    assert "redis-cli --rdb" in one_line_error(result)
    assert "db: stored" in result.stderr  # it did get that far
    assert bucket_keys(s3, bucket) == []
    assert open_uploads(s3, bucket) == []


def test_bad_input_exits_2(s3: S3) -> None:
    bucket = s3.create_bucket("bad")
    nothing = run_cli("backup", "--bucket", bucket)
    assert nothing.exit_code == 2
    assert "nothing to back up" in one_line_error(nothing)
    fmt = run_cli("backup", "--bucket", bucket, "--app", "qr", "--redis-url", "redis://x:1",
                  "--format", "zip")  # fmt: skip
    assert fmt.exit_code == 2
    assert "--format 'zip'" in one_line_error(fmt)
    scheme = run_cli("backup", "--bucket", bucket, "--app", "qr", "--redis-url", "http://x:1")
    assert scheme.exit_code == 2
    assert "--redis-url" in one_line_error(scheme)


# --- pinning and lifecycle ---------------------------------------------------------------------


def test_pin_and_unpin_retag_every_object_of_the_run(
    qr_source: SourceDb, s3: S3, redis_server: RedisServer
) -> None:
    bucket = s3.create_bucket("pin")
    summary = backup_json("--database-url", qr_source.url, "--bucket", bucket,
                          "--redis-url", redis_server.url)  # fmt: skip
    client = s3.client()
    keys = bucket_keys(s3, bucket)
    assert len(keys) == 3  # db, redis, manifest

    pinned = run_cli("backups", "pin", summary["manifest_key"], "--bucket", bucket)
    assert pinned.exit_code == 0, pinned.stderr
    assert {s3io.get_tags(client, bucket, k)["retention"] for k in keys} == {"pinned"}
    [entry] = json.loads(run_cli("backups", "list", "--bucket", bucket, "--json").stdout)
    assert entry["retention"] == "pinned"

    unpinned = run_cli("backups", "pin", summary["parts"][0]["key"], "--bucket", bucket, "--unpin")
    assert unpinned.exit_code == 0, unpinned.stderr
    assert {s3io.get_tags(client, bucket, k)["retention"] for k in keys} == {"standard"}

    missing = run_cli("backups", "pin", "backups/qr/20200101T000000Z/", "--bucket", bucket)
    assert missing.exit_code == 2
    assert "no such backup" in one_line_error(missing)


def test_lifecycle_applied_by_the_task_reads_back_equal(qr_source: SourceDb, s3: S3) -> None:
    from automation.tasks.io.lifecycle import current_rules
    from contract.backup_lifecycle import lifecycle_rules, normalize

    bucket = s3.create_bucket("lc")
    client = s3.client()
    foreign = {
        "ID": "someone-elses-rule",
        "Status": "Enabled",
        "Filter": {"Prefix": "tmp/"},
        "Expiration": {"Days": 2},
    }
    client.put_bucket_lifecycle_configuration(
        Bucket=bucket, LifecycleConfiguration={"Rules": [foreign]}
    )
    first = run_cli("backup", "--database-url", qr_source.url, "--bucket", bucket,
                    "--lifecycle", "--retention-days", "14")  # fmt: skip
    assert first.exit_code == 0, first.stderr
    assert "lifecycle: updated (14 days)" in first.stderr
    expected = lifecycle_rules(14, prefix="backups")
    stored = {r["ID"]: normalize(r) for r in current_rules(client, bucket)}
    assert stored == {r["ID"]: normalize(r) for r in [foreign, *expected]}
    assert stored["opsplane-expire-standard-backups"]["Filter"] == {
        "And": {"Prefix": "backups/", "Tags": [{"Key": "retention", "Value": "standard"}]}
    }
    second = run_cli("backup", "--database-url", qr_source.url, "--bucket", bucket, "--lifecycle",
                     "--retention-days", "14")  # fmt: skip
    assert "lifecycle: unchanged (14 days)" in second.stderr


def test_lifecycle_rules_are_the_boto3_shape() -> None:
    from contract.backup_lifecycle import lifecycle_rules

    rules = lifecycle_rules(30)
    assert [r["ID"] for r in rules] == [
        "opsplane-expire-standard-backups",
        "opsplane-expire-noncurrent-versions",
        "opsplane-abort-incomplete-multipart",
    ]
    assert rules[0]["Filter"] == {"Tag": {"Key": "retention", "Value": "standard"}}
    assert rules[0]["Expiration"] == {"Days": 30}
    assert rules[1]["NoncurrentVersionExpiration"] == {"NoncurrentDays": 7}
    assert rules[2]["AbortIncompleteMultipartUpload"] == {"DaysAfterInitiation": 1}
    with pytest.raises(ValueError, match="retention_days"):
        lifecycle_rules(0)


# --- the metric ---------------------------------------------------------------------------------


def test_backup_pushes_last_success_per_part(
    qr_source: SourceDb, s3: S3, redis_server: RedisServer
) -> None:
    bucket = s3.create_bucket("metric")
    with capture_pushes() as (gateway, pushes):
        before = time.time()
        backup_json("--database-url", qr_source.url, "--bucket", bucket, "--app", "qr",
                    "--redis-url", redis_server.url, "--pushgateway", gateway)  # fmt: skip
    paths = sorted(path for path, _ in pushes)
    assert paths == [
        "/metrics/job/opsplane_backup/app/qr/part/db",
        "/metrics/job/opsplane_backup/app/qr/part/redis",
    ]
    for path, body in pushes:
        part = path.rsplit("/", 1)[1]
        sample = next(line for line in body.splitlines() if not line.startswith("#"))
        name, value = sample.rsplit(" ", 1)
        assert name == f'opsplane_backup_last_success_timestamp_seconds{{app="qr",part="{part}"}}'
        assert before <= float(value) <= time.time()
        assert promtool_accepts(body)


def test_s3_client_reads_the_endpoint_from_the_standard_environment(s3: S3) -> None:
    assert s3io.s3_client().meta.endpoint_url == s3.endpoint


def test_dump_bigger_than_a_part_streams_in_parts(s3: S3, postgres: Postgres) -> None:
    """A dump bigger than one 8 MiB part goes up as several parts and still checks out."""
    from automation.tasks.backup import BackupOptions, run_backup

    url = postgres.create_database("big")
    with psycopg.connect(url) as conn:  # ~25 MB of hex: about 14 MB gzipped
        conn.execute(
            """CREATE TABLE blobs AS SELECT i, (SELECT string_agg(md5(random()::text || j), '')
                                               FROM generate_series(1, 40) AS j WHERE i > 0) AS junk
               FROM generate_series(1, 20000) AS i"""
        )
    bucket = s3.create_bucket("parts")
    result = run_backup(BackupOptions(bucket=bucket, database_url=url, gzip_level=1))
    [part] = result.parts
    assert part.size > s3io.PART_SIZE  # so it was sent as more than one part
    data = s3.client().get_object(Bucket=bucket, Key=part.key)["Body"].read()
    assert hashlib.sha256(data).hexdigest() == part.sha256
    assert len(data) == part.size
    assert result.database is not None and result.database.tables["public.blobs"] == 20000
    assert open_uploads(s3, bucket) == []


def test_runbook_style_dump_is_listed_as_made_by_hand(
    qr_source: SourceDb, s3: S3, postgres: Postgres
) -> None:
    bucket = s3.create_bucket("hand")
    dump = subprocess.run(
        f"{postgres.bin_dir / 'pg_dump'} '{qr_source.url}' | gzip",
        shell=True, capture_output=True, check=True,
    ).stdout  # fmt: skip
    s3.client().put_object(Bucket=bucket, Key="backups/backup_20251027.sql.gz", Body=dump)
    [entry] = json.loads(run_cli("backups", "list", "--bucket", bucket, "--json").stdout)
    assert entry["managed"] is False
    table = run_cli("backups", "list", "--bucket", bucket)
    assert "plain (by hand)" in table.stdout and "backup_20251027.sql.gz" in table.stdout
    assert entry["key"] == "backups/backup_20251027.sql.gz"
    assert entry["size"] == len(dump)


def test_metadata_on_objects_over_the_copy_limit_uses_part_copies(
    s3: S3, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Objects above CopyObject's 5 GB limit get their metadata through UploadPartCopy; the
    limits are scaled down here so an 11 MiB object takes that path."""
    monkeypatch.setattr(s3io, "MAX_SINGLE_COPY", 1024)
    monkeypatch.setattr(s3io, "COPY_PART_SIZE", 5 * 1024 * 1024)
    bucket = s3.create_bucket("bigcopy")
    client = s3.client()
    data = os.urandom(11 * 1024 * 1024)
    client.put_object(Bucket=bucket, Key="k", Body=data)
    s3io.replace_metadata(
        client,
        bucket,
        "k",
        {"sha256": "abc", "size": str(len(data))},
        len(data),
        "application/gzip",
    )
    head = client.head_object(Bucket=bucket, Key="k")
    assert head["Metadata"] == {"sha256": "abc", "size": str(len(data))}
    assert head["ETag"].strip('"').endswith("-3")  # three copied parts: 5 + 5 + 1 MiB
    assert client.get_object(Bucket=bucket, Key="k")["Body"].read() == data
    assert open_uploads(s3, bucket) == []


def test_role_that_cannot_read_a_table_is_one_clear_line(
    qr_source: SourceDb, s3: S3, postgres: Postgres
) -> None:
    with psycopg.connect(qr_source.url, autocommit=True) as conn:
        conn.execute("DROP ROLE IF EXISTS backup_noselect")
        conn.execute("CREATE ROLE backup_noselect LOGIN")
        conn.execute("GRANT SELECT ON accounts, qr_items, alembic_version TO backup_noselect")
    url = qr_source.url.replace("postgresql://postgres@", "postgresql://backup_noselect@")
    bucket = s3.create_bucket("noselect")
    result = run_cli("backup", "--database-url", url, "--bucket", bucket)
    assert result.exit_code == 1
    line = one_line_error(result)
    assert "reading " in line and "permission denied for table qr_events" in line
    assert bucket_keys(s3, bucket) == []


class CountingClient:
    """A real S3 client that counts concurrent `upload_part` calls and can fail one part."""

    def __init__(self, client: object, fail_part: int | None = None) -> None:
        import threading

        self._client, self._fail_part = client, fail_part
        self._lock = threading.Lock()
        self.now = self.peak = 0

    def upload_part(self, **kwargs: object) -> dict:
        from botocore.exceptions import ClientError

        with self._lock:
            self.now += 1
            self.peak = max(self.peak, self.now)
        try:
            if kwargs["PartNumber"] == self._fail_part:
                raise ClientError({"Error": {"Code": "AccessDenied"}}, "UploadPart")
            time.sleep(0.05)  # widen the window in which parts overlap
            return self._client.upload_part(**kwargs)
        finally:
            with self._lock:
                self.now -= 1

    def __getattr__(self, name: str) -> object:
        return getattr(self._client, name)


def test_multipart_writer_bounds_parts_in_flight_and_aborts_on_error(s3: S3) -> None:
    bucket = s3.create_bucket("mpu")
    part = 5 * 1024 * 1024
    data = os.urandom(part)
    client = CountingClient(s3io.s3_client())
    with s3io.MultipartUpload(client, bucket, "ok", part_size=part, max_in_flight=2) as upload:
        for _ in range(6):
            upload.write(data)
        stored = upload.complete()
    assert stored.size == 6 * part
    assert stored.sha256 == hashlib.sha256(data * 6).hexdigest()
    assert 1 <= client.peak <= 2

    failing = CountingClient(s3io.s3_client(), fail_part=2)
    with (
        pytest.raises(s3io.TaskFailed, match=r"access denied to s3://mpu-\w+/broken"),
        s3io.MultipartUpload(failing, bucket, "broken", part_size=part) as upload,
    ):
        for _ in range(6):
            upload.write(data)
        upload.complete()
    assert "broken" not in bucket_keys(s3, bucket)
    assert open_uploads(s3, bucket) == []
