"""Issue #17, the backup side: runs that collide, runs that are killed, targets that are down,
and the progress a long backup shows. Real pgserver, moto over HTTP, redis-server; the kills are
real signals (`OPSPLANE_TEST_KILL_AT`, automation/tasks/backups.py `kill_point`)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from automation.errors import TaskFailed
from automation.tasks.backup import BackupOptions, BackupResult, run_backup, write_manifest
from automation.tasks.backups import KILL_ENV, KILL_SIGNAL_ENV, find_backup, list_backups
from automation.tasks.io import s3io
from contract import backup_layout as bf
from tests.services import S3, Postgres, free_port
from tests.tasks import Redis as RedisServer
from tests.tasks import (
    SourceDb,
    bucket_keys,
    load_manifest,
    make_source,
    one_line_error,
    open_uploads,
    redis_server_fixture,  # noqa: F401  (the redis_server fixture)
    run_cli,
)

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def source(postgres: Postgres) -> SourceDb:
    return make_source(postgres, "qr", rows=600)


def backup_process(
    *args: str, kill_at: str | None = None, kill_signal: str = "SIGKILL"
) -> subprocess.CompletedProcess:
    """`python -m automation backup ARGS` in its own process (so it can be killed for real)."""
    env = dict(os.environ)
    env.pop(KILL_ENV, None)
    if kill_at:
        env[KILL_ENV] = kill_at
        env[KILL_SIGNAL_ENV] = kill_signal
    return subprocess.run(
        [sys.executable, "-m", "automation", "backup", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


class TestConcurrentRunsNeverShareARun:
    """#17.1: the db and Redis backups of one app, started in the same second, stay two runs;
    `--latest` picks what `backups list` shows as newest."""

    def test_run_ids_are_unique_and_ordered_even_within_one_microsecond(self) -> None:
        now = datetime(2026, 12, 1, 2, 45, 30, 123456, tzinfo=UTC)
        ids = {bf.new_run_id(now) for _ in range(200)}
        assert len(ids) == 200
        assert all(bf.RUN_ID_PATTERN.match(i) for i in ids)
        later = bf.new_run_id(now.replace(microsecond=123457))
        assert all(bf.run_sort_key(i) < bf.run_sort_key(later) for i in ids)
        # a run id of the older one-second form still parses and sorts by its time
        assert bf.run_sort_key("20261201T024530Z") < bf.run_sort_key(later)
        assert bf.run_sort_key("20261201T024531Z") > bf.run_sort_key(later)

    def test_db_and_redis_runs_in_the_same_second_both_keep_their_manifest(
        self, source: SourceDb, s3: S3, redis_server: RedisServer
    ) -> None:
        bucket = s3.create_bucket("same")
        results: dict[str, BackupResult] = {}
        start = threading.Barrier(2)

        def run(name: str, opts: BackupOptions) -> None:
            start.wait()
            results[name] = run_backup(opts)

        threads = [
            threading.Thread(
                target=run, args=("db", BackupOptions(bucket, database_url=source.url, app="qr"))
            ),
            threading.Thread(
                target=run,
                args=("redis", BackupOptions(bucket, redis_url=redis_server.url, app="qr")),
            ),
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)

        db, redis = results["db"], results["redis"]
        assert db.manifest_key != redis.manifest_key
        assert [p["format"] for p in load_manifest(s3, bucket, db.manifest_key)["parts"]] == [
            "plain"
        ]
        assert [p["format"] for p in load_manifest(s3, bucket, redis.manifest_key)["parts"]] == [
            "rdb"
        ]
        runs = list_backups(s3io.s3_client(), bucket, app="qr")
        assert [r.latest for r in runs].count(True) == 1
        [latest] = [r for r in runs if r.latest]
        assert latest.run_id == db.run_id  # the newest run that holds a database
        picked = find_backup(s3io.s3_client(), bucket, app="qr")
        assert picked.run_id == latest.run_id
        verified = run_cli("verify-backup", "--database-url", source.url, "--bucket", bucket,
                           "--app", "qr", "--latest", "--json")  # fmt: skip
        assert verified.exit_code == 0, verified.stderr

    def test_the_manifest_is_never_overwritten(self, source: SourceDb, s3: S3) -> None:
        """Belt and braces under the unique ids: the manifest is a conditional write."""
        bucket = s3.create_bucket("cond")
        first = run_backup(BackupOptions(bucket, database_url=source.url, app="qr"))
        before = load_manifest(s3, bucket, first.manifest_key)
        opts = BackupOptions(bucket, app="qr")
        other = BackupResult("qr", first.run_id, bucket, first.manifest_key)
        with pytest.raises(TaskFailed, match="already exists: another backup run"):
            write_manifest(s3io.s3_client(), opts, other)
        assert load_manifest(s3, bucket, first.manifest_key) == before


class TestKilledBackupIsVisibleAndItsUploadAborted:
    """#17.9: a SIGKILLed backup shows as INCOMPLETE (with its open upload) in `backups list`;
    the next run of the app aborts that upload once it is idle, never a live run's."""

    def test_killed_run_is_listed_then_its_upload_aborted(self, source: SourceDb, s3: S3) -> None:
        bucket = s3.create_bucket("kill")
        killed = backup_process("--database-url", source.url, "--bucket", bucket, "--app", "qr",
                                kill_at="uploading")  # fmt: skip
        assert killed.returncode == -signal.SIGKILL, killed.stderr
        [upload] = open_uploads(s3, bucket)

        listed = run_cli("backups", "list", "--bucket", bucket, "--json")
        [run] = json.loads(listed.stdout)
        assert run["complete"] is False and run["latest"] is False
        assert run["open_uploads"] == ["db.sql.gz"]
        assert upload["Key"].startswith(run["key"])
        table = run_cli("backups", "list", "--bucket", bucket)
        assert "INCOMPLETE" in table.stdout and "db.sql.gz (upload open)" in table.stdout

        # a run still going (idle less than the threshold) is left alone ...
        lines: list[str] = []
        run_backup(BackupOptions(bucket, database_url=source.url, app="qr"), report=lines.append)
        assert [u["UploadId"] for u in open_uploads(s3, bucket)] == [upload["UploadId"]]
        # ... one idle past it is a killed run's: aborted by the next run
        opts = BackupOptions(bucket, database_url=source.url, app="qr", stale_upload_seconds=0)
        lines.clear()
        run_backup(opts, report=lines.append)
        assert open_uploads(s3, bucket) == []
        assert any("aborted the open upload" in line and upload["Key"] in line for line in lines)

    def test_a_redis_run_leaves_the_db_parts_upload_alone(
        self, source: SourceDb, s3: S3, redis_server: RedisServer
    ) -> None:
        """Only the parts this run stores: a Redis run never aborts a db upload."""
        bucket = s3.create_bucket("other")
        killed = backup_process("--database-url", source.url, "--bucket", bucket, "--app", "qr",
                                kill_at="uploading")  # fmt: skip
        assert killed.returncode == -signal.SIGKILL
        opts = BackupOptions(bucket, redis_url=redis_server.url, app="qr", stale_upload_seconds=0)
        run_backup(opts)
        assert [u["Key"].rsplit("/", 1)[1] for u in open_uploads(s3, bucket)] == ["db.sql.gz"]


