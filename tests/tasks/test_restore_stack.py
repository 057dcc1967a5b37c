"""The stack form against FakeStack: maintenance around the restore (always left), Redis and
objects from one backup run (a real redis-server loads the restored RDB), and `--where cluster`
with a fake `up` that runs the requested Job's command for real."""

from __future__ import annotations

import gzip
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from typer.testing import CliRunner

from automation.cli import app as cli_app
from automation.operations.cluster_job import CLUSTER_JOB_KEY, CLUSTER_JOB_OUTPUT
from automation.operations.maintenance import MAINTENANCE_KEY
from automation.stack import pulumi_adapter as pulumi_stack
from automation.tasks.backup import BackupOptions, run_backup
from automation.tasks.io.pgtools import database_name
from tests.fakes.fake_stack import FakeStack
from tests.tasks import key_ending
from tests.tasks.test_restore_support import (
    RedisServer,
    backed_up_then_lost,
    create_qr,
    databases,
    scramble,
    table_checksums,
)

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def redis_dir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="opsplane-redis-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def qr_ops(postgres, url: str, bucket: str, objects_bucket: str, endpoint: str) -> dict:
    return {
        "app": "qr",
        "stack": "dev",
        "target": "docker",
        "database": {
            "host": postgres.socket_dir,
            "port": 5432,
            "name": database_name(url),
            "user": "postgres",
            "password": "",
            "serverMajor": 16,
            "migrations": "alembic",
        },
        "objects": {"bucket": objects_bucket, "endpoint": endpoint},
        "backup": {
            "bucket": bucket,
            "prefix": "backups",
            "endpoint": endpoint,
            "region": "us-east-1",
        },
        "writers": ["api", "web", "admin"],
        "replicas": {"api": 2, "web": 2, "admin": 1},
        "maintenance": False,
    }


def model_program(postgres, live: str, seen: list[tuple[bool, int | None]]):
    """`up`: ops.qr.maintenance follows the config; records (maintenance, live oid) per up."""

    def on_up(config: dict[str, str], outputs: dict) -> dict:
        in_maintenance = "qr" in json.loads(config.get(MAINTENANCE_KEY) or "[]")
        outputs["ops"]["qr"]["maintenance"] = in_maintenance
        with psycopg.connect(postgres.url()) as conn:
            row = conn.execute("SELECT oid FROM pg_database WHERE datname = %s", (live,)).fetchone()
        seen.append((in_maintenance, row[0] if row else None))
        return outputs

    return on_up


@pytest.fixture
def setup(postgres, s3, monkeypatch):
    """A live QR database, its app bucket, one backup run of both, and a FakeStack exporting ops."""
    url = postgres.create_database("qr")
    create_qr(url, rows=150)
    bucket, objects_bucket = s3.create_bucket(), s3.create_bucket("qr-exports")
    client = s3.client()
    for i in range(3):
        client.put_object(Bucket=objects_bucket, Key=f"exports/{i}.png", Body=f"png {i}".encode())
    run_backup(
        BackupOptions(bucket=bucket, database_url=url, app="qr", objects_bucket=objects_bucket)
    )
    stack = FakeStack(
        outputs={"ops": {"qr": qr_ops(postgres, url, bucket, objects_bucket, s3.endpoint)}}
    )
    monkeypatch.setattr(pulumi_stack, "open_stack", lambda name, *a, **k: stack)
    return url, bucket, objects_bucket, stack


def run_cli(*args: str):
    result = CliRunner().invoke(
        cli_app, ["restore", "--stack", "dev", "--app", "qr", "--no-verify", *args]
    )
    return result.exit_code, result.stdout, result.stderr


def oid(postgres, name: str) -> int | None:
    with psycopg.connect(postgres.url()) as conn:
        row = conn.execute("SELECT oid FROM pg_database WHERE datname = %s", (name,)).fetchone()
    return row[0] if row else None


