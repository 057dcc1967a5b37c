"""`status`, explicit form, against real services: pgserver PostgreSQL, redis-server, moto S3 over
HTTP, and local HTTP servers. Healthy -> every check PASSes, exit 0; each dependency taken down,
hung or degraded one at a time -> its check WARNs or FAILs with a next step while the others are
still reported; a hung dependency never makes status wait past its timeout."""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import psycopg
import pytest

from automation.tasks import pgswap
from automation.tasks.checks import database as db_check
from automation.tasks.replay.ledger import DbLedger, Outcome
from contract import backup_layout as bf
from tests.services import S3, Postgres
from tests.status import (
    HttpService,
    by_name,
    closed_port,
    put_run,
    run_id_ago,
    run_status,
    silent_server,
    tag_drill,
)
from tests.tasks import Redis, redis_server_fixture  # noqa: F401  (the redis_server fixture)
from tests.tasks.test_restore_support import create_qr


@dataclass
class Env:
    """One healthy app: its database, Redis, backups, API and Alertmanager."""

    url: str
    redis: Redis
    s3: S3
    bucket: str
    api: HttpService
    alertmanager: HttpService
    db_key: str

    def args(self, **replace: str) -> list[str]:
        values = {
            "--database-url": self.url,
            "--redis-url": self.redis.url,
            "--bucket": self.bucket,
            "--health-url": f"api={self.api.url()}",
            "--alertmanager-url": self.alertmanager.url(""),
            "--webhook-table": "webhook_logs",
        }
        values.update(replace)
        flat = ["--app", "qr", "--json"]
        for option, value in values.items():
            if value:
                flat += [option, value]
        return flat


def deliver_every_failed_event(url: str) -> None:
    """What a finished `replay` leaves: the ledger records each failed event as delivered."""
    with psycopg.connect(url) as conn:
        ids = [
            r[0] for r in conn.execute("SELECT event_id FROM webhook_logs WHERE status = 'failed'")
        ]
    ledger = DbLedger(url, "replay-test", writable=True)
    try:
        for event_id in ids:
            ledger.begin(event_id)
            ledger.finish(Outcome(event_id, delivered=True, attempts=1, status_code=200))
    finally:
        ledger.close()


@pytest.fixture(scope="module")
def qr_url(postgres: Postgres) -> str:
    url = postgres.create_database("qr")
    create_qr(url, rows=60)
    deliver_every_failed_event(url)
    return url


@pytest.fixture
def env(qr_url: str, redis_server: Redis, s3: S3) -> Iterator[Env]:
    bucket = s3.create_bucket("status")
    keys = put_run(s3.client(), bucket, "qr", run_id_ago(hours=2), ("db", "redis"))
    tag_drill(s3.client(), bucket, keys["db"], "ok", run_id_ago(hours=1), 42.0)
    api, alertmanager = HttpService(), HttpService()
    alertmanager.alerts = []
    try:
        yield Env(qr_url, redis_server, s3, bucket, api, alertmanager, keys["db"])
    finally:
        api.close()
        alertmanager.close()


def status_json(*args: str) -> tuple[int, dict]:
    result = run_status(*args)
    assert "Traceback" not in result.stderr
    assert result.stdout, (result.exit_code, result.stderr, result.exception)
    return result.exit_code, json.loads(result.stdout)


def assert_others_pass(checks: dict[str, dict], *, except_: str) -> None:
    """Every check but the ones named `except_…` is still reported and PASSes."""
    others = {n: c["status"] for n, c in checks.items() if not n.startswith(except_)}
    groups = {"health:api", "database", "redis", "backup:db", "alerts"}
    assert {g for g in groups if not g.startswith(except_)} <= set(others)
    assert set(others.values()) == {"pass"}, others


# --- healthy -------------------------------------------------------------------------------------


