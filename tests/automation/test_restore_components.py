"""The explicit form (what the cluster Job runs) restoring `--component db|redis|objects|all` of
one backup run: real PostgreSQL (pgserver), S3 (moto server) and redis-server; every part is
verified before any is changed, the database first."""

from __future__ import annotations

import gzip
import json
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from typer.testing import CliRunner

from automation.cli import app as cli_app
from automation.tasks.io.pgtools import database_name
from tests.services import S3
from tests.tasks import key_ending
from tests.tasks.test_restore_support import (
    backed_up_then_lost,
    backup_with_redis,
    create_qr,
    databases,
    redis_dir_with_newer_state,
    redis_value,
    table_checksums,
)


@dataclass
class Run:
    """A live QR database, its object bucket and Redis, after one backup run of all three."""

    url: str
    bucket: str
    objects_bucket: str
    redis_dir: Path  # the stopped Redis' data directory, state changed since the backup
    backed_up: dict[str, str]

    def manifest_key(self, s3: S3) -> str:
        return key_ending(s3, self.bucket, "manifest.json")


@pytest.fixture
def run(postgres, s3: S3) -> Iterator[Run]:
    url = postgres.create_database("qr")
    bucket, objects_bucket = s3.create_bucket(), s3.create_bucket("qr-exports")
    backed_up = backed_up_then_lost(url, s3.client(), bucket, objects_bucket)
    redis_dir = redis_dir_with_newer_state("opsplane-redis-")
    yield Run(url, bucket, objects_bucket, redis_dir, backed_up)
    shutil.rmtree(redis_dir, ignore_errors=True)


def run_cli(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli_app, ["restore", *args])
    return result.exit_code, result.stdout, result.stderr


def explicit(run: Run, *args: str) -> tuple[int, str, str]:
    return run_cli("--bucket", run.bucket, "--app", "qr", "--latest", "--yes", "--json", *args)


def test_component_all_restores_database_redis_and_objects(postgres, s3: S3, run: Run) -> None:
    code, out, err = explicit(
        run, "--database-url", run.url, "--component", "all",
        "--redis-data-dir", str(run.redis_dir), "--objects-bucket", run.objects_bucket,
    )  # fmt: skip

    assert code == 0, err
    report = json.loads(out)
    assert report["component"] == "all"
    live = database_name(run.url)
    assert report["database"]["pre_restore"].startswith(f"{live}_pre_restore_")
    assert report["redis"] == str(run.redis_dir / "dump.rdb")
    assert report["objects"] == 3
    assert table_checksums(run.url) == run.backed_up
    assert redis_value(run.redis_dir, "session:1") == "alice"
    assert redis_value(run.redis_dir, "quota:acct") == "42"
    assert len(list(run.redis_dir.glob("appendonlydir.pre_restore_*"))) == 1
    body = s3.client().get_object(Bucket=run.objects_bucket, Key="exports/1.png")["Body"].read()
    assert body == b"png 1"
    # progress order on stderr: everything verified, then database, then Redis
    assert err.index("verify") < err.index("swap") < err.index("redis: wrote")