def test_db_restore_happens_inside_maintenance_which_is_left(postgres, setup):
    url, _, _, stack = setup
    backed_up = table_checksums(url)
    scramble(url)
    live = database_name(url)
    old_oid = oid(postgres, live)
    seen: list[tuple[bool, int | None]] = []
    stack.on_up = model_program(postgres, live, seen)

    code, out, err = run_cli("--yes", "--json")

    assert code == 0, err
    assert stack.ops_sequence() == ["set_config", "up", "remove_config", "up"]
    # entered with the old database live; left with the restored one live
    assert seen[0] == (True, old_oid)
    assert seen[1][0] is False and seen[1][1] not in (None, old_oid)
    assert table_checksums(url) == backed_up
    assert json.loads(out)["database"]["pre_restore"].startswith(live + "_pre_restore_")
    assert stack.outputs()["ops"]["qr"]["maintenance"] is False


def test_up_failing_while_entering_maintenance_changes_nothing(postgres, setup):
    url, _, _, stack = setup
    scramble(url)
    before = table_checksums(url)
    stack.fail_on_up = {1}

    code, _, err = run_cli("--yes")

    assert code == 1
    assert "could not enter maintenance" in err
    assert table_checksums(url) == before
    assert databases(postgres, database_name(url)) == [database_name(url)]
    assert MAINTENANCE_KEY not in stack.config  # the enter was undone


def test_restore_failing_midway_still_leaves_maintenance(postgres, setup, s3):
    url, bucket, _, stack = setup
    client = s3.client()
    manifest_key = key_ending(s3, bucket, "manifest.json")
    manifest = json.loads(client.get_object(Bucket=bucket, Key=manifest_key)["Body"].read())
    manifest["database"]["migration_head"] = "not-the-head"
    client.put_object(Bucket=bucket, Key=manifest_key, Body=json.dumps(manifest).encode())
    scramble(url)
    before = table_checksums(url)

    code, _, err = run_cli("--yes")

    assert code == 1
    assert "migration head" in err
    assert stack.ops_sequence() == ["set_config", "up", "remove_config", "up"]
    assert MAINTENANCE_KEY not in stack.config
    assert table_checksums(url) == before
    assert databases(postgres, database_name(url)) == [database_name(url)]


def test_up_failing_while_leaving_maintenance_says_how_to_leave(setup):
    url, _, _, stack = setup
    backed_up = table_checksums(url)
    scramble(url)
    stack.fail_on_up = {2}

    code, _, err = run_cli("--yes")

    assert code == 1
    assert "maintenance off --stack dev --app qr" in err
    assert table_checksums(url) == backed_up  # the restore itself completed


def test_bad_backup_is_refused_before_maintenance(postgres, setup, s3):
    url, bucket, _, stack = setup
    client = s3.client()
    db_key = key_ending(s3, bucket, "db.sql.gz")
    body = client.get_object(Bucket=bucket, Key=db_key)["Body"].read()
    metadata = client.head_object(Bucket=bucket, Key=db_key)["Metadata"]
    client.put_object(Bucket=bucket, Key=db_key, Body=body[:-20], Metadata=metadata)
    before = table_checksums(url)

    code, _, err = run_cli("--yes")

    assert code == 1
    assert "refused" in err
    assert stack.calls == []  # never entered maintenance
    assert table_checksums(url) == before


def test_dry_run_makes_no_stack_calls_and_changes_nothing(postgres, setup):
    url, _, _, stack = setup
    scramble(url)
    before = table_checksums(url)

    code, out, err = run_cli("--component", "db", "--dry-run", "--json")

    assert code == 0, err
    assert json.loads(out)["database"]["dry_run"] is True
    assert stack.calls == []
    assert table_checksums(url) == before
    assert databases(postgres, database_name(url)) == [database_name(url)]


