"""S3 unreachable for the archiving server: archiving fails, `pitr status` says so, PostgreSQL
keeps the WAL; once S3 is back the archive catches up and nothing is lost."""

from __future__ import annotations

import json
import time
from urllib.parse import urlparse

import psycopg

from tests.pitr.conftest import aws_env, batches, cli, make_cluster, stop_instances, write_batch
from tests.pitr.proxy import Proxy
from tests.services import S3, free_port


def wait_for_failure(url: str, timeout: float = 90) -> str:
    deadline = time.monotonic() + timeout
    with psycopg.connect(url, autocommit=True) as conn:
        while time.monotonic() < deadline:
            row = conn.execute(
                "SELECT failed_count, last_failed_wal FROM pg_stat_archiver"
            ).fetchone()
            if row[0] > 0:
                return str(row[1])
            time.sleep(0.5)
    raise AssertionError("archiving never failed")


def kept_on_server(url: str, segment: str) -> tuple[bool, bool]:
    """(the segment is in pg_wal, it is marked .ready: waiting to be archived)."""
    with psycopg.connect(url) as conn:
        in_wal = conn.execute("SELECT count(*) FROM pg_ls_waldir() WHERE name = %s", (segment,))
        ready = conn.execute(
            "SELECT count(*) FROM pg_ls_archive_statusdir() WHERE name = %s", (segment + ".ready",)
        )
        return in_wal.fetchone()[0] == 1, ready.fetchone()[0] == 1


def pitr_checks(bucket: str, database_url: str, env: dict[str, str]) -> dict[str, dict[str, str]]:
    """`status --pitr` (explicit form) against the archiving server: its pitr checks by name."""
    args = ["status", "--app", "qr", "--bucket", bucket, "--database-url", database_url]
    result = cli(*args, "--pitr", "--timeout", "20", "--json", env=env)
    assert result.stdout, result.stderr
    report = json.loads(result.stdout)
    return {c["name"]: c for c in report["checks"] if c["name"].startswith("pitr")}


def test_outage_fails_visibly_keeps_wal_and_catches_up(s3: S3, work_dir) -> None:
    proxy = Proxy(urlparse(s3.endpoint).port or 80, free_port())
    proxy.up()
    bucket = s3.create_bucket("pitr")
    cluster = make_cluster(bucket, s3.endpoint, archive_endpoint=proxy.endpoint)
    env = aws_env(s3.endpoint)
    status = ["pitr", "status", "--bucket", bucket, "--app", "qr", "--json"]
    status += ["--database-url", cluster.admin]
    try:
        cluster.base_backup()
        write_batch(cluster.url, 1)
        cluster.switch_and_wait()

        proxy.down()
        write_batch(cluster.url, 2)
        with psycopg.connect(cluster.admin, autocommit=True) as conn:
            conn.execute("SELECT pg_switch_wal()")
        failed = wait_for_failure(cluster.admin)
        result = cli(*status, env=env)
        assert result.returncode == 1, result.stderr
        doc = json.loads(result.stdout)
        assert doc["archiving_failing"] is True
        assert any("WAL archiving is failing" in p for p in doc["problems"])
        assert doc["archiver"]["waiting_segments"] >= 1
        assert kept_on_server(cluster.admin, failed) == (True, True)
        text = cli(*status[:-3], "--database-url", cluster.admin, env=env)
        assert "FAILING" in text.stdout and text.returncode == 1
        checks = pitr_checks(bucket, cluster.admin, env)  # the on-call `status` sees it too
        assert checks["pitr:archiving"]["status"] == "fail", checks
        assert "FAILING" in checks["pitr:archiving"]["detail"]
        assert checks["pitr:archiving"]["next"] == "docs/runbook.md#status-pitr"

        proxy.up()
        write_batch(cluster.url, 3)
        cluster.switch_and_wait(timeout=120)
        assert kept_on_server(cluster.admin, failed)[1] is False
        after = json.loads(cli(*status, env=env).stdout)
        assert after["archiving_failing"] is False and after["ok"] is True
        checks = pitr_checks(bucket, cluster.admin, env)
        assert {checks[n]["status"] for n in ("pitr:window", "pitr:archiving")} == {"pass"}

        args = ["--database-url", cluster.url, "--bucket", bucket, "--app", "qr"]
        args += ["--to-time", "latest", "--inspect", "--work-dir", str(work_dir), "--json"]
        inspect = cli("restore", *args, env=env)
        assert inspect.returncode == 0, inspect.stderr
        assert batches(json.loads(inspect.stdout)["url"]) == {1: 50, 2: 50, 3: 50}
    finally:
        proxy.down()
        cluster.instance.stop("immediate")
        stop_instances(cluster.root)