def test_a_corrupt_redis_part_is_refused_before_the_database_is_touched(
    postgres, s3: S3, run: Run
) -> None:
    client = s3.client()
    manifest_key = run.manifest_key(s3)
    manifest = json.loads(client.get_object(Bucket=run.bucket, Key=manifest_key)["Body"].read())
    (rdb,) = [p for p in manifest["parts"] if p["format"] == "rdb"]
    whole = client.get_object(Bucket=run.bucket, Key=rdb["key"])["Body"].read()
    client.put_object(Bucket=run.bucket, Key=rdb["key"], Body=whole[: len(whole) // 2])
    scrambled = table_checksums(run.url)
    files_before = sorted(p.name for p in run.redis_dir.iterdir())

    code, _, err = explicit(
        run, "--database-url", run.url, "--component", "all",
        "--redis-data-dir", str(run.redis_dir), "--objects-bucket", run.objects_bucket,
    )  # fmt: skip

    assert code == 1
    assert f"Redis part {rdb['key']} refused" in err
    assert table_checksums(run.url) == scrambled  # the verified database was never applied
    live = database_name(run.url)
    assert databases(postgres, live) == [live]  # no restore copy, no pre-restore copy
    assert sorted(p.name for p in run.redis_dir.iterdir()) == files_before
    assert redis_value(run.redis_dir, "session:1") == "mallory"
    body = client.get_object(Bucket=run.objects_bucket, Key="exports/1.png")["Body"].read()
    assert body == b"overwritten"


def test_component_redis_alone_needs_no_database_url(run: Run) -> None:
    code, out, err = explicit(run, "--component", "redis", "--redis-data-dir", str(run.redis_dir))

    assert code == 0, err
    assert redis_value(run.redis_dir, "session:1") == "alice"
    assert "database" not in json.loads(out)
    assert table_checksums(run.url) != run.backed_up  # the database was not part of it


def test_dry_run_verifies_every_part_without_a_data_dir_and_changes_nothing(
    postgres, run: Run
) -> None:
    scrambled = table_checksums(run.url)

    code, out, err = explicit(
        run, "--database-url", run.url, "--component", "all",
        "--objects-bucket", run.objects_bucket, "--dry-run",
    )  # fmt: skip

    assert code == 0, err
    report = json.loads(out)
    assert report["verified"] == ["database", "redis", "objects"]
    assert report["database"]["dry_run"] is True
    assert table_checksums(run.url) == scrambled
    assert redis_value(run.redis_dir, "session:1") == "mallory"


def test_quickbite_style_run_without_objects_needs_no_objects_bucket(postgres, s3: S3) -> None:
    url = postgres.create_database("qr")
    create_qr(url, rows=20)
    bucket = s3.create_bucket()
    backup_with_redis(url, bucket, None)
    redis_dir = Path(tempfile.mkdtemp(prefix="opsplane-redis-"))
    try:
        code, out, err = run_cli(
            "--database-url", url, "--bucket", bucket, "--app", "qr", "--latest", "--yes",
            "--json", "--component", "all", "--redis-data-dir", str(redis_dir),
        )  # fmt: skip
        assert code == 0, err
        assert "objects" not in json.loads(out)
        assert redis_value(redis_dir, "session:1") == "alice"
    finally:
        shutil.rmtree(redis_dir, ignore_errors=True)


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--component", "all"], "--component all needs --redis-data-dir DIR"),
        (["--component", "redis"], "--component redis needs --redis-data-dir DIR"),
        (["--component", "objects"], "--component objects needs --objects-bucket NAME"),
        (["--component", "everything"], "--component 'everything'"),
    ],
)
def test_missing_inputs_are_one_line_and_exit_2(args: list[str], fragment: str) -> None:
    code, _, err = run_cli("--database-url", "postgresql:///x", "--bucket", "b", "--latest", *args)
    assert code == 2
    assert fragment in err and "Traceback" not in err


def test_all_with_objects_in_the_run_but_no_target_bucket_changes_nothing(
    postgres, run: Run
) -> None:
    scrambled = table_checksums(run.url)

    code, _, err = explicit(
        run, "--database-url", run.url, "--component", "all",
        "--redis-data-dir", str(run.redis_dir),
    )  # fmt: skip

    assert code == 2
    assert "--objects-bucket NAME" in err
    assert table_checksums(run.url) == scrambled
    assert not list(run.redis_dir.glob("*.pre_restore_*"))


def test_corrupt_redis_gzip_member_is_refused_too(s3: S3, run: Run) -> None:
    """A part that is whole gzip but not an RDB file is refused as well (nothing moved)."""
    client = s3.client()
    manifest = json.loads(
        client.get_object(Bucket=run.bucket, Key=run.manifest_key(s3))["Body"].read()
    )
    (rdb,) = [p for p in manifest["parts"] if p["format"] == "rdb"]
    client.put_object(Bucket=run.bucket, Key=rdb["key"], Body=gzip.compress(b"not an rdb"))

    code, _, err = explicit(run, "--component", "redis", "--redis-data-dir", str(run.redis_dir))

    assert code == 1 and "refused" in err
    assert redis_value(run.redis_dir, "session:1") == "mallory"
