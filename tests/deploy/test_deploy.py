"""`deploy` and `rollback` end to end: the CLI against FakeStack (its ProgramModel plays the
program: images in config -> ops, the migration when the api image changes), with the real
schema head (pgserver), real backups and restores (moto S3 over HTTP), and a health check that
follows the deployed images. One test per branch of docs/deploy.md."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import psycopg
import pytest
from typer.testing import CliRunner

from automation.cli import app as cli_app
from automation.commands import deploy as deploy_command
from automation.errors import TaskFailed
from automation.operations.maintenance import MAINTENANCE_KEY
from automation.operations.status import Check, StatusReport
from automation.stack import pulumi_adapter as pulumi_stack
from automation.stack.protocol import StackBusy
from automation.tasks.io.pgtools import database_name
from automation.tasks.schema import read_schema_head
from contract.deploy import HISTORY_KEY, parse_history
from tests.fakes.fake_stack import FakeStack, ProgramModel, sample_ops
from tests.schemas import QR_HEAD, create_qr_schema
from tests.tasks.test_restore_support import databases

OLD, NEW, NEWER = (f"ghcr.io/beetechone/qr-api:{v}" for v in ("1.0.0", "1.1.0", "1.2.0"))
MOVED_HEAD = "b2c3d4e5f6a7"
REPO = Path(__file__).resolve().parents[2]


@dataclass
class World:
    """The app as the tests script it: which images are unhealthy, which migrations fail or
    move the schema; `served` is the api image `ops` showed after each successful `up`."""

    url: str
    bucket: str
    stack: FakeStack
    model: ProgramModel
    unhealthy: set[str] = field(default_factory=set)
    failing_migrations: set[str] = field(default_factory=set)
    moving_migrations: set[str] = field(default_factory=set)
    served: list[str] = field(default_factory=list)
    extra: list[Check] = field(default_factory=list)  # checks reported beside the health ones

    def migrate(self, app: str, image: str) -> None:
        """`alembic upgrade head` in `image`, as Alembic behaves: an image knows the revisions up
        to its own head (QR_HEAD; MOVED_HEAD too when its migration moves there) and fails on a
        database at a revision it does not know."""
        if image in self.failing_migrations:
            raise TaskFailed(f"`pulumi up` failed: Job qr-migrate of {image} failed (exit 1)")
        known = {QR_HEAD, MOVED_HEAD} if image in self.moving_migrations else {QR_HEAD}
        current = self.head()
        if current is not None and current not in known:
            raise TaskFailed(
                f"`pulumi up` failed: Job qr-migrate of {image} failed (exit 1): alembic: "
                f"Can't locate revision identified by '{current}'"
            )
        if image in self.moving_migrations:
            with psycopg.connect(self.url) as conn:
                conn.execute("UPDATE alembic_version SET version_num = %s", (MOVED_HEAD,))

    def health(self) -> StatusReport:
        images = self.stack.outputs()["ops"]["qr"]["deploy"]["images"]
        checks = [
            Check(f"health:{s}", "fail" if i in self.unhealthy else "pass", f"{i} answered")
            for s, i in sorted(images.items())
        ]
        return StatusReport("qr", [*checks, *self.extra])

    def images(self) -> dict[str, str]:
        return self.stack.outputs()["ops"]["qr"]["deploy"]["images"]

    def history(self) -> list:
        return parse_history(self.stack.config.get(HISTORY_KEY)).get("qr", [])

    def head(self) -> str | None:
        return read_schema_head(self.url, "alembic_version")


@pytest.fixture
def world(postgres, s3, monkeypatch) -> World:
    url = postgres.create_database("deploy_qr")
    create_qr_schema(url, rows=30)
    bucket = s3.create_bucket("deploy")
    ops = sample_ops(
        "qr",
        "dev",
        database={
            "host": postgres.socket_dir, "port": 5432, "name": database_name(url),
            "user": "postgres", "password": "", "serverMajor": 16, "migrations": "alembic",
        },
        backup={"bucket": bucket, "prefix": "backups", "endpoint": s3.endpoint,
                "region": "us-east-1"},
    )  # fmt: skip
    model = ProgramModel()
    stack = FakeStack("dev", outputs={"ops": {"qr": ops}})
    w = World(url=url, bucket=bucket, stack=stack, model=model)
    model.migrator = w.migrate

    def on_up(config: dict, outputs: dict) -> dict:
        result = model(config, outputs)
        w.served.append(result["ops"]["qr"]["deploy"]["images"]["api"])
        return result

    stack.on_up = on_up
    monkeypatch.setattr(pulumi_stack, "open_stack", lambda name, *a, **k: stack)
    monkeypatch.setattr(deploy_command, "status_probe", lambda stack, app, where: w.health)
    return w


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli_app, [*args])
    return result.exit_code, result.stdout, " ".join(result.stderr.split())


def deploy(*args: str) -> tuple[int, str, str]:
    return run("deploy", "--stack", "dev", "--app", "qr", "--yes", "--soak", "0.3", *args)


def test_success_migrates_rolls_and_records(world: World, s3) -> None:
    code, out, err = deploy("--image", f"api={NEW}", "--image", "web=ghcr.io/o/web:2", "--json")
    assert code == 0, err
    report = json.loads(out)
    assert [(s["name"], s["status"]) for s in report["steps"]] == [
        ("preflight", "ok"), ("rollback-point", "ok"), ("apply", "ok"), ("watch", "ok"),
    ]  # fmt: skip
    assert all(s["started"] and s["seconds"] >= 0 for s in report["steps"])
    assert report["steps"][3]["seconds"] >= 0.3  # the soak was watched
    assert world.images()["api"] == NEW and world.images()["web"] == "ghcr.io/o/web:2"
    assert world.model.migrations == [("qr", NEW)]
    (entry,) = world.history()
    assert (entry.n, entry.result, entry.schema_head) == (1, "succeeded", QR_HEAD)
    assert entry.previous["api"] == OLD and entry.images["api"] == NEW
    manifest = s3.client().get_object(Bucket=world.bucket, Key=entry.rollback_point)
    assert json.loads(manifest["Body"].read())["app"] == "qr"  # a real, complete backup
    assert "[watch] ok: healthy for 0.3s" in err


def checks(status: dict) -> list[tuple[str, str]]:
    return [(c["name"], c["status"]) for c in status["checks"]]


def test_the_report_carries_the_status_checks_of_preflight_and_soak(world: World) -> None:
    world.extra.append(
        Check("backup:db", "warn", "newest backup is 30 h old", "python -m automation backup")
    )
    code, out, err = deploy("--image", f"api={NEW}", "--json")
    assert code == 0, err
    report = json.loads(out)
    for status in (report["preflight_status"], report["status"]):
        assert checks(status)[0][0] == "health:admin"
        assert ("health:api", "pass") in checks(status)
        assert ("backup:db", "warn") in checks(status)
        assert status["status"] == "warn" and status["failed"] is False
    assert report["status"]["checks"][-1]["next"] == "python -m automation backup"
    code, out, err = deploy("--image", f"api={NEWER}")
    assert code == 0, err
    lines = out.splitlines()
    steps = [i for i, line in enumerate(lines) if line.strip().startswith(("preflight", "watch"))]
    preflight = lines.index("status at preflight:")
    soak = lines.index("status at the end of the soak:")
    assert max(steps) < preflight < soak  # after the deploy's step lines
    warn = [line for line in lines[soak:] if line.startswith("WARN")]
    assert warn and "backup:db" in warn[0] and "newest backup is 30 h old" in warn[0]
    assert "next: python -m automation backup" in warn[0]
    assert "qr: 3 pass, 1 warn, 0 fail" in out


def test_migration_failure_leaves_the_pods_untouched(world: World) -> None:
    world.failing_migrations.add(NEW)
    code, _, err = deploy("--image", f"api={NEW}")
    assert code == 1
    assert "failed at apply: `pulumi up` failed: Job qr-migrate of" in err
    assert "rolled back to the previous images (the schema head did not move)" in err
    assert NEW not in world.served  # no up ever served the new image
    assert world.images()["api"] == OLD
    assert world.stack.ops_sequence() == [
        "set_config", "up", "set_config", "up", "set_config",  # image, up, image back, up, history
    ]  # fmt: skip
    assert world.history()[-1].result == "rolled-back"


def test_health_failure_during_the_soak_is_rolled_back(world: World) -> None:
    world.unhealthy.add(NEW)
    code, out, err = deploy("--image", f"api={NEW}", "--json")
    assert code == 1
    assert "failed at watch: unhealthy during the soak: health:api FAIL" in err
    assert world.served == [NEW, OLD]
    assert world.images()["api"] == OLD and world.head() == QR_HEAD
    report = json.loads(out)
    assert [s["name"] for s in report["steps"]][-2:] == ["watch", "rollback"]
    assert report["result"] == "rolled-back"
    assert ("health:api", "fail") in checks(report["status"])  # the report the soak failed on


def test_schema_moved_refuses_the_automatic_rollback_and_says_why(world: World) -> None:
    world.unhealthy.add(NEW)
    world.moving_migrations.add(NEW)
    code, _, err = deploy("--image", f"api={NEW}")
    assert code == 1
    assert f"NOT rolled back: the schema head moved from {QR_HEAD} to {MOVED_HEAD}" in err
    assert "fail forward (`deploy --stack dev --app qr --image SERVICE=FIXED_IMAGE`)" in err
    assert "`rollback --stack dev --app qr --restore-data`" in err
    assert world.served == [NEW]  # never silently back on an image that cannot read the schema
    assert world.images()["api"] == NEW and world.head() == MOVED_HEAD
    entry = world.history()[-1]
    assert (entry.result, entry.schema_before, entry.schema_head) == (
        "refused",
        QR_HEAD,
        MOVED_HEAD,
    )


def test_restore_data_goes_back_to_the_rollback_point(world: World, postgres) -> None:
    world.unhealthy.add(NEW)
    world.moving_migrations.add(NEW)
    code, _, err = deploy("--image", f"api={NEW}", "--restore-data")
    assert code == 1
    assert "and the previous images are back" in err
    assert world.head() == QR_HEAD  # the database is the rollback point's again
    assert world.images()["api"] == OLD
    assert MAINTENANCE_KEY not in world.stack.config  # maintenance left
    assert world.stack.outputs()["ops"]["qr"]["maintenance"] is False
    assert databases(postgres, f"{database_name(world.url)}_pre_restore_")  # moved aside, kept
    assert world.history()[-1].result == "restored"


def test_a_failed_data_restore_is_recorded_and_names_the_way_forward(
    world: World, monkeypatch
) -> None:
    world.unhealthy.add(NEW)
    world.moving_migrations.add(NEW)

    def broken(*args: object) -> str:
        raise TaskFailed("restore: the rollback point's dump did not verify (pg_restore exit 1)")

    with monkeypatch.context() as patch:
        patch.setattr(deploy_command, "restore_database", broken)
        code, out, err = deploy("--image", f"api={NEW}", "--restore-data", "--json")
    assert code == 1
    assert "data restore to backups/" in err and "failed: restore: the rollback point's" in err
    assert "NOT rolled back: the new images still run" in err
    assert "`rollback --stack dev --app qr --restore-data`" in err
    assert json.loads(out)["result"] == "failed"
    assert world.images()["api"] == NEW and world.head() == MOVED_HEAD
    assert MAINTENANCE_KEY not in world.stack.config  # maintenance left
    entry = world.history()[-1]
    assert (entry.kind, entry.result) == ("deploy", "failed")
    assert entry.detail.startswith("data restore to backups/") and "exit 1)" in entry.detail
    code, _, err = run(  # the way forward it named, once the restore works
        "rollback", "--stack", "dev", "--app", "qr", "--yes", "--soak", "0.1", "--restore-data"
    )
    assert code == 0, err
    assert world.head() == QR_HEAD and world.images()["api"] == OLD
    assert [(r.kind, r.result) for r in world.history()][-1] == ("rollback", "restored")


def test_rollback_restore_data_after_a_refused_deploy(world: World) -> None:
    world.unhealthy.add(NEW)
    world.moving_migrations.add(NEW)
    assert deploy("--image", f"api={NEW}")[0] == 1
    code, _, err = run("rollback", "--stack", "dev", "--app", "qr", "--yes", "--soak", "0.1")
    assert code == 1 and "rollback refused, nothing was changed" in err
    assert world.images()["api"] == NEW
    code, _, err = run(
        "rollback", "--stack", "dev", "--app", "qr", "--yes", "--soak", "0.1", "--restore-data"
    )
    assert code == 0, err
    assert world.head() == QR_HEAD and world.images()["api"] == OLD
    assert [(r.kind, r.result) for r in world.history()] == [
        ("deploy", "refused"), ("rollback", "restored"),
    ]  # fmt: skip


def test_rollback_to_an_earlier_deploy(world: World) -> None:
    assert deploy("--image", f"api={NEW}")[0] == 0
    assert deploy("--image", f"api={NEWER}")[0] == 0
    code, out, _ = run("deploy", "--stack", "dev", "--app", "qr", "--history", "--json")
    assert code == 0 and [r["n"] for r in json.loads(out)] == [1, 2]
    code, out, _ = run("rollback", "--stack", "dev", "--app", "qr", "--to", "1", "--dry-run")
    assert code == 0 and f"api: {NEWER} -> {NEW}" in out
    calls = len(world.stack.calls)
    code, out, err = run("rollback", "--stack", "dev", "--app", "qr", "--to", "1", "--yes",
                         "--soak", "0.1")  # fmt: skip
    assert code == 0, err
    assert "status at the end of the soak:" in out and "PASS  health:api" in out
    assert world.images()["api"] == NEW
    assert world.stack.ops_sequence()[calls:] == ["set_config", "up", "set_config"]
    last = world.history()[-1]
    assert (last.n, last.kind, last.result, last.images["api"]) == (3, "rollback", "succeeded", NEW)


def test_rollback_to_refuses_when_the_schema_moved_since(world: World) -> None:
    assert deploy("--image", f"api={NEW}")[0] == 0
    assert deploy("--image", f"api={NEWER}")[0] == 0
    with psycopg.connect(world.url) as conn:
        conn.execute("UPDATE alembic_version SET version_num = %s", (MOVED_HEAD,))
    calls = len(world.stack.calls)
    code, _, err = run("rollback", "--stack", "dev", "--app", "qr", "--to", "1", "--yes")
    assert code == 1
    assert f"deploy #1 ran on schema head {QR_HEAD} and the database is at {MOVED_HEAD}" in err
    assert len(world.stack.calls) == calls  # nothing changed
    code, _, err = run("rollback", "--stack", "dev", "--app", "qr", "--to", "7", "--yes")
    assert code == 2 and "--to 7: no such deploy in the history (numbers: 1, 2)" in err


def test_preflight_failure_changes_nothing_unless_forced(world: World) -> None:
    world.unhealthy.add(OLD)
    code, _, err = deploy("--image", f"api={NEW}")
    assert code == 1 and "preflight: qr is failing now (health:api FAIL" in err
    assert "or pass --force" in err and world.stack.calls == []
    code, out, _ = deploy("--image", f"api={NEW}", "--json")
    assert code == 1 and ("health:api", "fail") in checks(json.loads(out)["preflight_status"])
    assert world.stack.calls == []
    code, out, err = deploy("--image", f"api={NEW}", "--force", "--json")
    assert code == 0, err
    assert "forced past 1 failing check(s)" in json.loads(out)["steps"][0]["detail"]


def test_dry_run_prints_the_plan_and_changes_nothing(world: World) -> None:
    code, out, _ = deploy(
        "--image", f"api={NEW}", "--image", "admin=ghcr.io/o/admin:3", "--dry-run"
    )
    assert code == 0
    assert f"api: {OLD} -> {NEW}" in out
    assert "admin: ghcr.io/beetechone/qr-admin:1.0.0 -> ghcr.io/o/admin:3" in out
    assert f"migration: Job for {NEW}: `alembic upgrade head` before any pod changes" in out
    code, out, _ = deploy("--image", "web=ghcr.io/o/web:2", "--dry-run", "--json")
    assert json.loads(out)["migration"] == "none: api's image is unchanged"
    assert world.stack.calls == []


def test_bad_input_is_exit_2(world: World) -> None:
    code, _, err = deploy("--image", f"worker={NEW}")
    assert code == 2 and "unknown service 'worker'; the app has admin, api, web" in err
    code, _, err = deploy("--image", "api=Not An Image")
    assert code == 2 and "--image 'api=Not An Image': must be an image reference" in err
    code, _, err = deploy("--image", f"api={OLD}")
    assert code == 2 and "nothing to deploy" in err
    code, _, err = deploy()
    assert code == 2 and "--image SERVICE=IMAGE is required" in err
    assert world.stack.calls == []


class Alertmanager(BaseHTTPRequestHandler):
    firing: list[dict] = []

    def do_GET(self) -> None:
        body = json.dumps(self.firing).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def alertmanager() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Alertmanager)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_a_firing_error_rate_alert_fails_the_soak(world: World, alertmanager: str) -> None:
    Alertmanager.firing = [
        {"labels": {"alertname": "HighErrorRate", "app": "qr", "priority": "P2"}},
        {"labels": {"alertname": "HighErrorRate", "app": "quickbite"}},  # not ours
    ]
    code, _, err = deploy("--image", f"api={NEW}", "--alertmanager-url", alertmanager)
    assert code == 1 and "unhealthy during the soak: alert HighErrorRate firing" in err
    assert world.images()["api"] == OLD
    Alertmanager.firing = [{"labels": {"alertname": "HighErrorRate", "app": "quickbite"}}]
    code, _, err = deploy("--image", f"api={NEW}", "--alertmanager-url", alertmanager)
    assert code == 0, err


def test_a_head_the_app_declared_compatible_still_rolls_back(world: World) -> None:
    """`deploy.compatibleHeads`: an expand-only migration; the previous images read it."""
    outputs = world.stack.outputs()
    outputs["ops"]["qr"]["deploy"]["compatibleHeads"] = [MOVED_HEAD]
    world.stack.set_outputs(outputs)
    world.unhealthy.add(NEW)
    world.moving_migrations.add(NEW)
    code, _, err = deploy("--image", f"api={NEW}")
    assert code == 1
    assert f"rolled back to the previous images (schema head {MOVED_HEAD} is declared" in err
    assert world.images()["api"] == OLD and world.head() == MOVED_HEAD
    # OLD's `alembic upgrade head` does not know MOVED_HEAD (World.migrate fails it, as Alembic
    # does): the rollback asked the program to declare no migration for OLD
    assert world.model.migrations == [("qr", NEW)]
    deploy_config = json.loads(world.stack.config["opsplane:apps"])["qr"]["deploy"]
    assert deploy_config["skipMigrationFor"] == OLD
    world.moving_migrations.add(NEWER)  # a later image knows the head: it migrates as usual
    assert deploy("--image", f"api={NEWER}")[0] == 0
    assert world.model.migrations == [("qr", NEW), ("qr", NEWER)]
    assert "skipMigrationFor" not in json.loads(world.stack.config["opsplane:apps"])["qr"]["deploy"]


def run_job_for_real(url: str, jobs: list[str]):
    """The cluster, played by a subprocess: the Job's command with the database URL in its
    environment, as the Job's Secret provides it (S3 settings come from the test's env)."""

    def job_runner(request: dict) -> dict:
        jobs.append(request["task"])
        job = subprocess.run(
            [sys.executable, "-m", "automation", request["task"], *request["args"], "--json"],
            cwd=REPO,
            env={**os.environ, "OPSPLANE_DATABASE_URL": url},
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        return {
            "status": "succeeded" if job.returncode == 0 else "failed",
            "report": json.loads(job.stdout) if job.returncode == 0 else {},
            "error": job.stderr.strip().splitlines()[-1] if job.returncode else None,
        }

    return job_runner


def test_on_kubernetes_the_data_steps_run_as_cluster_jobs(world: World) -> None:
    """prod: the schema head comes from backup Jobs (the first is the rollback point) and
    `--restore-data` restores through a restore Job, inside maintenance."""
    outputs = world.stack.outputs()
    outputs["ops"]["qr"]["target"] = "kubernetes"
    outputs["ops"]["qr"]["database"]["host"] = "db.qr.svc.cluster.local"  # not reachable here
    world.stack.set_outputs(outputs)
    jobs: list[str] = []
    world.model.job_runner = run_job_for_real(world.url, jobs)
    world.unhealthy.add(NEW)
    world.moving_migrations.add(NEW)
    code, out, err = deploy("--image", f"api={NEW}", "--restore-data", "--json")
    assert code == 1, err
    assert jobs == ["backup", "backup", "restore", "backup"]  # preflight, after, restore, final
    report = json.loads(out)
    assert (report["schema_before"], report["result"]) == (QR_HEAD, "restored")
    assert report["rollback_point"].endswith("/manifest.json")
    assert world.head() == QR_HEAD and world.images()["api"] == OLD
    assert "opsplane:clusterJob" not in world.stack.config
    assert MAINTENANCE_KEY not in world.stack.config


def test_a_busy_stack_deploys_nothing_and_puts_the_config_back(world: World) -> None:
    world.stack.fail_on_up = {1}
    world.stack.up_error = lambda n: StackBusy("stack 'dev' is locked by another update")
    code, _, err = deploy("--image", f"api={NEW}")
    assert code == 1 and "nothing was deployed, config holds the running images" in err
    assert world.stack.ops_sequence() == ["set_config", "up", "set_config"]
    apps = json.loads(world.stack.config["opsplane:apps"])
    assert apps["qr"]["services"]["api"]["image"] == OLD
    assert world.history() == []


def test_rollback_without_to_undoes_the_last_deploy(world: World) -> None:
    code, _, err = run("rollback", "--stack", "dev", "--app", "qr", "--yes")
    assert code == 2 and "nothing to roll back to" in err
    assert deploy("--image", f"api={NEW}")[0] == 0
    code, out, _ = run("rollback", "--stack", "dev", "--app", "qr", "--dry-run", "--json")
    plan = json.loads(out)
    assert plan["migration"] == f"back to the images before deploy #1 (schema head {QR_HEAD})"
    assert plan["after"]["api"] == OLD
    code, _, err = run("rollback", "--stack", "dev", "--app", "qr", "--yes", "--soak", "0.1")
    assert code == 0, err
    assert world.images()["api"] == OLD
    assert f"qr on dev is back to the images before deploy #1 (schema head {QR_HEAD})" in err


@pytest.mark.parametrize(("stack_name", "runs"), [("prod", "cluster"), ("dev", "local")])
def test_preflight_and_soak_check_the_app_where_its_addresses_resolve(
    monkeypatch: pytest.MonkeyPatch, stack_name: str, runs: str
) -> None:
    """prod's `ops` names in-cluster Services: its status runs as a cluster Job, dev's here."""
    from automation.operations import status as st

    calls: list[str] = []
    report = StatusReport(app="qr", checks=[Check("health:api", "pass", "HTTP 200")])
    monkeypatch.setattr(st, "cluster_status", lambda stack, app: calls.append("cluster") or report)
    monkeypatch.setattr(st, "app_status", lambda stack, app: calls.append("local") or report)
    stack = FakeStack(stack_name, outputs={"ops": {"qr": sample_ops("qr", stack_name)}})
    probes = deploy_command.real_probes(stack, "qr", None)
    assert probes.health() is report and calls == [runs]


def closed_port_url() -> str:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def test_an_unreachable_alertmanager_fails_the_soak_and_rolls_back(world: World) -> None:
    """An error that is not an OpsError during the soak (URLError) is a failing check with its
    reason: the same rollback and history record as any soak failure, not a crash."""
    url = closed_port_url()
    code, out, err = deploy("--image", f"api={NEW}", "--alertmanager-url", url, "--json")
    assert code == 1, err
    assert (
        "failed at watch: unhealthy during the soak: error-rate alert unknown (Alertmanager" in err
    )
    assert "did not answer" in err and "rolled back to the previous images" in err
    assert "unexpected" not in err and "Traceback" not in err
    assert world.served == [NEW, OLD] and world.images()["api"] == OLD
    assert json.loads(out)["result"] == "rolled-back"
    assert world.history()[-1].result == "rolled-back"
    code, _, err = deploy("--image", f"api={NEW}", "--alertmanager-url", "localhost:9093")
    assert code == 2 and "--alertmanager-url 'localhost:9093': use an http(s) URL" in err


def test_any_error_during_the_soak_goes_through_recovery(world: World, monkeypatch) -> None:
    """A probe raising something unexpected is still a failing soak check: rolled back, recorded."""
    calls = {"n": 0}

    def health() -> StatusReport:
        calls["n"] += 1
        if calls["n"] > 1:  # preflight passes; the soak's probe breaks
            raise ConnectionResetError("connection reset by peer")
        return world.health()

    monkeypatch.setattr(deploy_command, "status_probe", lambda stack, app, where: health)
    code, _, err = deploy("--image", f"api={NEW}")
    assert code == 1
    assert "status did not run (ConnectionResetError: connection reset by peer)" in err
    assert world.images()["api"] == OLD and world.history()[-1].result == "rolled-back"


@pytest.mark.parametrize("stage", ["watch", "apply"])
def test_an_interrupted_deploy_is_recorded_and_names_the_rollback(
    world: World, monkeypatch, stage: str
) -> None:
    """Ctrl-C / SIGTERM after the images changed: recorded as interrupted, one line naming
    `rollback`, and that rollback puts the previous images back (even when `up` was cut short
    and config is ahead of `ops`)."""
    from automation.errors import Terminated

    if stage == "watch":
        calls = {"n": 0}

        def health() -> StatusReport:
            calls["n"] += 1
            if calls["n"] == 2:  # preflight passes; the first soak check is cut short
                raise Terminated()
            return world.health()

        monkeypatch.setattr(deploy_command, "status_probe", lambda stack, app, where: health)
    else:
        on_up = world.stack.on_up

        def cut_short(config: dict, outputs: dict) -> dict:
            world.stack.on_up = on_up
            raise KeyboardInterrupt

        world.stack.on_up = cut_short
    code, out, err = deploy("--image", f"api={NEW}", "--json")
    assert code == 1
    what = "terminated (SIGTERM)" if stage == "watch" else "interrupted"
    assert f"{what}: deploy of qr stopped during {stage} (recorded as #1)" in err
    assert "Next step: `python -m automation rollback --stack dev --app qr`" in err
    assert json.loads(out)["report"]["result"] == "interrupted"
    (entry,) = world.history()
    assert (entry.result, entry.images["api"], entry.previous["api"]) == ("interrupted", NEW, OLD)
    assert entry.detail == f"{what.split()[0]} during {stage}"
    code, _, err = run("rollback", "--stack", "dev", "--app", "qr", "--yes", "--soak", "0.1")
    assert code == 0, err
    assert world.images()["api"] == OLD
    assert json.loads(world.stack.config["opsplane:apps"])["qr"]["services"]["api"]["image"] == OLD
    assert [(r.kind, r.result) for r in world.history()] == [
        ("deploy", "interrupted"), ("rollback", "succeeded"),
    ]  # fmt: skip


def test_an_unreadable_schema_head_refuses_the_rollback_and_still_records(
    world: World, monkeypatch
) -> None:
    """recover() cannot read the head (the database went away): no automatic rollback onto an
    unknown schema, one line with why and the two ways forward, and the history record."""
    real = deploy_command.real_probes
    heads = {"n": 0}

    def probes(*args, **kwargs):
        wired = real(*args, **kwargs)
        read = wired.schema_head

        def head() -> str | None:
            heads["n"] += 1
            if heads["n"] > 1:
                raise OSError("could not connect to server: No such file or directory")
            return read()

        wired.schema_head = head
        return wired

    monkeypatch.setattr(deploy_command, "real_probes", probes)
    world.unhealthy.add(NEW)
    code, out, err = deploy("--image", f"api={NEW}", "--json")
    assert code == 1
    assert "NOT rolled back: the schema head could not be read (OSError: could not connect" in err
    assert "fail forward (`deploy --stack dev --app qr --image SERVICE=FIXED_IMAGE`)" in err
    assert "`rollback --stack dev --app qr` (it checks the head; add --restore-data" in err
    assert world.served == [NEW] and world.images()["api"] == NEW
    entry = world.history()[-1]
    assert (entry.result, entry.schema_before, entry.schema_head) == ("refused", QR_HEAD, None)
    assert "schema head unreadable" in entry.detail
    assert json.loads(out)["steps"][-1]["status"] == "skipped"


def test_rollback_to_refuses_across_a_breaking_head_between(world: World) -> None:
    """`compatibleHeads` declares heads, not paths: deploy 1 on QR_HEAD, deploy 2 moves to a
    breaking head, deploy 3 to a declared compatible one. `rollback --to 1` would put deploy 1's
    images on deploy 2's breaking change: refused; `--to 2` (only the compatible step) is not."""
    breaking, expanded = "c3d4e5f6a7b8", "d4e5f6a7b8c9"
    outputs = world.stack.outputs()
    outputs["ops"]["qr"]["deploy"]["compatibleHeads"] = [expanded]
    world.stack.set_outputs(outputs)
    assert deploy("--image", f"api={NEW}")[0] == 0  # #1 on QR_HEAD
    with psycopg.connect(world.url) as conn:
        conn.execute("UPDATE alembic_version SET version_num = %s", (breaking,))
    world.model.migrator = None  # the heads are set by hand here
    assert deploy("--image", f"api={NEWER}")[0] == 0  # #2 on the breaking head
    with psycopg.connect(world.url) as conn:
        conn.execute("UPDATE alembic_version SET version_num = %s", (expanded,))
    assert deploy("--image", "api=ghcr.io/o/qr-api:2")[0] == 0  # #3 on the compatible head
    calls = len(world.stack.calls)
    code, _, err = run("rollback", "--stack", "dev", "--app", "qr", "--to", "1", "--yes")
    assert code == 1, err
    assert f"the database is at {expanded}, and since then it went through {breaking}" in err
    assert len(world.stack.calls) == calls  # nothing changed
    code, _, err = run("rollback", "--stack", "dev", "--app", "qr", "--to", "2", "--yes",
                       "--soak", "0.1")  # fmt: skip
    assert code == 0, err
    assert world.images()["api"] == NEWER
