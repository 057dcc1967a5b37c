"""The stack form `restore --stack S --app A --to-time TIME`: everything from `ops` (FakeStack);
`--inspect` needs no maintenance, the swap into live runs inside it (always left)."""

from __future__ import annotations

import json
import time

import pytest
from typer.testing import CliRunner

from automation.cli import app as cli_app
from automation.stack import pulumi_adapter as pulumi_stack
from tests.fakes.fake_stack import FakeStack
from tests.pitr.conftest import batches, iso, make_cluster, mid, stop_instances, write_batch
from tests.services import S3


def ops_for(cluster, endpoint: str, enabled: bool = True) -> dict:
    return {
        "app": "qr",
        "stack": "dev",
        "target": "docker",
        "database": {
            "host": str(cluster.instance.socket_dir),
            "port": cluster.instance.port,
            "name": "qr",
            "user": "postgres",
            "password": "",
            "serverMajor": 16,
            "migrations": "alembic",
        },
        "backup": {
            "bucket": cluster.bucket,
            "prefix": "backups",
            "endpoint": endpoint,
            "region": "us-east-1",
        },
        "pitr": {"enabled": enabled, "archiveTimeout": 60},
        "writers": ["api"],
        "replicas": {"api": 1},
        "maintenance": False,
    }


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli_app, ["restore", "--stack", "dev", "--app", "qr", *args])
    return result.exit_code, result.stdout, result.stderr


def test_stack_form_inspects_then_restores_inside_maintenance(
    s3: S3, work_dir, monkeypatch: pytest.MonkeyPatch
) -> None:
    cluster = make_cluster(s3.create_bucket("pitr"), s3.endpoint)
    try:
        cluster.base_backup()
        times = []
        for batch in (1, 2, 3):
            time.sleep(1.0)
            times.append(write_batch(cluster.url, batch))
        cluster.switch_and_wait()
        stack = FakeStack("dev", {"ops": {"qr": ops_for(cluster, s3.endpoint)}})
        monkeypatch.setattr(pulumi_stack, "open_stack", lambda name: stack)
        when = iso(mid(times[1], times[2]))

        code, out, err = run("--to-time", when, "--inspect", "--work-dir", str(work_dir), "--json")
        assert code == 0, err
        assert batches(json.loads(out)["url"]) == {1: 50, 2: 50}
        assert stack.ops_sequence() == []  # no maintenance to look

        code, out, err = run("--to-time", when, "--work-dir", str(work_dir), "--yes", "--json")
        assert code == 0, err
        assert "reusing the instance already paused" in err  # the inspected copy, not again
        assert stack.ops_sequence() == ["set_config", "up", "remove_config", "up"]
        assert batches(cluster.url) == {1: 50, 2: 50}
        assert json.loads(out)["database"]["pre_restore"].startswith("qr_pre_restore_")
    finally:
        cluster.instance.stop("immediate")
        stop_instances(cluster.root)


def test_stack_form_refuses_an_app_without_archiving(monkeypatch: pytest.MonkeyPatch) -> None:
    ops = {"app": "qr", "pitr": {"enabled": False}, "backup": {"bucket": "b-1"}}
    ops["database"] = {"host": "h", "port": 5432, "name": "qr", "user": "u", "password": ""}
    stack = FakeStack("dev", {"ops": {"qr": ops}})
    monkeypatch.setattr(pulumi_stack, "open_stack", lambda name: stack)
    code, _, err = run("--to-time", "latest", "--yes")
    assert code == 2 and "does not archive WAL" in err
    assert stack.ops_sequence() == []
