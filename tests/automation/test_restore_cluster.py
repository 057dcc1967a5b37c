"""`restore --stack prod --where cluster --component redis|all` against FakeStack, where each `up`
plays the cluster: it renders the real program under mocks with the stack's config, records what
Redis and the Job look like, and runs the rendered Job's command (`python -m automation.jobrun`)
for real against PostgreSQL (pgserver), S3 (moto) and a Redis data directory standing in for
the mounted volume. The report is read back from S3 the way automation reads it in production."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from automation.cli import app as cli_app
from automation.errors import TaskFailed, UserInputError
from automation.operations.cluster_job import CLUSTER_JOB_KEY, CLUSTER_JOB_OUTPUT, run_in_cluster
from automation.operations.maintenance import MAINTENANCE_KEY
from automation.stack import pulumi_adapter as pulumi_stack
from automation.tasks.io.pgtools import database_name
from components.task_job import REDIS_DATA_MOUNT
from tests.fakes.fake_stack import FakeStack, ProgramModel, sample_ops
from tests.program.conftest import render
from tests.services import S3
from tests.tasks import key_ending
from tests.tasks.test_restore_support import (
    backed_up_then_lost,
    databases,
    redis_dir_with_newer_state,
    redis_value,
    table_checksums,
)

REPO = Path(__file__).resolve().parents[2]
PROD_BACKUP_BUCKET = "opsplane-prod-backups-qr"  # where the rendered Job reports (prod render)


@dataclass
class Up:
    """What one `up` declared for qr."""

    maintenance: bool
    redis_replicas: int
    job: dict[str, Any] | None


@dataclass
class Cluster:
    """`on_up`: the real program's answer to the config, and the Job run for real."""

    database_url: str
    redis_dir: Path
    ups: list[Up] = field(default_factory=list)
    requests: list[dict[str, Any]] = field(default_factory=list)

    def __call__(self, config: dict[str, str], outputs: dict[str, Any]) -> dict[str, Any]:
        changes = {
            k: json.loads(config[k]) for k in (MAINTENANCE_KEY, CLUSTER_JOB_KEY) if k in config
        }
        rendered = render("prod", changes)
        (redis,) = rendered.k8s("StatefulSet", "qr-redis", "qr")
        jobs = rendered.k8s("Job", namespace="qr")
        in_maintenance = "qr" in changes.get(MAINTENANCE_KEY, [])
        self.ups.append(Up(in_maintenance, redis["spec"]["replicas"], jobs[0] if jobs else None))
        outputs["ops"]["qr"]["maintenance"] = in_maintenance
        outputs.pop(CLUSTER_JOB_OUTPUT, None)
        if jobs:
            self.requests.append(changes[CLUSTER_JOB_KEY])
            exported = rendered.outputs[CLUSTER_JOB_OUTPUT]
            if not self.run_job(jobs[0]):  # pulumi-kubernetes: a failed Job fails the update
                raise TaskFailed(f"`pulumi up` failed: Job qr-{exported['id']} failed")
            outputs[CLUSTER_JOB_OUTPUT] = exported
        return outputs

    def run_job(self, job: dict[str, Any]) -> bool:
        """The Job's container, with the mounted volume's path mapped to the local directory."""
        (container,) = job["spec"]["template"]["spec"]["containers"]
        mounted = str(self.redis_dir)
        args = [mounted if a == REDIS_DATA_MOUNT else a for a in container["args"]]
        command = container["command"][2:]  # python -m automation.jobrun
        done = subprocess.run(
            [sys.executable, "-m", *command, *args],
            cwd=REPO,
            env={**os.environ, "OPSPLANE_DATABASE_URL": self.database_url},
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )
        return done.returncode == 0


@dataclass
class Prod:
    url: str
    objects_bucket: str
    redis_dir: Path
    backed_up: dict[str, str]
    stack: FakeStack
    cluster: Cluster