def test_component_all_restores_db_redis_and_objects_from_one_run(
    postgres, s3, monkeypatch, redis_dir
):
    url = postgres.create_database("qr")
    bucket, objects_bucket = s3.create_bucket(), s3.create_bucket("qr-exports")
    client = s3.client()
    backed_up = backed_up_then_lost(url, client, bucket, objects_bucket)
    client.delete_object(Bucket=objects_bucket, Key="exports/2.png")
    (redis_dir / "dump.rdb").write_bytes(b"REDIS0011 stale")
    ops = qr_ops(postgres, url, bucket, objects_bucket, s3.endpoint)
    stack = FakeStack(outputs={"ops": {"qr": ops}})
    monkeypatch.setattr(pulumi_stack, "open_stack", lambda name, *a, **k: stack)

    code, _, err = run_cli("--component", "all", "--redis-data-dir", str(redis_dir), "--yes")

    assert code == 0, err
    assert stack.ops_sequence() == ["set_config", "up", "remove_config", "up"]
    assert table_checksums(url) == backed_up
    for i in range(3):
        body = client.get_object(Bucket=objects_bucket, Key=f"exports/{i}.png")["Body"].read()
        assert body == f"png {i}".encode()
    assert len(list(redis_dir.glob("dump.rdb.pre_restore_*"))) == 1  # the old file is kept
    restored = RedisServer(redis_dir)
    try:
        assert restored.cli("GET", "session:1") == "alice"
        assert restored.cli("GET", "quota:acct") == "42"
    finally:
        restored.stop()


def test_redis_restore_takes_effect_with_appendonly_as_deployed(
    postgres, s3, monkeypatch, redis_dir
):
    """opsplane runs Redis with `--appendonly yes`; such a Redis ignores dump.rdb once it has an
    AOF, so the restore must hand it an AOF whose base is the restored RDB."""
    url = postgres.create_database("qr")
    create_qr(url, rows=50)
    bucket = s3.create_bucket()
    source_dir = Path(tempfile.mkdtemp(prefix="opsplane-redis-src-"))
    source = RedisServer(source_dir)
    try:
        source.cli("SET", "session:1", "alice")
        run_backup(
            BackupOptions(
                bucket=bucket, database_url=url, app="qr",
                redis_url=f"redis://127.0.0.1:{source.port}",
            )
        )  # fmt: skip
    finally:
        source.stop()
        shutil.rmtree(source_dir, ignore_errors=True)
    live = RedisServer(redis_dir, appendonly="yes")  # the deployed Redis, with state since then
    try:
        live.cli("SET", "session:1", "mallory")
        live.cli("SET", "written:after", "backup")
    finally:
        live.stop()
    assert (redis_dir / "appendonlydir").is_dir()
    ops = qr_ops(postgres, url, bucket, None, s3.endpoint)
    stack = FakeStack(outputs={"ops": {"qr": ops}})
    monkeypatch.setattr(pulumi_stack, "open_stack", lambda name, *a, **k: stack)

    code, _, err = run_cli("--component", "redis", "--redis-data-dir", str(redis_dir), "--yes")

    assert code == 0, err
    assert len(list(redis_dir.glob("appendonlydir.pre_restore_*"))) == 1  # the old AOF is kept
    for _ in range(2):  # and it survives a restart (Redis appends to the new AOF)
        restored = RedisServer(redis_dir, appendonly="yes")
        try:
            assert restored.cli("GET", "session:1") == "alice"
            assert restored.cli("GET", "written:after") == ""
            restored.cli("SET", "after:restore", "1")
        finally:
            restored.stop()
    restored = RedisServer(redis_dir, appendonly="yes")
    try:
        assert restored.cli("GET", "after:restore") == "1"
    finally:
        restored.stop()


def test_component_redis_needs_a_data_dir(setup):
    code, _, err = run_cli("--component", "redis", "--yes")
    assert code == 2
    assert "--redis-data-dir" in err


