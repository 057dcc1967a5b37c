"""`restore --to-time` SIGKILLed at each step: the live name holds the old database or the
recovered one, never a mix; the next run reuses the recovered copy and `--cleanup` clears
what the dead run left."""

from __future__ import annotations

import json

import psycopg

from automation.tasks.backups import KILL_ENV
from tests.pitr.conftest import (
    aws_env,
    batches,
    cli,
    iso,
    make_cluster,
    mid,
    stop_instances,
)
from tests.services import S3

OLD = {1: 50, 2: 50, 3: 50}
NEW = {1: 50, 2: 50}


def live_names(url: str) -> list[str]:
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT datname FROM pg_database WHERE datname LIKE 'qr%'").fetchall()
    return sorted(r[0] for r in rows)


def test_sigkill_leaves_live_old_or_new(s3: S3, work_dir) -> None:
    bucket = s3.create_bucket("pitr")
    cluster = make_cluster(bucket, s3.endpoint)
    env = aws_env(s3.endpoint)
    try:
        _, times = cluster.write_history()
        args = ["--database-url", cluster.url, "--bucket", bucket, "--app", "qr", "--yes"]
        args += ["--to-time", iso(mid(times[1], times[2])), "--work-dir", str(work_dir)]
        cleanup = ["restore", "--cleanup", "--database-url", cluster.url, "--yes"]
        for step, expected in [
            ("streaming", OLD),
            ("before_swap", OLD),
            ("swap_begin", OLD),
            ("after_first_rename", OLD),
            ("after_swap", NEW),
        ]:
            killed = cli("restore", *args, env={**env, KILL_ENV: step})
            assert killed.returncode == -9, (step, killed.stderr)
            assert cli(*cleanup, env=env).returncode == 0  # re-allows a blocked live database
            assert batches(cluster.url) == expected, step
            assert live_names(cluster.admin) == ["qr"], step
        done = cli("restore", *args, "--json", env=env)
        assert done.returncode == 0, done.stderr
        assert batches(cluster.url) == NEW
        assert json.loads(done.stdout)["database"]["pre_restore"].startswith("qr_pre_restore_")
    finally:
        cluster.instance.stop("immediate")
        stop_instances(cluster.root)