@pytest.fixture
def prod(postgres, s3: S3, monkeypatch: pytest.MonkeyPatch) -> Iterator[Prod]:
    """qr on "prod": one backup run of database, Redis and objects in the bucket the rendered
    Job reports to, then data loss everywhere; Redis' data dir holds newer (wrong) state."""
    client = s3.client()
    empty_bucket(client, PROD_BACKUP_BUCKET)
    url = postgres.create_database("qr")
    objects_bucket = s3.create_bucket("qr-exports")
    backed_up = backed_up_then_lost(url, client, PROD_BACKUP_BUCKET, objects_bucket, objects=2)
    redis_dir = redis_dir_with_newer_state("opsplane-redis-volume-")
    cluster = Cluster(url, redis_dir)
    ops = sample_ops(
        "qr",
        "prod",
        backup={"bucket": PROD_BACKUP_BUCKET, "prefix": "backups", "endpoint": None,
                "region": "us-east-1"},
        objects={"bucket": objects_bucket, "endpoint": None},
    )  # fmt: skip
    stack = FakeStack(name="prod", outputs={"ops": {"qr": ops}}, on_up=cluster)
    monkeypatch.setattr(pulumi_stack, "open_stack", lambda name, *a, **k: stack)
    yield Prod(url, objects_bucket, redis_dir, backed_up, stack, cluster)
    shutil.rmtree(redis_dir, ignore_errors=True)


def empty_bucket(client: Any, bucket: str) -> None:
    if bucket not in {b["Name"] for b in client.list_buckets()["Buckets"]}:
        client.create_bucket(Bucket=bucket)
        return
    for item in client.list_objects_v2(Bucket=bucket).get("Contents", []):
        client.delete_object(Bucket=bucket, Key=item["Key"])


def run_cli(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(
        cli_app,
        ["restore", "--stack", "prod", "--app", "qr", "--where", "cluster", "--no-verify", *args],
    )
    return result.exit_code, result.stdout, result.stderr


def test_component_all_stops_redis_restores_everything_in_the_job_and_starts_redis(
    prod: Prod, s3: S3
) -> None:
    code, out, err = run_cli("--component", "all", "--yes", "--json")

    assert code == 0, err
    (request,) = prod.cluster.requests
    assert request["task"] == "restore" and request["mountRedis"] is True
    args = request["args"]
    assert args[args.index("--component") + 1] == "all"
    assert args[args.index("--objects-bucket") + 1] == prod.objects_bucket
    assert args[args.index("--bucket") + 1] == PROD_BACKUP_BUCKET
    assert "--latest" in args and "--redis-data-dir" not in args  # the program adds the mount
    # maintenance on; Job with Redis at 0; Job removed and Redis back at 1; maintenance off
    assert [(u.maintenance, u.redis_replicas, u.job is not None) for u in prod.cluster.ups] == [
        (True, 1, False), (True, 0, True), (True, 1, False), (False, 1, False),
    ]  # fmt: skip
    assert [c.key for c in prod.stack.calls if c.op != "up"] == [
        MAINTENANCE_KEY, CLUSTER_JOB_KEY, CLUSTER_JOB_KEY, MAINTENANCE_KEY,
    ]  # fmt: skip
    # the report automation printed is the Job's own, read back from S3
    report = json.loads(out)
    assert report["where"] == "cluster" and report["component"] == "all"
    assert report["redis"] == str(prod.redis_dir / "dump.rdb")  # /redis-data in the pod
    assert report["objects"] == 2
    assert table_checksums(prod.url) == prod.backed_up
    assert redis_value(prod.redis_dir, "session:1") == "alice"
    assert redis_value(prod.redis_dir, "quota:acct") == "42"
    body = s3.client().get_object(Bucket=prod.objects_bucket, Key="exports/1.png")["Body"].read()
    assert body == b"png 1"
    assert CLUSTER_JOB_KEY not in prod.stack.config and MAINTENANCE_KEY not in prod.stack.config


def test_component_redis_restores_only_redis(prod: Prod) -> None:
    scrambled = table_checksums(prod.url)

    code, out, err = run_cli("--component", "redis", "--backup", "latest", "--yes", "--json")

    assert code == 0, err
    assert [u.redis_replicas for u in prod.cluster.ups] == [1, 0, 1, 1]
    assert redis_value(prod.redis_dir, "session:1") == "alice"
    assert table_checksums(prod.url) == scrambled
    assert json.loads(out)["redis"] == str(prod.redis_dir / "dump.rdb")


def test_a_corrupt_redis_part_fails_the_job_before_the_database_and_redis_comes_back(
    postgres, prod: Prod, s3: S3
) -> None:
    client = s3.client()
    rdb_key = key_ending(s3, PROD_BACKUP_BUCKET, "redis.rdb.gz")
    whole = client.get_object(Bucket=PROD_BACKUP_BUCKET, Key=rdb_key)["Body"].read()
    client.put_object(Bucket=PROD_BACKUP_BUCKET, Key=rdb_key, Body=whole[:-40])
    scrambled = table_checksums(prod.url)

    code, _, err = run_cli("--component", "all", "--yes")

    assert code == 1
    assert f"Redis part {rdb_key} refused" in err  # the task's own error, from its S3 report
    assert table_checksums(prod.url) == scrambled
    live = database_name(prod.url)
    assert databases(postgres, live) == [live]  # no restore copy, no pre-restore copy
    assert redis_value(prod.redis_dir, "session:1") == "mallory"
    assert [(u.maintenance, u.redis_replicas) for u in prod.cluster.ups][-2:] == [
        (True, 1), (False, 1),
    ]  # fmt: skip
    assert CLUSTER_JOB_KEY not in prod.stack.config and MAINTENANCE_KEY not in prod.stack.config


def test_dry_run_in_the_cluster_keeps_redis_running(prod: Prod) -> None:
    code, out, err = run_cli("--component", "all", "--dry-run", "--json")

    assert code == 0, err
    (request,) = prod.cluster.requests
    assert "mountRedis" not in request and "--dry-run" in request["args"]
    assert [(u.maintenance, u.redis_replicas) for u in prod.cluster.ups] == [(False, 1)] * 2
    assert json.loads(out)["verified"] == ["database", "redis", "objects"]
    assert redis_value(prod.redis_dir, "session:1") == "mallory"


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--component", "redis", "--redis-data-dir", "/data"], "drop --redis-data-dir"),
        (["--component", "cache"], "--component 'cache'"),
    ],
)
def test_bad_input_changes_nothing(monkeypatch, args: list[str], fragment: str) -> None:
    stack = FakeStack(name="prod", outputs={"ops": {"qr": sample_ops("qr", "prod")}})
    monkeypatch.setattr(pulumi_stack, "open_stack", lambda name, *a, **k: stack)
    code, _, err = run_cli(*args, "--yes")
    assert code == 2 and fragment in err
    assert stack.calls == []