def test_where_cluster_runs_the_restore_as_a_job_inside_maintenance(postgres, setup):
    """The fake `up` plays the cluster: it runs the Job's command (`python -m automation restore
    <args>`) with the database URL in its environment, as the Job's Secret would provide."""
    url, _, _, stack = setup
    backed_up = table_checksums(url)
    scramble(url)
    jobs_run: list[list[str]] = []

    def cluster(config: dict[str, str], outputs: dict) -> dict:
        outputs["ops"]["qr"]["maintenance"] = "qr" in json.loads(
            config.get(MAINTENANCE_KEY) or "[]"
        )
        request = json.loads(config[CLUSTER_JOB_KEY]) if CLUSTER_JOB_KEY in config else None
        if request:
            jobs_run.append(request["args"])
            job = subprocess.run(
                [sys.executable, "-m", "automation", request["task"], *request["args"]],
                cwd=REPO,
                env={**os.environ, "OPSPLANE_DATABASE_URL": url},
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
            )
            outputs[CLUSTER_JOB_OUTPUT] = {
                "id": request["id"],
                "status": "succeeded" if job.returncode == 0 else "failed",
                "report": json.loads(job.stdout) if job.returncode == 0 else {},
                "error": job.stderr.strip().splitlines()[-1] if job.returncode else None,
            }
        return outputs

    stack.on_up = cluster

    code, out, err = run_cli("--where", "cluster", "--yes", "--json")

    assert code == 0, err
    assert len(jobs_run) == 1 and "--latest" in jobs_run[0]
    assert table_checksums(url) == backed_up
    assert json.loads(out)["database"]["database"] == database_name(url)
    # maintenance on, Job on, Job off, maintenance off
    assert [c.key for c in stack.calls if c.op != "up"] == [
        MAINTENANCE_KEY, CLUSTER_JOB_KEY, CLUSTER_JOB_KEY, MAINTENANCE_KEY
    ]  # fmt: skip
    assert stack.outputs()["ops"]["qr"]["maintenance"] is False


def test_a_damaged_object_in_the_backup_is_refused_before_maintenance(setup, s3):
    url, bucket, objects_bucket, stack = setup
    client = s3.client()
    backed_up_key = key_ending(s3, bucket, "/objects/exports/1.png")
    client.put_object(Bucket=bucket, Key=backed_up_key, Body=b"bit rot")
    client.put_object(Bucket=objects_bucket, Key="exports/1.png", Body=b"current")
    scramble(url)
    before = table_checksums(url)

    code, _, err = run_cli("--component", "objects", "--yes")

    assert code == 1
    assert "exports/1.png refused" in err and "checksum mismatch" in err
    assert stack.calls == []
    assert client.get_object(Bucket=objects_bucket, Key="exports/1.png")["Body"].read() == (
        b"current"
    )
    assert table_checksums(url) == before


def test_a_damaged_redis_part_is_refused_and_the_data_dir_untouched(setup, s3, redis_dir):
    _, bucket, _, stack = setup
    client = s3.client()
    run_prefix = key_ending(s3, bucket, "manifest.json").rsplit("/", 1)[0]
    manifest_key = f"{run_prefix}/manifest.json"
    manifest = json.loads(client.get_object(Bucket=bucket, Key=manifest_key)["Body"].read())
    rdb_key = f"{run_prefix}/redis.rdb.gz"
    client.put_object(Bucket=bucket, Key=rdb_key, Body=gzip.compress(b"REDIS0011 partial")[:-6])
    manifest["parts"].append({"key": rdb_key, "format": "rdb", "sha256": "0" * 64, "size": 1})
    client.put_object(Bucket=bucket, Key=manifest_key, Body=json.dumps(manifest).encode())
    (redis_dir / "dump.rdb").write_bytes(b"REDIS0011 current")

    code, _, err = run_cli("--component", "redis", "--redis-data-dir", str(redis_dir), "--yes")

    assert code == 1
    assert "Redis part" in err and "refused" in err
    assert stack.calls == []
    assert sorted(p.name for p in redis_dir.iterdir()) == ["dump.rdb"]
    assert (redis_dir / "dump.rdb").read_bytes() == b"REDIS0011 current"