def test_healthy_app_every_check_passes_exit_0(env: Env) -> None:
    code, report = status_json(*env.args())
    checks = by_name(report)
    assert code == 0
    assert {c["status"] for c in checks.values()} == {"pass"}, checks
    assert set(checks) >= {
        "health:api", "database", "database:connections", "database:idle-in-transaction",
        "database:longest-query", "database:leftovers", "redis", "redis:memory",
        "redis:evictions", "redis:save", "backup:db", "backup:redis", "backup:drill", "webhooks",
        "alerts",
    }  # fmt: skip
    assert report["failed"] is False and report["status"] == "pass"
    assert checks["database"]["detail"].startswith("PostgreSQL 16")
    assert "HTTP 200" in checks["health:api"]["detail"]
    assert "PONG" in checks["redis"]["detail"]
    assert "restored in 42.0 s (RTO 3600 s)" in checks["backup:drill"]["detail"]
    assert all(c["next"] is None for c in checks.values())
    assert env.redis.password not in json.dumps(report)


def test_text_output_is_one_line_per_check_and_a_summary(env: Env) -> None:
    args = [a for a in env.args() if a != "--json"]
    result = run_status(*args)
    lines = result.stdout.strip().splitlines()
    assert result.exit_code == 0
    assert all(line.split()[0] == "PASS" for line in lines[:-1])
    assert lines[-1].startswith("qr: ") and " 0 fail " in lines[-1]


def test_deep_adds_clients_top_statements_and_redis_memory(env: Env) -> None:
    code, report = status_json(*env.args(), "--deep")
    checks = by_name(report)
    assert code == 0
    assert "opsplane-status" in checks["database:clients"]["detail"]
    assert checks["database:top-statements"]["detail"] == "pg_stat_statements is not installed"
    assert "dataset.bytes" in checks["redis:memory-breakdown"]["detail"]


# --- PostgreSQL down, hung, degraded -------------------------------------------------------------


def test_database_down_fails_with_next_step_others_reported(env: Env) -> None:
    code, report = status_json(
        *env.args(**{"--database-url": f"postgresql://qr@127.0.0.1:{closed_port()}/qr"})
    )
    checks = by_name(report)
    assert code == 1
    assert checks["database"]["status"] == "fail"
    assert "unreachable" in checks["database"]["detail"]
    assert checks["database"]["next"] == "docs/runbook.md#alert-databasedown"
    # the webhook check needs the database too: it fails on its own line, with its own next step
    assert checks["webhooks"]["status"] == "fail"
    assert_others_pass({n: c for n, c in checks.items() if n != "webhooks"}, except_="database")


def test_database_hung_times_out_within_the_timeout(env: Env) -> None:
    with silent_server() as port:
        started = time.monotonic()
        code, report = status_json(
            *env.args(**{"--database-url": f"postgresql://qr@127.0.0.1:{port}/qr"}),
            "--timeout", "1",
        )  # fmt: skip
        elapsed = time.monotonic() - started
    checks = by_name(report)
    assert code == 1
    assert checks["database"] == {
        "name": "database",
        "status": "fail",
        "detail": "timed out after 1 s",
        "next": "docs/runbook.md#alert-databasedown",
    }
    assert elapsed < 1 + 1.0, elapsed
    assert checks["redis"]["status"] == "pass" and checks["health:api"]["status"] == "pass"