def test_objects_of_an_app_without_an_object_store_is_bad_input(monkeypatch) -> None:
    stack = FakeStack(name="prod", outputs={"ops": {"qr": sample_ops("qr", "prod", objects=None)}})
    monkeypatch.setattr(pulumi_stack, "open_stack", lambda name, *a, **k: stack)
    code, _, err = run_cli("--component", "objects", "--yes")
    assert code == 2 and "no object bucket" in err
    assert stack.calls == []


def test_all_on_an_app_without_objects_sends_no_objects_bucket(monkeypatch) -> None:
    seen: list[dict[str, Any]] = []

    def job(request: dict[str, Any]) -> dict[str, Any]:
        seen.append(request)
        return {"status": "succeeded", "report": {"component": "all", "redis": "/redis-data"}}

    ops = sample_ops("quickbite", "prod", objects=None)
    stack = FakeStack(
        name="prod", outputs={"ops": {"quickbite": ops}}, on_up=ProgramModel(job_runner=job)
    )
    monkeypatch.setattr(pulumi_stack, "open_stack", lambda name, *a, **k: stack)
    result = CliRunner().invoke(
        cli_app,
        ["restore", "--stack", "prod", "--app", "quickbite", "--where", "cluster",
         "--component", "all", "--no-verify", "--yes"],
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    (request,) = seen
    assert request["mountRedis"] is True and "--objects-bucket" not in request["args"]
    assert "redis: /redis-data" in result.stdout


def test_only_a_restore_may_mount_redis() -> None:
    stack = FakeStack(name="prod", outputs={"ops": {"qr": sample_ops("qr", "prod")}})
    with pytest.raises(UserInputError, match="only restore may mount"):
        run_in_cluster(stack, "qr", "backup", [], lambda _l: None, mount_redis=True)
    assert stack.calls == []