class TestSigtermedBackupLeavesNothing:
    """#17.7 for backup: SIGTERM (a CronJob's pod deleted, `kill`) mid-upload runs the cleanup
    a Ctrl-C runs: the run's parts deleted, its multipart upload aborted; --json says so."""

    def test_sigterm_mid_upload_removes_the_run_and_aborts_its_upload(
        self, source: SourceDb, s3: S3
    ) -> None:
        bucket = s3.create_bucket("term")
        termed = backup_process("--database-url", source.url, "--bucket", bucket, "--app", "qr",
                                "--json", kill_at="uploading", kill_signal="SIGTERM")  # fmt: skip
        assert termed.returncode == 1, termed.stderr
        assert "Traceback" not in termed.stderr
        document = json.loads(termed.stdout)
        assert document["ok"] is False and document["interrupted"] is True
        assert open_uploads(s3, bucket) == []
        assert bucket_keys(s3, bucket) == []  # no part, no manifest: nothing half-written stays
        assert json.loads(run_cli("backups", "list", "--bucket", bucket, "--json").stdout) == []


class TestEveryTargetIsCheckedBeforeTheDump:
    """#17.12: an unreachable Redis or a missing object bucket fails before pg_dump starts."""

    def test_unreachable_redis_fails_before_the_database_is_dumped(
        self, source: SourceDb, s3: S3
    ) -> None:
        bucket = s3.create_bucket("pre")
        closed = f"redis://:secret-pw@127.0.0.1:{free_port()}/0"
        result = run_cli("backup", "--database-url", source.url, "--bucket", bucket,
                         "--redis-url", closed, "--app", "qr")  # fmt: skip
        assert result.exit_code == 1
        line = one_line_error(result)
        assert "--redis-url: Redis at 127.0.0.1:" in line and "secret-pw" not in result.stderr
        assert "db: dumping" not in result.stderr
        assert bucket_keys(s3, bucket) == [] and open_uploads(s3, bucket) == []

    def test_missing_objects_bucket_fails_before_the_database_is_dumped(
        self, source: SourceDb, s3: S3
    ) -> None:
        bucket = s3.create_bucket("pre")
        result = run_cli("backup", "--database-url", source.url, "--bucket", bucket,
                         "--objects-bucket", "no-such-exports-q1", "--app", "qr")  # fmt: skip
        assert result.exit_code == 1
        assert "no-such-exports-q1" in one_line_error(result)
        assert "db: dumping" not in result.stderr
        assert bucket_keys(s3, bucket) == [] and open_uploads(s3, bucket) == []

    def test_unreachable_database_fails_before_redis_is_read(
        self, s3: S3, redis_server: RedisServer
    ) -> None:
        bucket = s3.create_bucket("pre")
        down = f"postgresql://qr:pw@127.0.0.1:{free_port()}/qr"
        started = time.monotonic()
        result = run_cli("backup", "--database-url", down, "--bucket", bucket,
                         "--redis-url", redis_server.url, "--app", "qr")  # fmt: skip
        assert result.exit_code == 1
        assert "cannot connect to PostgreSQL" in one_line_error(result)
        assert "redis: snapshot" not in result.stderr
        assert time.monotonic() - started < 30
        assert bucket_keys(s3, bucket) == []


class TestBackupAndVerifyShowProgress:
    """The 3 a.m. feel: `backup` and `verify-backup` draw progress on stderr, like restore."""

    def test_backup_and_verify_draw_progress_bars_on_stderr(
        self, source: SourceDb, s3: S3, redis_server: RedisServer
    ) -> None:
        bucket = s3.create_bucket("prog")
        backup = run_cli("backup", "--database-url", source.url, "--bucket", bucket,
                         "--redis-url", redis_server.url, "--app", "qr")  # fmt: skip
        assert backup.exit_code == 0, backup.stderr
        assert "db: pg_dump -> S3 (bytes dumped)" in backup.stderr
        assert "redis: snapshot -> gzip -> S3" in backup.stderr
        assert backup.stdout.strip().endswith("manifest.json")  # stdout stays the result only

        verify = run_cli("verify-backup", "--database-url", source.url, "--bucket", bucket,
                         "--app", "qr", "--latest")  # fmt: skip
        assert verify.exit_code == 0, verify.stderr
        assert "integrity (sha256, archive read)" in verify.stderr
        assert "restore into qr_" in verify.stderr and "_verify_" in verify.stderr