def test_idle_in_transaction_and_long_query_warn(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(db_check, "IDLE_TX_SECONDS", 1)
    monkeypatch.setattr(db_check, "LONG_QUERY_WARN", 0.5)
    idle = psycopg.connect(env.url)
    idle.execute("SELECT 1")  # a transaction left open
    busy = psycopg.connect(env.url, autocommit=True)

    def long_query() -> None:
        with contextlib.suppress(psycopg.errors.QueryCanceled):  # cancelled below
            busy.execute("SELECT pg_sleep(4)")

    sleeper = threading.Thread(target=long_query, daemon=True)
    sleeper.start()
    try:
        time.sleep(1.5)
        code, report = status_json(*env.args())
    finally:
        busy.cancel()
        sleeper.join(timeout=5)
        busy.close()
        idle.close()
    checks = by_name(report)
    assert code == 0  # WARNs alone exit 0
    assert checks["database:idle-in-transaction"]["status"] == "warn"
    assert checks["database:idle-in-transaction"]["next"].endswith("#status-idle-in-transaction")
    assert checks["database:longest-query"]["status"] == "warn"
    assert checks["database:longest-query"]["detail"].split()[1] == "s"


def test_connections_over_the_pool_warn(env: Env) -> None:
    extra = [psycopg.connect(env.url) for _ in range(3)]
    try:
        code, report = status_json(*env.args(), "--pool-size", "2")
    finally:
        for conn in extra:
            conn.close()
    check = by_name(report)["database:connections"]
    assert code == 0
    assert check["status"] == "warn" and "(pool 2)" in check["detail"]
    assert check["next"].endswith("#alert-databaseconnectionpoolexhausted")


def test_leftover_restore_database_warns(env: Env, postgres: Postgres) -> None:
    live = env.url.split("/")[3].split("?")[0]
    leftover = bf.throwaway_name(live, bf.KIND_PRE_RESTORE, bf.throwaway_stamp())
    with psycopg.connect(postgres.url(), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{leftover}"')
    try:
        code, report = status_json(*env.args())
    finally:
        with psycopg.connect(postgres.url(), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE "{leftover}"')
    check = by_name(report)["database:leftovers"]
    assert code == 0
    assert check["status"] == "warn" and leftover in check["detail"]
    assert check["next"] == "docs/runbook.md#cleaning-up-after-restores"


def test_a_killed_drills_database_warns_and_one_being_built_is_named_apart(
    env: Env, postgres: Postgres
) -> None:
    """A `<db>_verify_*` left by a killed verify-backup is a leftover (issue 17, item 2); a
    restore target a running process claims is not one yet."""
    live = env.url.split("/")[3].split("?")[0]
    drill = bf.throwaway_name(live, bf.KIND_VERIFY, bf.throwaway_stamp())
    building = bf.throwaway_name(live, bf.KIND_RESTORE, bf.throwaway_stamp())
    with psycopg.connect(postgres.url(), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{drill}"')
        conn.execute(f'CREATE DATABASE "{building}"')
    try:
        with pgswap.Claim(postgres.url(), "restore") as claim:
            claim.take(building)
            code, report = status_json(*env.args())
    finally:
        with psycopg.connect(postgres.url(), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE "{drill}"')
            conn.execute(f'DROP DATABASE "{building}"')
    check = by_name(report)["database:leftovers"]
    assert code == 0 and check["status"] == "warn", check
    assert check["detail"].startswith("1 leftover restore database(s), ")
    assert check["detail"].endswith(f": {drill}; being built now: {building}")


# --- Redis down, hung, degraded ------------------------------------------------------------------


def test_redis_down_fails_others_reported(env: Env) -> None:
    code, report = status_json(*env.args(**{"--redis-url": f"redis://127.0.0.1:{closed_port()}"}))
    checks = by_name(report)
    assert code == 1
    assert checks["redis"]["status"] == "fail" and "refused" in checks["redis"]["detail"]
    assert checks["redis"]["next"] == "docs/runbook.md#alert-redisdown"
    assert_others_pass(checks, except_="redis")


def test_redis_wrong_password_fails(env: Env) -> None:
    code, report = status_json(
        *env.args(**{"--redis-url": f"redis://:wrong@127.0.0.1:{env.redis.port}"})
    )
    check = by_name(report)["redis"]
    assert code == 1 and check["status"] == "fail"
    assert "wrong" not in check["detail"]


def test_redis_hung_times_out(env: Env) -> None:
    with silent_server() as port:
        started = time.monotonic()
        code, report = status_json(
            *env.args(**{"--redis-url": f"redis://127.0.0.1:{port}"}), "--timeout", "1"
        )
        elapsed = time.monotonic() - started
    check = by_name(report)["redis"]
    assert code == 1 and check["detail"].endswith("timed out after 1 s"), check
    assert elapsed < 2.0, elapsed


def test_redis_near_maxmemory_and_evicting_warns_then_fails(env: Env) -> None:
    env.redis.cli("CONFIG", "SET", "maxmemory-policy", "allkeys-lru")
    fill = "for i = 1, 20000 do redis.call('SET', 'k' .. i, string.rep('x', 100)) end"
    env.redis.cli("EVAL", fill, "0")
    used = int(env.redis.cli("INFO", "memory").split("used_memory:")[1].split()[0])
    env.redis.cli("CONFIG", "SET", "maxmemory", str(int(used / 0.85)))
    code, report = status_json(*env.args())
    checks = by_name(report)
    assert code == 0
    assert checks["redis:memory"]["status"] == "warn", checks["redis:memory"]
    assert checks["redis:memory"]["next"].endswith("#status-redis-memory")
    env.redis.cli("CONFIG", "SET", "maxmemory", str(used - 200_000))  # forces evictions
    env.redis.cli("SET", "one-more", "x" * 1000)
    code, report = status_json(*env.args())
    checks = by_name(report)
    assert checks["redis:evictions"]["status"] == "warn"
    assert checks["redis:memory"]["status"] == "fail" and code == 1


# --- health endpoints ----------------------------------------------------------------------------


def test_health_500_fails_and_slow_warns(env: Env) -> None:
    env.api.code = 503
    code, report = status_json(*env.args())
    check = by_name(report)["health:api"]
    assert code == 1 and check["status"] == "fail" and "HTTP 503" in check["detail"]
    assert check["next"] == "docs/runbook.md#alert-backenddown"
    env.api.code, env.api.delay = 200, 1.2
    code, report = status_json(*env.args())
    check = by_name(report)["health:api"]
    assert code == 0 and check["status"] == "warn" and "slower than 1 s" in check["detail"]


def test_health_server_that_never_answers_returns_within_timeout_plus_one(env: Env) -> None:
    with silent_server() as port:
        started = time.monotonic()
        code, report = status_json(
            *env.args(**{"--health-url": f"api=http://127.0.0.1:{port}/health"}),
            "--timeout", "2",
        )  # fmt: skip
        elapsed = time.monotonic() - started
    checks = by_name(report)
    assert code == 1
    assert checks["health:api"]["status"] == "fail"
    assert checks["health:api"]["detail"].endswith("timed out after 2 s")
    assert elapsed < 2 + 1, elapsed
    assert_others_pass(checks, except_="health:api")


# --- backups -------------------------------------------------------------------------------------


def test_no_backup_fails_db_and_warns_drill(env: Env, s3: S3) -> None:
    empty = s3.create_bucket("empty")
    code, report = status_json(*env.args(**{"--bucket": empty}))
    checks = by_name(report)
    assert code == 1
    assert checks["backup:db"]["status"] == "fail"
    assert "no complete backup of db" in checks["backup:db"]["detail"]
    assert checks["backup:db"]["next"] == "docs/runbook.md#alert-backupmissing"
    assert checks["backup:drill"]["status"] == "warn"
    assert checks["backup:redis"]["status"] == "warn"  # expected (a Redis is given), none yet
    assert_others_pass(checks, except_="backup")


def test_stale_backup_warns_past_1_1x_and_fails_past_2x(env: Env, s3: S3) -> None:
    bucket = s3.create_bucket("stale")
    keys = put_run(s3.client(), bucket, "qr", run_id_ago(hours=30), ("db", "redis"))
    tag_drill(s3.client(), bucket, keys["db"], "ok", run_id_ago(hours=29), 10)
    code, report = status_json(*env.args(**{"--bucket": bucket}))
    checks = by_name(report)
    assert code == 1
    assert checks["backup:db"]["status"] == "warn"  # 30 h > 1.1 x 24 h
    assert "past 1.1x the schedule" in checks["backup:db"]["detail"]
    assert checks["backup:redis"]["status"] == "fail"  # 30 h > 2 x 6 h
    put_run(s3.client(), bucket, "qr", run_id_ago(hours=50), ("db",))  # older: changes nothing
    put_run(s3.client(), bucket, "qr", run_id_ago(hours=1), ("redis",))
    code, report = status_json(*env.args(**{"--bucket": bucket}))
    checks = by_name(report)
    assert (checks["backup:db"]["status"], checks["backup:redis"]["status"]) == ("warn", "pass")
    assert code == 0


def test_incomplete_run_does_not_count(env: Env, s3: S3) -> None:
    bucket = s3.create_bucket("partial")
    put_run(s3.client(), bucket, "qr", run_id_ago(hours=60), ("db",))
    s3.client().put_object(
        Bucket=bucket, Key=f"backups/qr/{run_id_ago(hours=1)}/db.dump", Body=b"PGDMP"
    )  # no manifest: an interrupted run
    _, report = status_json(*env.args(**{"--bucket": bucket}))
    assert by_name(report)["backup:db"]["status"] == "fail"


def test_failed_drill_fails_and_slow_drill_warns(env: Env, s3: S3) -> None:
    bucket = s3.create_bucket("drill")
    keys = put_run(s3.client(), bucket, "qr", run_id_ago(hours=1), ("db", "redis"))
    tag_drill(s3.client(), bucket, keys["db"], "failed", run_id_ago(minutes=30), 12)
    code, report = status_json(*env.args(**{"--bucket": bucket}))
    check = by_name(report)["backup:drill"]
    assert code == 1 and check["status"] == "fail" and "failed" in check["detail"]
    assert check["next"] == "docs/runbook.md#alert-restoredrillfailed"
    tag_drill(s3.client(), bucket, keys["db"], "ok", run_id_ago(minutes=30), 700)
    code, report = status_json(*env.args(**{"--bucket": bucket}), "--rto-minutes", "10")
    check = by_name(report)["backup:drill"]
    assert code == 0 and check["status"] == "warn" and "over RTO" in check["detail"]


def test_a_drill_under_a_tenth_of_a_second_still_reports_its_time(env: Env, s3: S3) -> None:
    """`verify-backup` tags "0.0" for a tiny database: a time, not a missing one (CI once saw
    the real drill below take under 0.05 s and the time vanish from the detail)."""
    bucket = s3.create_bucket("drill")
    keys = put_run(s3.client(), bucket, "qr", run_id_ago(hours=1), ("db", "redis"))
    tag_drill(s3.client(), bucket, keys["db"], "ok", run_id_ago(minutes=30), 0.01)
    code, report = status_json(*env.args(**{"--bucket": bucket}))
    check = by_name(report)["backup:drill"]
    assert code == 0 and check["status"] == "pass", check
    assert "restored in 0.0 s (RTO " in check["detail"], check


def test_s3_unreachable_fails_the_backup_check(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{closed_port()}")
    code, report = status_json(*env.args(), "--timeout", "2")
    check = by_name(report)["backup"]
    assert code == 1 and check["status"] == "fail"
    assert "unreachable" in check["detail"] and check["next"].endswith("#alert-backupmissing")
    assert_others_pass(by_name(report), except_="backup")


def test_hung_s3_times_out_and_the_other_checks_are_reported(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An S3 endpoint that accepts and never answers: `backup` FAILs "timed out after N s" (the
    runner's deadline, or the client's own timeout: one attempt, no retry) within timeout + 1 s."""
    with silent_server() as port:
        monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{port}")
        started = time.monotonic()
        code, report = status_json(*env.args(), "--timeout", "2")
        elapsed = time.monotonic() - started
    checks = by_name(report)
    assert code == 1
    assert checks["backup"]["status"] == "fail"
    assert checks["backup"]["detail"].endswith("timed out after 2 s"), checks["backup"]
    assert checks["backup"]["next"].endswith("#alert-backupmissing")
    assert elapsed < 2 + 1, elapsed
    assert_others_pass(checks, except_="backup")


def test_the_s3_client_of_status_makes_one_attempt_within_the_timeout(env: Env) -> None:
    """botocore's `retries.max_attempts` counts retries, not attempts: the backup check's client
    is one attempt in all (`total_max_attempts`), so a hung endpoint frees the check's thread at
    the timeout, not at twice it (under `--watch` such threads would pile up)."""
    from automation.tasks.checks import backups
    from automation.tasks.checks.model import StatusTargets

    with silent_server() as port:
        endpoint = f"http://127.0.0.1:{port}"
        targets = StatusTargets(app="qr", bucket=env.bucket, s3_endpoint=endpoint)
        backups.client_for(targets, 1.0)  # boto3 loaded before the clock starts
        started = time.monotonic()
        [check] = backups.run(targets, 1.0)
        elapsed = time.monotonic() - started
    assert check.status == "fail" and check.name == "backup"
    assert check.detail == f"s3://{env.bucket}/: timed out after 1 s"
    assert elapsed < 1.8, elapsed  # a second attempt would take it past 2 s


def test_real_drill_restore_time_is_read_back(postgres: Postgres, s3: S3, env: Env) -> None:
    from automation.tasks.backup import BackupOptions, run_backup
    from automation.tasks.verify import verify_backup

    bucket = s3.create_bucket("real")
    run_backup(BackupOptions(bucket=bucket, database_url=env.url, app="qr"))
    verify_backup(env.url, bucket, app="qr")
    _, report = status_json(*env.args(**{"--bucket": bucket}), "--timeout", "20")
    check = by_name(report)["backup:drill"]
    assert check["status"] == "pass" and "restored in" in check["detail"], check


# --- webhooks and alerts -------------------------------------------------------------------------


def test_failed_webhooks_not_in_the_ledger_warn(postgres: Postgres, env: Env) -> None:
    url = postgres.create_database("qrwh")
    create_qr(url, rows=60)
    code, report = status_json(*env.args(**{"--database-url": url}))
    check = by_name(report)["webhooks"]
    with psycopg.connect(url) as conn:
        failed = conn.execute(
            "SELECT count(*) FROM webhook_logs WHERE status = 'failed'"
        ).fetchone()
    assert code == 0 and check["status"] == "warn"
    assert check["detail"].startswith(f"{failed[0]} failed event(s) not yet delivered")
    assert check["next"] == "docs/runbook.md#webhook-replay"
    deliver_every_failed_event(url)
    _, report = status_json(*env.args(**{"--database-url": url}))
    assert by_name(report)["webhooks"]["status"] == "pass"


def test_firing_alerts_grouped_by_priority(env: Env) -> None:
    def alert(name: str, priority: str, app: str = "qr") -> dict:
        return {"labels": {"alertname": name, "priority": priority, "app": app}}

    env.alertmanager.alerts = [alert("HighLatency", "P2"), alert("BackendDown", "P2", "quickbite")]
    code, report = status_json(*env.args())
    check = by_name(report)["alerts"]
    assert code == 0 and check["status"] == "warn"
    assert check["detail"] == "1 firing: P2: HighLatency"
    assert check["next"] == "docs/runbook.md#alert-highlatency"
    env.alertmanager.alerts.append(alert("DatabaseDown", "P1"))
    code, report = status_json(*env.args())
    check = by_name(report)["alerts"]
    assert code == 1 and check["status"] == "fail"
    assert check["detail"] == "2 firing: P1: DatabaseDown; P2: HighLatency"
    assert check["next"] == "docs/runbook.md#alert-databasedown"


def test_watchdog_and_info_inhibitor_are_not_an_apps_alert(env: Env) -> None:
    """kube-prometheus-stack's always-firing `Watchdog` and `InfoInhibitor` (severity none, no
    `app` label) would otherwise count for every app and WARN forever."""
    env.alertmanager.alerts = [
        {"labels": {"alertname": "Watchdog", "severity": "none"}},
        {"labels": {"alertname": "InfoInhibitor", "severity": "none", "namespace": "qr"}},
    ]
    code, report = status_json(*env.args())
    check = by_name(report)["alerts"]
    assert code == 0 and check["status"] == "pass" and check["detail"] == "no alert firing"
    env.alertmanager.alerts.append({"labels": {"alertname": "NodeDiskFull", "severity": "warning"}})
    code, report = status_json(*env.args())
    assert by_name(report)["alerts"]["detail"] == "1 firing: warning: NodeDiskFull"


def test_without_alertmanager_prometheus_firing_alerts_are_read(env: Env) -> None:
    env.alertmanager.alerts = [
        {"labels": {"alertname": "RedisDown", "priority": "P1", "app": "qr"}, "state": "firing"},
        {"labels": {"alertname": "HighLatency", "priority": "P2", "app": "qr"}, "state": "pending"},
    ]
    code, report = status_json(
        *env.args(**{"--alertmanager-url": ""}), "--prometheus-url", env.alertmanager.url("")
    )
    check = by_name(report)["alerts"]
    assert code == 1 and check["detail"] == "1 firing: P1: RedisDown"
    assert check["next"] == "docs/runbook.md#alert-redisdown"


def test_alertmanager_unreachable_warns(env: Env) -> None:
    code, report = status_json(
        *env.args(**{"--alertmanager-url": f"http://127.0.0.1:{closed_port()}"})
    )
    check = by_name(report)["alerts"]
    assert code == 0 and check["status"] == "warn"
    assert check["detail"].startswith("alerts not readable from http://127.0.0.1:")


def test_hung_alertmanager_warns_timed_out_and_the_other_checks_are_reported(env: Env) -> None:
    """An Alertmanager that accepts and never answers: `alerts` WARNs "timed out after N s" (a
    WARN as when it is down: the app itself may be fine), within timeout + 1 s."""
    with silent_server() as port:
        started = time.monotonic()
        code, report = status_json(
            *env.args(**{"--alertmanager-url": f"http://127.0.0.1:{port}"}), "--timeout", "2"
        )
        elapsed = time.monotonic() - started
    checks = by_name(report)
    assert checks["alerts"]["status"] in ("warn", "fail")
    assert checks["alerts"]["detail"].endswith("timed out after 2 s"), checks["alerts"]
    assert checks["alerts"]["next"]
    assert code == (1 if checks["alerts"]["status"] == "fail" else 0)
    assert elapsed < 2 + 1, elapsed
    assert_others_pass(checks, except_="alerts")


# --- input ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "names"),
    [
        (["--app", "qr"], "nothing to check"),
        (["--app", "qr", "--health-url", "api"], "--health-url"),
        (["--app", "qr", "--health-url", "api=ftp://x/health"], "--health-url"),
        (["--app", "qr", "--database-url", "mysql://x@h/db"], "--database-url"),
        (["--app", "qr", "--redis-url", "http://h:6379"], "--redis-url"),
        (["--app", "qr", "--bucket", "b", "--timeout", "0"], "--timeout"),
        (["--app", "qr", "--bucket", "b", "--timeout", "301"], "--timeout"),
        (["--app", "qr", "--bucket", "b", "--watch", "0.5"], "--watch"),
        (["--app", "qr", "--bucket", "b", "--where", "moon"], "--where"),
        (["--app", "qr", "--bucket", "b", "--where", "cluster"], "--where cluster needs --stack"),
    ],
)
def test_bad_input_exit_2_one_line(args: list[str], names: str) -> None:
    result = run_status(*args)
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and names in lines[0]
    assert result.stdout == ""


def test_a_webhook_table_of_another_shape_warns(postgres: Postgres, env: Env) -> None:
    url = postgres.create_database("other")
    with psycopg.connect(url) as conn:
        conn.execute("CREATE TABLE webhook_logs (id bigserial PRIMARY KEY, state text)")
    code, report = status_json(*env.args(**{"--database-url": url}))
    check = by_name(report)["webhooks"]
    assert code == 0 and check["status"] == "warn"
    assert check["detail"].startswith("webhook_logs is not shaped as expected: column")
