"""The stack form `restore --stack S --app A --to-time TIME`: everything from `ops` (FakeStack);
`--inspect` needs no maintenance, the swap into live runs inside it (always left)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from automation.cli import app as cli_app
from automation.operations.cluster_job import CLUSTER_JOB_KEY, CLUSTER_JOB_OUTPUT
from automation.operations.maintenance import MAINTENANCE_KEY
from automation.operations.pitr import CLUSTER_WORK_DIR
from automation.stack import pulumi_adapter as pulumi_stack
from tests.fakes.fake_stack import FakeStack
from tests.pitr.conftest import (
    REPO,
    batches,
    iso,
    make_cluster,
    mid,
    stop_instances,
)
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
        _, times = cluster.write_history()
        stack = FakeStack("dev", {"ops": {"qr": ops_for(cluster, s3.endpoint)}})
        monkeypatch.setattr(pulumi_stack, "open_stack", lambda name: stack)
        # the stack form reads S3 at ops.backup.endpoint alone (barman-cloud, the recovery's
        # restore_command, boto3): this process' AWS environment points at nothing
        monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
        when = iso(mid(times[1], times[2]))

        code, out, err = run("--to-time", when, "--inspect", "--work-dir", str(work_dir), "--json")
        assert code == 0, err
        assert batches(json.loads(out)["url"]) == {1: 50, 2: 50}
        assert stack.ops_sequence() == []  # no maintenance to look

        code, out, err = run("--to-time", when, "--work-dir", str(work_dir), "--yes", "--json")
        # then the app's status, as after every restore: this bucket holds no logical backup
        assert code == 1, err
        assert "error: restore finished, but status FAILs after it (backup:db)" in err
        assert "reusing the instance already paused" in err  # the inspected copy, not again
        assert stack.ops_sequence() == ["set_config", "up", "remove_config", "up"]
        assert batches(cluster.url) == {1: 50, 2: 50}
        document = json.loads(out)
        assert document["database"]["pre_restore"].startswith("qr_pre_restore_")
        checks = {c["name"]: c["status"] for c in document["status"]["checks"]}
        assert checks["database"] == "pass" and checks["backup:db"] == "fail"

        # --where cluster: the fake `up` plays the cluster and runs the Job's command for real
        stack.on_up = job_runner(cluster.url)
        monkeypatch.setenv("AWS_ENDPOINT_URL", s3.endpoint)  # the Job pod's own environment
        # a TIME outside the window is refused here, before maintenance stops the writers
        calls = len(stack.calls)
        code, out, err = run("--to-time", iso(times[2] + timedelta(hours=1)), "--where",
                             "cluster", "--yes", "--no-verify")  # fmt: skip
        assert code == 2, err
        assert "recoverable window is" in err and "Traceback" not in err
        assert len(stack.calls) == calls  # no maintenance, no Job
        code, out, err = run("--to-time", iso(mid(times[0], times[1])), "--where", "cluster",
                             "--yes", "--json", "--no-verify")  # fmt: skip
        assert code == 0, err
        assert "status" not in json.loads(out)
        assert batches(cluster.url) == {1: 50}
        assert [c.key for c in stack.calls[4:] if c.op != "up"] == [
            MAINTENANCE_KEY, CLUSTER_JOB_KEY, CLUSTER_JOB_KEY, MAINTENANCE_KEY
        ]  # fmt: skip
    finally:
        stop_instances(Path(CLUSTER_WORK_DIR))
        shutil.rmtree(CLUSTER_WORK_DIR, ignore_errors=True)
        cluster.instance.stop("immediate")
        stop_instances(cluster.root)


@pytest.mark.parametrize("when", ["2026-11-21T17:00:00", "yesterday at five"])
def test_where_cluster_refuses_a_bad_time_before_maintenance(
    monkeypatch: pytest.MonkeyPatch, when: str
) -> None:
    """TIME is parsed on the operator's side: a bad one never reaches the Job, and the writers
    are never stopped for it."""
    ops = {
        "app": "qr",
        "stack": "prod",
        "backup": {"bucket": "b-1", "prefix": "backups", "region": "us-east-1"},
        "pitr": {"enabled": True, "archiveTimeout": 55},
        "writers": ["api"],
        "maintenance": False,
    }
    stack = FakeStack("prod", {"ops": {"qr": ops}})
    monkeypatch.setattr(pulumi_stack, "open_stack", lambda name: stack)
    code, _, err = run("--to-time", when, "--where", "cluster", "--yes")
    assert code == 2, err
    [line] = [x for x in err.splitlines() if x.strip()]
    assert line.startswith("error: --to-time") and when in line
    assert ("no zone" in line) == when.startswith("2026")
    assert stack.ops_sequence() == []  # maintenance was never entered
    assert MAINTENANCE_KEY not in {c.key for c in stack.calls}


def job_runner(url: str):
    """`up` with a cluster Job request: run `python -m automation <task> <args>` with the
    database URL in the environment, as the Job's Secret provides it."""

    def on_up(config: dict[str, str], outputs: dict) -> dict:
        ops = outputs["ops"]["qr"]
        ops["maintenance"] = "qr" in json.loads(config.get(MAINTENANCE_KEY) or "[]")
        request = json.loads(config[CLUSTER_JOB_KEY]) if CLUSTER_JOB_KEY in config else None
        if request:
            job = subprocess.run(
                [sys.executable, "-m", "automation", request["task"], *request["args"]],
                cwd=REPO, env={**os.environ, "OPSPLANE_DATABASE_URL": url},
                capture_output=True, text=True, timeout=300, check=False,
            )  # fmt: skip
            outputs[CLUSTER_JOB_OUTPUT] = {
                "id": request["id"],
                "status": "succeeded" if job.returncode == 0 else "failed",
                "report": json.loads(job.stdout) if job.returncode == 0 else {},
                "error": job.stderr.strip().splitlines()[-1] if job.returncode else None,
            }
        return outputs

    return on_up


