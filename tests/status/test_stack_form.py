"""`status --stack S --app A`: everything from the app's `ops` (FakeStack) pointing at real
services, the `stack…` checks, `--where cluster`, and the operations that end by running status
(restore, rotate, maintenance off)."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest
from typer.testing import CliRunner

from automation.cli import app as cli_app
from automation.operations import status_stack as stack_checks
from automation.operations.cluster_job import CLUSTER_JOB_KEY
from automation.operations.maintenance import MAINTENANCE_KEY
from automation.operations.rotation import ROTATION_KEY
from automation.operations.status import cluster_args
from automation.stack import pulumi_adapter as pulumi_stack
from automation.stack.pulumi_adapter import _describe_update
from automation.tasks.io.pgtools import database_name
from tests.fakes.fake_stack import SAMPLE_SCHEDULES, FakeStack, ProgramModel, sample_ops
from tests.services import S3, Postgres
from tests.status import HttpService, by_name, put_run, run_id_ago, run_status, tag_drill
from tests.tasks import Redis, redis_server_fixture  # noqa: F401  (the redis_server fixture)
from tests.tasks.test_restore_support import create_qr


def real_ops(postgres: Postgres, url: str, redis: Redis, bucket: str, s3: S3, health: str) -> dict:
    """`sample_ops` (shaped like the program's) with every dependency at a real local service."""
    return sample_ops(
        "qr",
        database={
            "host": postgres.socket_dir,
            "port": 5432,
            "name": database_name(url),
            "user": "postgres",
            "password": "",
            "serverMajor": 16,
            "migrations": "alembic",
        },
        cache={"host": "127.0.0.1", "port": redis.port, "password": redis.password},
        backup={
            "bucket": bucket,
            "prefix": "backups",
            "endpoint": s3.endpoint,
            "region": "us-east-1",
            "schedules": copy.deepcopy(SAMPLE_SCHEDULES),
        },
        objects=None,  # the runs below hold db and redis parts only
        webhook={
            "table": "webhook_logs",
            "url": "http://127.0.0.1:1/webhooks",
            "signing": "stripe",
        },
        health={"api": health},
    )


@pytest.fixture(scope="module")
def qr_url(postgres: Postgres) -> str:
    url = postgres.create_database("qrstack")
    create_qr(url, rows=30)
    with psycopg.connect(url) as conn:
        conn.execute("UPDATE webhook_logs SET status = 'processed'")  # nothing left to replay
    return url


@pytest.fixture
def api() -> Iterator[HttpService]:
    service = HttpService()
    yield service
    service.close()


@pytest.fixture
def stack(
    postgres: Postgres,
    qr_url: str,
    redis_server: Redis,
    s3: S3,
    api: HttpService,
    monkeypatch: pytest.MonkeyPatch,
) -> FakeStack:
    bucket = s3.create_bucket("stackform")
    keys = put_run(s3.client(), bucket, "qr", run_id_ago(hours=1), ("db", "redis"))
    tag_drill(s3.client(), bucket, keys["db"], "ok", run_id_ago(minutes=30), 5)
    monkeypatch.delenv("AWS_ENDPOINT_URL")  # the endpoint comes from ops.backup.endpoint
    ops = real_ops(postgres, qr_url, redis_server, bucket, s3, api.url())
    fake = FakeStack("dev", outputs={"ops": {"qr": ops}}, on_up=ProgramModel())
    monkeypatch.setattr(pulumi_stack, "open_stack", lambda name, *a, **k: fake)
    return fake


def status_jobs(
    monkeypatch: pytest.MonkeyPatch, qr_url: str, redis_url: str, s3_endpoint: str
) -> tuple[list[dict[str, Any]], Callable[[dict[str, Any]], dict[str, Any]]]:
    """The status Job as the fake cluster runs it: `python -m automation status ARGS --json`
    with the app Secret's URLs in its environment; also the requests it got, in order."""
    requests: list[dict[str, Any]] = []

    def job(request: dict[str, Any]) -> dict[str, Any]:
        requests.append(request)
        with monkeypatch.context() as env:
            env.setenv("OPSPLANE_DATABASE_URL", qr_url)
            env.setenv("OPSPLANE_REDIS_URL", redis_url)
            env.setenv("AWS_ENDPOINT_URL", s3_endpoint)
            result = run_status(*request["args"], "--json")
        status = "succeeded" if result.exit_code == 0 else "failed"
        return {"status": status, "report": json.loads(result.stdout), "error": None}

    return requests, job


def stack_status(*extra: str) -> tuple[int, dict[str, Any]]:
    result = run_status("--stack", "dev", "--app", "qr", "--json", *extra)
    assert result.stdout, (result.exit_code, result.stderr)
    return result.exit_code, json.loads(result.stdout)


@pytest.fixture
def alertmanager() -> Iterator[HttpService]:
    service = HttpService()
    service.alerts = []  # nothing firing
    yield service
    service.close()


def test_stack_form_healthy_every_check_passes(
    stack: FakeStack, redis_server: Redis, alertmanager: HttpService
) -> None:
    code, report = stack_status("--alertmanager-url", alertmanager.url(""))
    checks = by_name(report)
    assert code == 0, checks
    assert {c["status"] for c in checks.values()} == {"pass"}, checks
    assert {"health:api", "database", "redis", "backup:db", "backup:redis", "backup:drill",
            "webhooks", "alerts", "stack:maintenance", "stack:rotation", "stack:cluster-job",
            "stack:lock"} <= set(checks)  # fmt: skip
    assert report["stack"] == "dev" and report["app"] == "qr"
    assert redis_server.password not in json.dumps(report)
    assert stack.calls == []  # status changes nothing


def test_stack_form_without_monitoring_says_alerts_were_not_checked(stack: FakeStack) -> None:
    """Alertmanager and Prometheus are not in `ops`: the report says alerts were not looked at and
    how to look, as a WARN (a healthy app still exits 0)."""
    code, report = stack_status()
    checks = by_name(report)
    assert code == 0
    assert checks["alerts"]["status"] == "warn"
    assert checks["alerts"]["detail"].startswith("not checked")
    assert "--alertmanager-url" in checks["alerts"]["next"]
    others = {name: c["status"] for name, c in checks.items() if name != "alerts"}
    assert set(others.values()) == {"pass"}, others
    text = run_status("--stack", "dev", "--app", "qr")
    assert text.exit_code == 0
    [line] = [line for line in text.stdout.splitlines() if " alerts " in f" {line} "]
    assert line.startswith("WARN") and "not checked" in line and "--alertmanager-url" in line


# --- the pool, the RTO and PITR in the stack form -------------------------------------------------


def test_stack_form_compares_connections_with_the_pool_in_ops(
    stack: FakeStack, qr_url: str
) -> None:
    """`ops.database.poolSize` (from `quotas.poolSize`) is the pool; `--pool-size` overrides it."""
    outputs = stack.outputs()
    outputs["ops"]["qr"]["database"]["poolSize"] = 2
    stack.set_outputs(outputs)
    extra = [psycopg.connect(qr_url) for _ in range(3)]
    try:
        code, report = stack_status()
        from_ops = by_name(report)["database:connections"]
        _, report = stack_status("--pool-size", "50")
        overridden = by_name(report)["database:connections"]
    finally:
        for conn in extra:
            conn.close()
    assert code == 0
    assert from_ops["status"] == "warn" and "(pool 2)" in from_ops["detail"]
    assert from_ops["next"].endswith("#alert-databaseconnectionpoolexhausted")
    assert overridden["status"] == "pass" and "(pool 50)" in overridden["detail"]


def test_stack_form_rto_from_ops_and_rto_minutes_overrides_it(stack: FakeStack, s3: S3) -> None:
    bucket = stack.outputs()["ops"]["qr"]["backup"]["bucket"]
    keys = put_run(s3.client(), bucket, "qr", run_id_ago(hours=1), ("db", "redis"))
    tag_drill(s3.client(), bucket, keys["db"], "ok", run_id_ago(minutes=20), 700)
    code, report = stack_status()  # ops: rtoSeconds 3600
    assert code == 0 and by_name(report)["backup:drill"]["status"] == "pass"
    code, report = stack_status("--rto-minutes", "10")
    check = by_name(report)["backup:drill"]
    assert code == 0 and check["status"] == "warn" and "over RTO" in check["detail"]


def test_stack_form_refuses_pitr_it_reads_it_from_ops(stack: FakeStack) -> None:
    result = run_status("--stack", "dev", "--app", "qr", "--pitr")
    assert result.exit_code == 2
    assert result.stderr.strip() == (
        "error: --pitr: --stack reads it from the stack's ops (ops.pitr.enabled, set by config "
        "opsplane:pitr.apps); drop --pitr"
    )


def test_cluster_args_carry_the_pool_and_the_overrides() -> None:
    prod = FakeStack("prod", outputs={"ops": {"qr": sample_ops("qr", "prod")}})
    args = cluster_args(prod, "qr", timeout=5, deep=False)
    assert args[args.index("--pool-size") + 1] == "800"
    assert args[args.index("--rto-minutes") + 1] == "60"
    args = cluster_args(prod, "qr", timeout=5, deep=False, pool_size=5, rto_minutes=30)
    assert args[args.index("--pool-size") + 1] == "5"
    assert args[args.index("--rto-minutes") + 1] == "30"
    no_pool = FakeStack("prod", outputs={"ops": {"quickbite": sample_ops("quickbite", "prod")}})
    assert "--pool-size" not in cluster_args(no_pool, "quickbite", timeout=5, deep=False)


def test_stack_checks_warn_with_the_command_to_run(stack: FakeStack) -> None:
    stack.config[MAINTENANCE_KEY] = '["qr"]'
    outputs = stack.outputs()
    outputs["ops"]["qr"]["secrets"]["db-password"]["pending"] = True
    stack.set_outputs(outputs)
    stack.config[CLUSTER_JOB_KEY] = json.dumps({"app": "qr", "task": "restore", "id": "restore-1"})
    stack.update_in_progress = "update started 2026-12-01 03:00:00 UTC by alice"
    code, report = stack_status()
    checks = by_name(report)
    assert code == 0  # all WARN
    assert checks["stack:maintenance"]["status"] == "warn"
    assert checks["stack:maintenance"]["next"] == (
        "python -m automation maintenance off --stack dev --app qr"
    )
    assert checks["stack:rotation"]["next"] == (
        "python -m automation rotate --stack dev --app qr --secret db-password --resume"
    )
    assert "restore restore-1" in checks["stack:cluster-job"]["detail"]
    assert checks["stack:cluster-job"]["next"].startswith("pulumi config rm opsplane:clusterJob")
    assert checks["stack:lock"]["detail"].endswith("by alice")
    assert checks["stack:lock"]["next"] == "pulumi cancel --stack dev"


def test_backup_schedules_come_from_the_deployed_ops(stack: FakeStack) -> None:
    code, report = stack_status()
    check = by_name(report)["backup:redis"]
    assert code == 0 and check["status"] == "pass"  # 1 h old; default: every 6 h
    assert "schedule every 6.0 h" in check["detail"]
    outputs = stack.outputs()  # as after `up` with redisSchedule "* * * * *" (every minute)
    outputs["ops"]["qr"]["backup"]["schedules"]["intervals"]["redis"] = 60
    stack.set_outputs(outputs)
    code, report = stack_status()
    check = by_name(report)["backup:redis"]
    assert code == 1 and check["status"] == "fail"
    assert "schedule every 60 s): past 2x the schedule" in check["detail"]


def test_health_urls_are_the_ones_the_program_exports() -> None:
    dev = stack_checks.health_urls(sample_ops("qr", "dev"))
    prod = stack_checks.health_urls(sample_ops("quickbite", "prod"))
    assert dev["api"] == "http://127.0.0.1:8000/health"
    assert prod["backend"].startswith("http://backend.quickbite.svc:")
    assert prod["backend"].endswith("/actuator/health")


def test_lock_holder_from_pulumi_history() -> None:
    class Info:
        kind, result = "update", "in-progress"
        start_time = datetime(2026, 12, 1, 3, 0, tzinfo=UTC)
        environment = {"git.author": "alice"}

    assert _describe_update(Info()) == "update started 2026-12-01 03:00:00 UTC by alice"
    Info.result = "succeeded"
    assert _describe_update(Info()) is None


def test_unknown_app_is_exit_2(stack: FakeStack) -> None:
    result = run_status("--stack", "dev", "--app", "nope")
    assert result.exit_code == 2 and "--app 'nope'" in result.stderr


def test_stack_form_refuses_explicit_targets_but_takes_a_port_forward(
    stack: FakeStack, qr_url: str
) -> None:
    result = run_status("--stack", "dev", "--app", "qr", "--bucket", "other")
    assert result.exit_code == 2
    assert result.stderr.strip() == (
        "error: --bucket: --stack reads it from the stack's ops; drop one of the two"
    )
    outputs = stack.outputs()
    outputs["ops"]["qr"]["database"]["host"] = "db.qr.svc.cluster.local"  # not reachable here
    stack.set_outputs(outputs)
    code, report = stack_status("--database-url", qr_url)  # e.g. through a port-forward
    assert code == 0 and by_name(report)["database"]["status"] == "pass"


# --- --where cluster -----------------------------------------------------------------------------


def test_where_cluster_runs_the_checks_as_a_job_and_reports_the_same_json(
    stack: FakeStack, postgres: Postgres, qr_url: str, redis_server: Redis, s3: S3,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    requests, job = status_jobs(monkeypatch, qr_url, redis_server.url, s3.endpoint)

    stack.on_up = ProgramModel(job_runner=job)
    _, local = stack_status()
    alertmanager = HttpService()
    alertmanager.alerts = []
    try:
        code, report = stack_status(
            "--where", "cluster", "--alertmanager-url", alertmanager.url("")
        )
    finally:
        alertmanager.close()
    [request] = requests
    assert request["args"][-2:] == ["--alertmanager-url", alertmanager.url("")]
    assert request["task"] == "status" and "--exit-zero" in request["args"]
    assert redis_server.password not in json.dumps(request)
    assert "--database-url" not in request["args"]  # credentials come from the Job's env
    assert code == 0 and report["stack"] == "dev"
    cluster_checks = {c["name"]: c["status"] for c in report["checks"]}
    local_checks = {c["name"]: c["status"] for c in local["checks"]}
    # the same report: the stack:* checks run here, beside the Job, and join its report
    assert cluster_checks == {**local_checks, "alerts": "pass"}
    assert [c["name"] for c in report["checks"]][-4:] == [
        "stack:maintenance", "stack:rotation", "stack:cluster-job", "stack:lock"
    ]  # fmt: skip
    assert stack.ops_sequence() == ["set_config", "up", "remove_config", "up"]


def test_where_cluster_a_failing_check_still_brings_the_report_and_exits_1(
    stack: FakeStack, api: HttpService, qr_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    def job(request: dict[str, Any]) -> dict[str, Any]:
        with monkeypatch.context() as env:
            env.setenv("OPSPLANE_DATABASE_URL", qr_url)
            result = run_status(*request["args"], "--json")
        assert result.exit_code == 0  # --exit-zero: the Job succeeds, the report says FAIL
        return {"status": "succeeded", "report": json.loads(result.stdout), "error": None}

    stack.on_up = ProgramModel(job_runner=job)
    api.code = 500
    code, report = stack_status("--where", "cluster")
    assert code == 1 and by_name(report)["health:api"]["status"] == "fail"


def test_where_cluster_runs_the_stack_checks_here_and_joins_them(
    stack: FakeStack, qr_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The `stack…` checks read the stack, not the cluster: they run on this side, before the Job
    (so its own clusterJob request is not reported as a leftover), in the same report."""
    seen: list[str | None] = []

    def job(request: dict[str, Any]) -> dict[str, Any]:
        seen.append(stack.config.get(CLUSTER_JOB_KEY))  # the Job's own request, while it runs
        with monkeypatch.context() as env:
            env.setenv("OPSPLANE_DATABASE_URL", qr_url)
            result = run_status(*request["args"], "--json")
        assert "stack:maintenance" not in result.stdout  # the Job does not read the stack
        return {"status": "succeeded", "report": json.loads(result.stdout), "error": None}

    stack.on_up = ProgramModel(job_runner=job)
    stack.config[MAINTENANCE_KEY] = '["qr"]'
    outputs = stack.outputs()
    outputs["ops"]["qr"]["secrets"]["db-password"]["pending"] = True
    stack.set_outputs(outputs)
    _, report = stack_status("--where", "cluster")
    checks = by_name(report)
    assert seen and seen[0]  # a Job ran
    assert checks["stack:maintenance"]["status"] == "warn"
    assert checks["stack:maintenance"]["next"] == (
        "python -m automation maintenance off --stack dev --app qr"
    )
    assert checks["stack:rotation"]["status"] == "warn"
    assert checks["stack:cluster-job"]["status"] == "pass"  # not the Job status itself asked for
    assert checks["stack:lock"]["status"] == "pass"
    assert checks["database"]["status"] == "pass"  # and the Job's checks are all there
    assert report["counts"]["warn"] == sum(c["status"] == "warn" for c in report["checks"])


def test_on_kubernetes_status_runs_in_the_cluster_unless_told_local(
    stack: FakeStack, qr_url: str, redis_server: Redis, s3: S3, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Kubernetes stack's `ops` names in-cluster Services: `status --stack` runs the checks as a
    Job like the operations do (`where_checks_run`); `--where local` still checks from here (a
    port-forward), and `--database-url` with the cluster default is refused in one line."""
    requests, job = status_jobs(monkeypatch, qr_url, redis_server.url, s3.endpoint)

    outputs = stack.outputs()
    outputs["ops"]["qr"]["target"] = "kubernetes"
    stack.set_outputs(outputs)
    stack.on_up = ProgramModel(job_runner=job)
    code, report = stack_status()
    [request] = requests
    assert request["task"] == "status" and "--exit-zero" in request["args"]
    assert code == 0 and by_name(report)["database"]["status"] == "pass"
    assert by_name(report)["stack:maintenance"]["status"] == "pass"  # run here, beside the Job
    code, report = stack_status("--where", "local")
    assert len(requests) == 1 and code == 0  # no second Job
    assert by_name(report)["stack:maintenance"]["status"] == "pass"
    result = run_status("--stack", "dev", "--app", "qr", "--database-url", qr_url)
    assert result.exit_code == 2 and len(requests) == 1
    assert result.stderr.strip() == (
        "error: --database-url (or env OPSPLANE_DATABASE_URL): the checks of stack 'dev' run in "
        "the cluster; add --where local to check through it"
    )


# --- operations verify themselves ----------------------------------------------------------------


def operation(*args: str) -> Any:
    return CliRunner().invoke(cli_app, list(args))


def test_maintenance_off_reports_the_checks_it_ran(stack: FakeStack) -> None:
    assert operation("maintenance", "on", "--stack", "dev", "--app", "qr", "--yes").exit_code == 0
    result = operation("maintenance", "off", "--stack", "dev", "--app", "qr", "--json")
    assert result.exit_code == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["deployed"] is False
    checks = by_name(document["status"])
    assert checks["stack:maintenance"]["status"] == "pass"
    assert checks["database"]["status"] == checks["health:api"]["status"] == "pass"


def test_maintenance_off_with_a_failing_app_exits_1_with_next_step(
    stack: FakeStack, api: HttpService
) -> None:
    operation("maintenance", "on", "--stack", "dev", "--app", "qr", "--yes")
    api.code = 503
    result = operation("maintenance", "off", "--stack", "dev", "--app", "qr", "--json")
    assert result.exit_code == 1
    document = json.loads(result.stdout)  # the complete report is still printed
    assert by_name(document["status"])["health:api"]["status"] == "fail"
    [line] = [e for e in result.stderr.strip().splitlines() if e.startswith("error:")]
    assert line.startswith(
        "error: maintenance off finished, but status FAILs after it (health:api)"
    )
    assert "the database parts are already safe" in line
    assert "next: docs/runbook.md#alert-backenddown" in line
    assert stack.outputs()["ops"]["qr"]["maintenance"] is False  # the operation itself is done


def test_rotate_reports_the_checks_it_ran_in_text(stack: FakeStack) -> None:
    result = operation(
        "rotate", "--stack", "dev", "--app", "qr", "--secret", "redis-password", "--yes"
    )
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert any(line.startswith("PASS") and "stack:rotation" in line for line in lines)
    assert lines[-1].startswith("qr on dev: ") and " 0 fail " in lines[-1]
    assert "rotated qr/redis-password" in result.stderr


def test_rotate_then_a_failing_check_exits_1(stack: FakeStack, api: HttpService) -> None:
    api.code = 500
    result = operation(
        "rotate", "--stack", "dev", "--app", "qr", "--secret", "redis-password", "--yes", "--json"
    )
    assert result.exit_code == 1
    assert json.loads(result.stdout)["status"]["failed"] is True
    assert "rotate finished, but status FAILs" in result.stderr
    assert json.loads(stack.config[ROTATION_KEY])["qr"]["redis-password"]["epoch"] == 1


@pytest.mark.parametrize(
    "command",
    [("maintenance", "off"), ("rotate", "--secret", "redis-password", "--yes")],
    ids=["maintenance-off", "rotate"],
)
def test_on_kubernetes_an_operation_checks_the_app_from_inside_the_cluster(
    stack: FakeStack, qr_url: str, redis_server: Redis, s3: S3,
    monkeypatch: pytest.MonkeyPatch, command: tuple[str, ...],
) -> None:  # fmt: skip
    """Its `ops` addresses are in-cluster names: checked from here they would FAIL whatever the
    app's health, so the checks run as a Job (`--where cluster`) without being asked."""
    requests, job = status_jobs(monkeypatch, qr_url, redis_server.url, s3.endpoint)

    outputs = stack.outputs()
    outputs["ops"]["qr"]["target"] = "kubernetes"
    stack.set_outputs(outputs)
    stack.on_up = ProgramModel(job_runner=job)
    if command[0] == "maintenance":
        assert (
            operation("maintenance", "on", "--stack", "dev", "--app", "qr", "--yes").exit_code == 0
        )
    result = operation(*command, "--stack", "dev", "--app", "qr", "--json")
    assert result.exit_code == 0, result.stderr
    [request] = requests
    assert request["task"] == "status" and "--exit-zero" in request["args"]
    checks = by_name(json.loads(result.stdout)["status"])
    assert checks["database"]["status"] == checks["health:api"]["status"] == "pass"


def test_restore_reports_the_checks_it_ran(stack: FakeStack, s3: S3, qr_url: str) -> None:
    from automation.tasks.backup import BackupOptions, run_backup

    outputs = stack.outputs()
    bucket = outputs["ops"]["qr"]["backup"]["bucket"]
    with pytest.MonkeyPatch.context() as env:
        env.setenv("AWS_ENDPOINT_URL", s3.endpoint)
        run_backup(BackupOptions(bucket=bucket, database_url=qr_url, app="qr"))
    result = operation(
        "restore", "--stack", "dev", "--app", "qr", "--backup", "latest", "--yes", "--json"
    )
    assert result.exit_code == 0, result.stderr
    document = json.loads(result.stdout)
    checks = by_name(document["status"])
    assert document["database"]["pre_restore"]
    # the previous database is kept: status sees it, as a WARN (drop it with restore --cleanup)
    assert checks["database:leftovers"]["status"] == "warn"
    assert document["database"]["pre_restore"] in checks["database:leftovers"]["detail"]
    assert checks["database"]["status"] == "pass"
    assert checks["stack:maintenance"]["status"] == "pass"


# --- every app of a stack (`--stack S` without `--app`) ------------------------------------------


@pytest.fixture
def two_apps(stack: FakeStack, s3: S3) -> Iterator[tuple[FakeStack, HttpService]]:
    """The stack with a second app, `qr2`: the same real services, its own backups and its own
    health server (returned, to fail it)."""
    outputs = stack.outputs()
    second = copy.deepcopy(outputs["ops"]["qr"])
    bucket = second["backup"]["bucket"]
    keys = put_run(s3.client(), bucket, "qr2", run_id_ago(hours=1), ("db", "redis"))
    tag_drill(s3.client(), bucket, keys["db"], "ok", run_id_ago(minutes=30), 5)
    api2 = HttpService()
    second["health"] = {"api": api2.url()}
    outputs["ops"]["qr2"] = second
    stack.set_outputs(outputs)
    yield stack, api2
    api2.close()


def test_stack_form_without_app_reports_every_app(
    two_apps: tuple[FakeStack, HttpService],
) -> None:
    _, api2 = two_apps
    result = run_status("--stack", "dev", "--json")
    assert result.exit_code == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["stack"] == "dev" and document["status"] == "warn"  # alerts not checked
    assert document["failed"] is False
    assert [r["app"] for r in document["apps"]] == ["qr", "qr2"]
    for report in document["apps"]:  # each the single-app shape
        checks = by_name(report)
        assert report["stack"] == "dev"
        assert {"health:api", "database", "backup:db", "stack:maintenance"} <= set(checks)
        # (database:leftovers may WARN: a restore test before this one keeps a pre-restore copy)
        fails = {n for n, c in checks.items() if c["status"] == "fail"}
        assert not fails and checks["health:api"]["status"] == "pass", checks
        assert checks["alerts"]["status"] == "warn"
    assert document["counts"]["fail"] == 0 and document["counts"]["warn"] >= 2
    single = json.loads(run_status("--stack", "dev", "--app", "qr2", "--json").stdout)
    assert "apps" not in single and single["app"] == "qr2"  # --app keeps the single-app shape
    # the worst app decides the exit code; text: one section per app, checks named as today
    api2.code = 500
    result = run_status("--stack", "dev")
    assert result.exit_code == 1
    lines = result.stdout.strip().splitlines()
    assert lines[-1].startswith("dev: 2 app(s) (qr warn, qr2 fail): ")
    sections = [line for line in lines if line.startswith(("qr on dev:", "qr2 on dev:"))]
    assert [s.split(":")[0] for s in sections] == ["qr on dev", "qr2 on dev"]
    fails = [line for line in lines if line.startswith("FAIL")]
    assert len(fails) == 1 and "health:api" in fails[0]
    assert json.loads(run_status("--stack", "dev", "--json").stdout)["failed"] is True


def test_stack_form_without_app_refuses_one_apps_options(stack: FakeStack, qr_url: str) -> None:
    result = run_status("--stack", "dev", "--database-url", qr_url)
    assert result.exit_code == 2
    assert result.stderr.strip() == (
        "error: --database-url (or env OPSPLANE_DATABASE_URL): it is one app's; add --app A to "
        "check that app with it"
    )
    result = run_status("--stack", "dev", "--pool-size", "5")
    assert result.exit_code == 2 and "--pool-size: it is one app's" in result.stderr
    result = run_status("--database-url", qr_url)  # the explicit form names its app
    assert result.exit_code == 2
    assert result.stderr.strip().startswith("error: --app: the explicit form checks one app")
    stack.set_outputs({"ops": {}})
    result = run_status("--stack", "dev")
    assert result.exit_code == 2 and "its ops output lists no app" in result.stderr


def test_stack_form_without_app_in_the_cluster_runs_one_job_per_app(
    two_apps: tuple[FakeStack, HttpService], qr_url: str, redis_server: Redis, s3: S3,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    stack, _ = two_apps
    requests, job = status_jobs(monkeypatch, qr_url, redis_server.url, s3.endpoint)

    stack.on_up = ProgramModel(job_runner=job)
    result = run_status("--stack", "dev", "--where", "cluster", "--json")
    assert result.exit_code == 0, result.stderr
    assert [r["app"] for r in requests] == ["qr", "qr2"]  # one Job each, one after the other
    document = json.loads(result.stdout)
    for report in document["apps"]:
        checks = by_name(report)
        assert checks["database"]["status"] == checks["stack:maintenance"]["status"] == "pass"


def test_stack_form_without_app_watch_refreshes_every_app(
    two_apps: tuple[FakeStack, HttpService], monkeypatch: pytest.MonkeyPatch
) -> None:
    import automation.commands.status as command

    real_sleep, naps = command.time.sleep, []

    def sleep(seconds: float) -> None:
        if seconds != 7:  # another thread's sleep (the HTTP servers)
            return real_sleep(seconds)
        naps.append(seconds)
        if len(naps) == 3:
            raise KeyboardInterrupt

    monkeypatch.setattr(command.time, "sleep", sleep)
    result = run_status("--stack", "dev", "--json", "--watch", "7")
    assert result.exit_code == 0, result.stderr
    documents, text, decoder = [], result.stdout.strip(), json.JSONDecoder()
    while text:  # one JSON document per report
        document, end = decoder.raw_decode(text)
        documents.append(document)
        text = text[end:].strip()
    assert len(documents) == 3  # the first report and two refreshes
    assert all([r["app"] for r in d["apps"]] == ["qr", "qr2"] for d in documents)
