"""The recoverable window ends at the newest archived commit even when the newest segments hold
none (a long transaction still writing): `latest` then means that commit, not the base backup."""

from __future__ import annotations

import json
import time

import psycopg

from automation.tasks.pitr.state import pitr_state
from tests.pitr.conftest import aws_env, batches, cli, make_cluster, stop_instances, write_batch
from tests.services import S3


def test_window_end_is_the_newest_commit_behind_many_segments_without_one(s3: S3, work_dir) -> None:
    bucket = s3.create_bucket("pitr")
    cluster = make_cluster(bucket, s3.endpoint)
    try:
        cluster.base_backup()
        time.sleep(1.5)  # the commit is well after the base backup's end
        committed = write_batch(cluster.url, 1)
        with psycopg.connect(cluster.url) as open_txn:  # never commits
            open_txn.execute(
                "INSERT INTO orders (batch, note) SELECT 9, repeat('x', 200) "
                "FROM generate_series(1, 600000)"
            )
            with psycopg.connect(cluster.admin, autocommit=True) as conn:
                written = conn.execute("SELECT pg_walfile_name(pg_current_wal_lsn())").fetchone()[0]
            cluster.switch_and_wait(timeout=180)
            state = pitr_state(bucket, "qr", "backups", database_url=cluster.admin)
            assert int(written[16:], 16) >= 8  # several segments after the commit
            assert state.window_end is not None
            assert abs((state.window_end - committed).total_seconds()) < 0.5
            args = ["--database-url", cluster.url, "--bucket", bucket, "--app", "qr"]
            args += ["--to-time", "latest", "--inspect", "--work-dir", str(work_dir), "--json"]
            result = cli("restore", *args, env=aws_env(s3.endpoint))
            assert result.returncode == 0, result.stderr
            assert batches(json.loads(result.stdout)["url"]) == {1: 50}
            open_txn.rollback()
    finally:
        cluster.instance.stop("immediate")
        stop_instances(cluster.root)