def test_stack_form_refuses_an_app_without_archiving(monkeypatch: pytest.MonkeyPatch) -> None:
    ops = {"app": "qr", "pitr": {"enabled": False}, "backup": {"bucket": "b-1"}}
    ops["database"] = {"host": "h", "port": 5432, "name": "qr", "user": "u", "password": ""}
    stack = FakeStack("dev", {"ops": {"qr": ops}})
    monkeypatch.setattr(pulumi_stack, "open_stack", lambda name: stack)
    code, _, err = run("--to-time", "latest", "--yes")
    assert code == 2 and "does not archive WAL on this stack: add it to opsplane:pitr.apps" in err
    assert stack.ops_sequence() == []


def test_prod_from_a_laptop_promotes_through_a_port_forwarded_database_url(
    s3: S3, work_dir, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On prod the stack names the database by its in-cluster Service: `--database-url` (a
    `kubectl port-forward`) reaches live from here; the copy is recovered here, and the status
    checks afterwards run where the app's names resolve (a Job, as operations pick)."""
    from automation.operations import status as st
    from automation.tasks.checks.model import Check, StatusReport

    cluster = make_cluster(s3.create_bucket("pitr"), s3.endpoint)
    try:
        _, times = cluster.write_history()
        ops = ops_for(cluster, s3.endpoint)
        ops.update(stack="prod", target="kubernetes", namespace="qr")
        ops["database"]["host"] = "db.qr.svc.cluster.local"  # not resolvable here
        stack = FakeStack("prod", {"ops": {"qr": ops}})
        monkeypatch.setattr(pulumi_stack, "open_stack", lambda name: stack)
        verified: list[str | None] = []

        def verify(stack: object, app: str, *, where: str | None = None, **_: object):
            verified.append(where)
            return StatusReport(app=app, checks=[Check("database", "pass", "ok", "")])

        monkeypatch.setattr(st, "verify_operation", verify)

        code, out, err = run("--to-time", iso(mid(times[1], times[2])), "--database-url",
                             cluster.url, "--where", "cluster", "--yes")  # fmt: skip
        assert code == 2 and "drop it with --where cluster" in err, err
        assert stack.ops_sequence() == []  # refused before maintenance

        when = iso(mid(times[1], times[2]))
        code, out, err = run("--to-time", when, "--database-url", cluster.url,
                             "--work-dir", str(work_dir), "--yes", "--json")  # fmt: skip
        assert code == 0, err
        assert batches(cluster.url) == {1: 50, 2: 50}
        assert stack.ops_sequence() == ["set_config", "up", "remove_config", "up"]  # maintenance
        assert verified == [None]  # where_checks_run: a Job on this Kubernetes stack
        assert json.loads(out)["status"]["checks"][0]["status"] == "pass"
    finally:
        cluster.instance.stop("immediate")
        stop_instances(cluster.root)
