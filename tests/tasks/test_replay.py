"""Webhook replay end to end: real local receivers, embedded PostgreSQL, export files, the CLI."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from click.testing import Result
from typer.testing import CliRunner

from automation.tasks.replay.ledger import LEDGER_TABLE, FileLedger, file_ledger_path
from tests import schemas
from tests.receivers import Receiver, hmac_verifier, stripe_verifier
from tests.services import Postgres

SECRET = "whsec_replay_test_0123456789"
SECRET_ENV = "OPSPLANE_TEST_WEBHOOK_SECRET"
REPO = Path(__file__).resolve().parents[2]


# --- helpers ----------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def webhook_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(SECRET_ENV, SECRET)


def run_cli(*args: str) -> Result:
    from automation.cli import app

    return CliRunner().invoke(app, ["replay", *args])


def report_of(result: Result) -> dict[str, Any]:
    assert "Traceback" not in result.output, result.output
    return json.loads(result.stdout)


def error_line(result: Result) -> str:
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.output
    return lines[0]


def app_db(postgres: Postgres, *, stripe: bool, count: int = 30) -> str:
    """A QR (Stripe) or QuickBite (Razorpay) database with `count` webhook log rows."""
    url = postgres.create_database("replay")
    with psycopg.connect(url) as conn:
        conn.execute(schemas.QR_DDL if stripe else schemas.QUICKBITE_DDL)
        schemas.insert_webhook_logs(conn, count, stripe=stripe)
    return url


def logged_rows(url: str, where: str = "status = 'failed'") -> dict[str, bytes]:
    """Event id -> stored payload bytes, read independently of the replay code."""
    with psycopg.connect(url) as conn:
        rows = conn.execute(f"SELECT event_id, payload FROM webhook_logs WHERE {where}").fetchall()
    return {event_id: payload.encode() for event_id, payload in rows}


def ledger_rows(url: str) -> dict[str, tuple[str, int | None, int]]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            f"SELECT event_id, state, status_code, attempts FROM {LEDGER_TABLE}"
        ).fetchall()
    return {r[0]: (r[1], r[2], r[3]) for r in rows}


def stripe_args(receiver: Receiver, *source: str) -> list[str]:
    return [
        "--webhook-url",
        receiver.url,
        "--signing",
        "stripe",
        "--secret-env",
        SECRET_ENV,
        *source,
        "--rate-limit",
        "unlimited",
        "--yes",
        "--json",
    ]


def export_file(tmp_path: Path, count: int, *, jsonl: bool = True) -> tuple[Path, dict[str, bytes]]:
    """An export of `count` Stripe events; returns the path and id -> the bytes to expect."""
    events = [
        {
            "id": f"evt_file_{n:04d}",
            "object": "event",
            "created": 1_714_000_000 + n,
            "type": ["invoice.paid", "customer.subscription.updated"][n % 2],
            "data": {"object": {"amount": n * 100, "currency": "eur", "name": "Zoë"}},
        }
        for n in range(count)
    ]
    path = tmp_path / ("events.jsonl" if jsonl else "events.json")
    if jsonl:  # deliberately irregular spacing: the exact bytes must survive
        lines = [json.dumps(e, separators=(", ", ":"), ensure_ascii=False) for e in events]
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        return path, {e["id"]: line.encode() for e, line in zip(events, lines, strict=True)}
    path.write_text(json.dumps({"object": "list", "data": events, "has_more": False}, indent=2))
    return path, {}


@pytest.fixture
def stripe_receiver() -> Iterator[Receiver]:
    with Receiver(verify=stripe_verifier(SECRET)) as receiver:
        yield receiver


# --- delivery from the database ---------------------------------------------------------------


def test_stripe_replay_from_db_sends_failed_events_signed_with_identical_bytes(
    postgres: Postgres, stripe_receiver: Receiver
) -> None:
    url = app_db(postgres, stripe=True)
    failed = logged_rows(url)
    before = logged_rows(url, "true")

    report = report_of(run_cli(*stripe_args(stripe_receiver, "--from-db", url)))

    assert stripe_receiver.acked_ids() == set(failed)  # verified by stripe.Webhook
    assert stripe_receiver.bodies == failed
    assert stripe_receiver.status_counts() == {200: len(failed)}
    assert report["selected"] == report["delivered"] == len(failed) == 10
    assert report["ok"] and report["failed"] == {}
    assert ledger_rows(url) == {event_id: ("delivered", 200, 1) for event_id in failed}
    assert logged_rows(url, "true") == before  # the app's own rows are untouched


def test_rerun_delivers_nothing_twice_and_force_resends(
    postgres: Postgres, stripe_receiver: Receiver
) -> None:
    url = app_db(postgres, stripe=True)
    args = stripe_args(stripe_receiver, "--from-db", url)
    first = report_of(run_cli(*args))
    second = run_cli(*args)

    assert second.exit_code == 0
    again = report_of(second)
    assert (again["skipped_already_delivered"], again["to_send"], again["delivered"]) == (10, 0, 0)
    assert first["delivered"] == 10
    assert stripe_receiver.duplicates() == {}
    assert len(stripe_receiver.arrivals) == 10

    forced = report_of(run_cli(*args, "--force", "--id", "evt_000003"))
    assert forced["delivered"] == 1
    assert stripe_receiver.duplicates() == {"evt_000003": 2}


def test_hmac_replay_for_quickbite_uses_the_configured_header(postgres: Postgres) -> None:
    url = app_db(postgres, stripe=False)
    failed = logged_rows(url)
    with Receiver(verify=hmac_verifier(SECRET, "X-Razorpay-Signature")) as receiver:
        result = run_cli(
            "--webhook-url",
            receiver.url,
            "--signing",
            "hmac-sha256",
            "--secret-env",
            SECRET_ENV,
            "--from-db",
            url,
            "--yes",
            "--json",
            "--rate-limit",
            "unlimited",
        )
        assert result.exit_code == 0, result.output
    assert receiver.acked_ids() == set(failed)
    assert receiver.bodies == failed


def test_wrong_secret_is_reported_per_status_and_not_retried(
    postgres: Postgres, stripe_receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = app_db(postgres, stripe=True)
    monkeypatch.setenv(SECRET_ENV, "whsec_wrong")
    result = run_cli(*stripe_args(stripe_receiver, "--from-db", url))

    assert result.exit_code == 1
    report = report_of(result)
    assert report["failed"] == {"400": 10} and report["delivered"] == 0
    assert len(stripe_receiver.arrivals) == 10  # a 400 is final: one request per event
    assert "wrong secret" in error_line(result)
    assert "whsec_wrong" not in result.output and SECRET not in result.output
    assert {state for state, _, _ in ledger_rows(url).values()} == {"failed"}


def test_filters_select_exactly_the_right_events(
    postgres: Postgres, stripe_receiver: Receiver
) -> None:
    url = app_db(postgres, stripe=True, count=60)
    with psycopg.connect(url) as conn:
        since, until = conn.execute(
            "SELECT now() - interval '50 minutes', now() - interval '10 minutes'"
        ).fetchone()
        expected = {
            r[0]
            for r in conn.execute(
                """SELECT event_id FROM webhook_logs WHERE status = 'processed'
                   AND event_type LIKE 'invoice.%%' AND created_at >= %s AND created_at < %s""",
                (since, until),
            )
        }
    assert 0 < len(expected) < 20
    result = run_cli(
        *stripe_args(stripe_receiver, "--from-db", url),
        "--status",
        "processed",
        "--type",
        "invoice.*",
        "--since",
        since.isoformat(),
        "--until",
        until.isoformat(),
    )
    assert report_of(result)["delivered"] == len(expected)
    assert stripe_receiver.acked_ids() == expected

    ids = run_cli(
        *stripe_args(stripe_receiver, "--from-db", url),
        "--status",
        "any",
        "--id",
        "evt_000001",
        "--id",
        "evt_000002",
    )
    assert report_of(ids)["delivered"] == 2
    assert stripe_receiver.acked_ids() == expected | {"evt_000001", "evt_000002"}


def test_limit_sends_the_oldest_undelivered_first(
    postgres: Postgres, stripe_receiver: Receiver
) -> None:
    url = app_db(postgres, stripe=True)
    with psycopg.connect(url) as conn:
        oldest_first = [
            r[0]
            for r in conn.execute(
                "SELECT event_id FROM webhook_logs WHERE status='failed' ORDER BY created_at"
            )
        ]
    run_cli(*stripe_args(stripe_receiver, "--from-db", url), "--limit", "4")
    assert stripe_receiver.acked_ids() == set(oldest_first[:4])
    run_cli(*stripe_args(stripe_receiver, "--from-db", url), "--limit", "4")
    assert stripe_receiver.acked_ids() == set(oldest_first[:8])
    assert stripe_receiver.duplicates() == {}


def test_dry_run_lists_and_sends_nothing(postgres: Postgres, stripe_receiver: Receiver) -> None:
    url = app_db(postgres, stripe=True)
    report = report_of(run_cli(*stripe_args(stripe_receiver, "--from-db", url), "--dry-run"))
    assert sorted(e["id"] for e in report["events"]) == sorted(logged_rows(url))
    assert stripe_receiver.arrivals == []
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT to_regclass(%s)", (LEDGER_TABLE,)).fetchone()[0] is None


def test_column_mapping_reads_another_table_shape(
    postgres: Postgres, stripe_receiver: Receiver
) -> None:
    url = postgres.create_database("mapped")
    payload = '{"id":"evt_m1","object":"event","type":"invoice.paid"}'
    with psycopg.connect(url) as conn:
        conn.execute(
            "CREATE TABLE hooks (ext_id text, body bytea, kind text, state text, at timestamptz)"
        )
        conn.execute(
            "INSERT INTO hooks VALUES ('evt_m1', %s, 'invoice.paid', 'error', now())",
            (payload.encode(),),
        )
    result = run_cli(
        *stripe_args(stripe_receiver, "--from-db", url),
        "--table",
        "hooks",
        "--id-column",
        "ext_id",
        "--payload-column",
        "body",
        "--type-column",
        "kind",
        "--status-column",
        "state",
        "--created-column",
        "at",
        "--status",
        "error",
    )
    assert report_of(result)["delivered"] == 1
    assert stripe_receiver.bodies == {"evt_m1": payload.encode()}


# --- delivery from files ----------------------------------------------------------------------


def test_json_lines_export_sends_exact_line_bytes(
    tmp_path: Path, stripe_receiver: Receiver
) -> None:
    path, expected = export_file(tmp_path, 12)
    report = report_of(run_cli(*stripe_args(stripe_receiver, "--from-file", str(path))))
    assert report["delivered"] == 12
    assert stripe_receiver.bodies == expected
    states = FileLedger(path, "check", writable=False).states()
    assert states == dict.fromkeys(expected, "delivered")


def test_stripe_list_export_is_replayed_and_filtered(
    tmp_path: Path, stripe_receiver: Receiver
) -> None:
    path, _ = export_file(tmp_path, 10, jsonl=False)
    source = json.loads(path.read_text())["data"]
    result = run_cli(
        *stripe_args(stripe_receiver, "--from-file", str(path)),
        "--type",
        "customer.*",
        "--since",
        "1714000004",
    )
    expected = {
        e["id"]
        for e in source
        if e["type"].startswith("customer.") and e["created"] >= 1_714_000_004
    }
    assert report_of(result)["delivered"] == len(expected) == 3
    assert stripe_receiver.acked_ids() == expected
    for event_id, body in stripe_receiver.bodies.items():
        assert json.loads(body) == next(e for e in source if e["id"] == event_id)
        assert body.decode() in path.read_text()


# --- rate limits, 429, retries ----------------------------------------------------------------


def test_rate_limit_is_never_exceeded(tmp_path: Path) -> None:
    path, _ = export_file(tmp_path, 26)
    with Receiver(verify=stripe_verifier(SECRET), limit=(8, 1.0)) as receiver:
        args = stripe_args(receiver, "--from-file", str(path))
        args[args.index("--rate-limit") + 1] = "8/1s"
        report = report_of(run_cli(*args, "--concurrency", "8"))
    assert report["delivered"] == 26
    assert receiver.max_in_window(1.0) <= 8
    assert receiver.status_counts() == {200: 26}  # the limiter alone kept us under: no 429


def test_429_retry_after_pauses_all_workers(tmp_path: Path) -> None:
    path, _ = export_file(tmp_path, 16)
    retry_after = 0.5
    with Receiver(verify=stripe_verifier(SECRET), limit=(4, 0.3), retry_after=retry_after) as r:
        report = report_of(run_cli(*stripe_args(r, "--from-file", str(path)), "--concurrency", "4"))
    throttled = [a.at for a in r.arrivals if a.status == 429]
    assert report["delivered"] == 16 and r.duplicates() == {}
    assert throttled, "the receiver never throttled: the test proves nothing"
    for at in throttled:  # requests already in flight may land just after; then silence
        quiet = [a for a in r.arrivals if at + 0.1 < a.at < at + retry_after - 0.05]
        assert quiet == [], f"requests arrived during the Retry-After pause after {at}"


def test_5xx_and_timeouts_are_retried_other_4xx_are_not(tmp_path: Path) -> None:
    path, _ = export_file(tmp_path, 6)
    ids = sorted(json.loads(line)["id"] for line in path.read_text().splitlines())
    script: dict[str, list[int | str]] = {
        ids[0]: [503, 502],  # delivered on the 3rd attempt
        ids[1]: ["hang"],  # times out once, then delivered
        ids[2]: [422],  # final: reported, not retried
        ids[3]: [500, 500, 500],  # gives up after --max-attempts 3
    }
    receiver = Receiver(verify=stripe_verifier(SECRET), script=script, hang_seconds=1.5)
    with receiver:
        args = stripe_args(receiver, "--from-file", str(path))
        result = run_cli(*args, "--timeout", "0.4", "--max-attempts", "3", "--backoff", "0.05")
        assert result.exit_code == 1
        report = report_of(result)
        assert report["failed"] == {"422": 1, "500": 1}
        attempts = {e["id"]: e["attempts"] for e in report["failed_events"]}
        assert attempts == {ids[2]: 1, ids[3]: 3}
        assert receiver.acked_ids() == {ids[0], ids[1], ids[4], ids[5]}
        assert sum(a.event_id == ids[0] for a in receiver.arrivals) == 3
        assert "rerun" in error_line(result)

        rerun = report_of(run_cli(*args))  # the receiver is healthy now: only the 2 failed go
    assert (rerun["skipped_already_delivered"], rerun["delivered"]) == (4, 2)
    assert receiver.acked_ids() == set(ids) and receiver.duplicates() == {}


def test_unreachable_receiver_fails_with_exit_1(tmp_path: Path) -> None:
    path, _ = export_file(tmp_path, 2)
    receiver = Receiver().start()
    url = receiver.url
    receiver.stop()
    result = run_cli(
        "--webhook-url",
        url,
        "--signing",
        "stripe",
        "--secret-env",
        SECRET_ENV,
        "--from-file",
        str(path),
        "--yes",
        "--json",
        "--max-attempts",
        "2",
        "--backoff",
        "0.01",
        "--rate-limit",
        "unlimited",
    )
    assert result.exit_code == 1
    assert report_of(result)["failed"] == {"connection error": 2}


# --- a run killed midway ----------------------------------------------------------------------


def _spawn(args: list[str]) -> subprocess.Popen[bytes]:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.Popen(
        [sys.executable, "-m", "automation", "replay", *args],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _kill_after(proc: subprocess.Popen[bytes], receiver: Receiver, acks: int) -> None:
    deadline = time.monotonic() + 60
    while len(receiver.acked_ids()) < acks:
        assert proc.poll() is None, "the replay finished before it could be killed"
        assert time.monotonic() < deadline, "the replay made no progress"
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()


@pytest.mark.parametrize("source", ["db", "file"])
def test_killed_run_resumes_without_duplicates_beyond_in_flight(
    source: str, postgres: Postgres, tmp_path: Path
) -> None:
    concurrency = 4
    if source == "db":
        url = app_db(postgres, stripe=True, count=180)
        source_args, total = ["--from-db", url], 60
    else:
        path, _ = export_file(tmp_path, 60)
        source_args, total = ["--from-file", str(path)], 60
    with Receiver(verify=stripe_verifier(SECRET), latency=0.03) as receiver:
        args = [*stripe_args(receiver, *source_args), "--concurrency", str(concurrency)]
        _kill_after(_spawn(args), receiver, acks=20)
        killed_at = len(receiver.acked_ids())
        if source == "db":
            states = {k: v[0] for k, v in ledger_rows(url).items()}
        else:
            states = FileLedger(path, "inspect", writable=False).states()
        in_flight = {k for k, v in states.items() if v == "sending"}

        report = report_of(run_cli(*args))

    assert killed_at < total
    assert len(in_flight) <= concurrency  # the crash window: at most the in-flight events
    assert len(receiver.acked_ids()) == total
    assert set(receiver.duplicates()) <= in_flight  # only in-flight events can repeat
    assert set(report["in_doubt_resent"]) == in_flight
    delivered_before = {k for k, v in states.items() if v == "delivered"}
    assert report["skipped_already_delivered"] == len(delivered_before)
    assert not delivered_before & set(receiver.duplicates())


# --- bad input ----------------------------------------------------------------------------------


def test_unknown_source_column_is_named(postgres: Postgres, stripe_receiver: Receiver) -> None:
    url = app_db(postgres, stripe=True, count=3)
    result = run_cli(*stripe_args(stripe_receiver, "--from-db", url), "--payload-column", "body")
    assert result.exit_code == 2
    assert "--payload-column 'body': not a column of webhook_logs" in error_line(result)


def test_unknown_table_is_named(postgres: Postgres, stripe_receiver: Receiver) -> None:
    url = app_db(postgres, stripe=True, count=3)
    result = run_cli(*stripe_args(stripe_receiver, "--from-db", url), "--table", "nope")
    assert result.exit_code == 2 and "--table 'nope'" in error_line(result)


def test_missing_secret_is_a_clear_error(
    tmp_path: Path, stripe_receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    path, _ = export_file(tmp_path, 1)
    monkeypatch.delenv(SECRET_ENV)
    result = run_cli(*stripe_args(stripe_receiver, "--from-file", str(path)))
    assert result.exit_code == 2
    assert f"--secret-env {SECRET_ENV}" in error_line(result)
    assert stripe_receiver.arrivals == []


def test_malformed_export_is_a_clear_error(tmp_path: Path, stripe_receiver: Receiver) -> None:
    path = tmp_path / "broken.jsonl"
    path.write_text('{"id":"evt_1","object":"event"}\n{"id":"evt_2",\n')
    result = run_cli(*stripe_args(stripe_receiver, "--from-file", str(path)))
    assert result.exit_code == 2 and "line 2 is not JSON" in error_line(result)


@pytest.mark.parametrize(
    ("extra", "match"),
    [
        (["--status", "failed"], "--status applies to --from-db only"),
        (["--rate-limit", "fast"], "--rate-limit 'fast'"),
        (["--concurrency", "0"], "--concurrency 0"),
        (["--since", "last tuesday"], "--since 'last tuesday'"),
        (["--from-db", "postgresql://x@/y"], "exactly one event source"),
    ],
)
def test_bad_options_exit_2(
    tmp_path: Path, stripe_receiver: Receiver, extra: list[str], match: str
) -> None:
    path, _ = export_file(tmp_path, 1)
    result = run_cli(*stripe_args(stripe_receiver, "--from-file", str(path)), *extra)
    assert result.exit_code == 2 and match in error_line(result)


def test_without_yes_nothing_is_sent(tmp_path: Path, stripe_receiver: Receiver) -> None:
    path, _ = export_file(tmp_path, 3)
    args = [a for a in stripe_args(stripe_receiver, "--from-file", str(path)) if a != "--yes"]
    result = run_cli(*args)
    assert result.exit_code == 2 and "--yes" in error_line(result)
    assert stripe_receiver.arrivals == []
    assert not file_ledger_path(path).exists()  # declined: not even a ledger was created


def test_a_second_run_on_the_same_database_is_refused(
    postgres: Postgres, stripe_receiver: Receiver
) -> None:
    url = app_db(postgres, stripe=True, count=3)
    with psycopg.connect(url) as other_run:
        other_run.execute("SELECT pg_advisory_lock(hashtext('opsplane_webhook_replay'))")
        result = run_cli(*stripe_args(stripe_receiver, "--from-db", url))
    assert result.exit_code == 1 and "another replay" in error_line(result)
    assert stripe_receiver.arrivals == []


def test_a_second_concurrent_run_is_refused(tmp_path: Path, stripe_receiver: Receiver) -> None:
    path, _ = export_file(tmp_path, 3)
    holder = FileLedger(path, "other-run", writable=True)
    try:
        result = run_cli(*stripe_args(stripe_receiver, "--from-file", str(path)))
    finally:
        holder.close()
    assert result.exit_code == 1 and "another replay" in error_line(result)
    assert stripe_receiver.arrivals == []
    assert file_ledger_path(path).exists()


def test_ctrl_c_lets_in_flight_events_finish_and_be_recorded(tmp_path: Path) -> None:
    from automation.tasks.replay.delivery import DeliveryConfig, deliver_all
    from automation.tasks.replay.ratelimit import Rate, RateLimiter
    from automation.tasks.replay.signing import make_signer
    from automation.tasks.replay.sources import Filters, read_file_events, select

    path, _ = export_file(tmp_path, 40)
    events = list(select(read_file_events(path), Filters(status=None)))
    seen: list[str] = []

    def interrupt_after_five(outcome: Any) -> None:
        seen.append(outcome.event_id)
        if len(seen) == 5:
            raise KeyboardInterrupt

    with Receiver(verify=stripe_verifier(SECRET), latency=0.05) as receiver:
        ledger = FileLedger(path, "ctrl-c", writable=True)
        config = DeliveryConfig(receiver.url, make_signer("stripe", SECRET), concurrency=4)
        with pytest.raises(KeyboardInterrupt):
            deliver_all(events, config, RateLimiter(Rate(None)), ledger, interrupt_after_five)
        ledger.close()
        states = FileLedger(path, "inspect", writable=False).states()
    assert "sending" not in states.values()  # every started event was finished and recorded
    assert {k for k, v in states.items() if v == "delivered"} == receiver.acked_ids()
    assert 5 <= len(receiver.acked_ids()) < 40  # stopped early: no new events were started


def test_human_output_lists_then_summarizes(postgres: Postgres, stripe_receiver: Receiver) -> None:
    url = app_db(postgres, stripe=True, count=6)
    args = [a for a in stripe_args(stripe_receiver, "--from-db", url) if a != "--json"]
    listing = run_cli(*args, "--dry-run")
    assert listing.exit_code == 0 and listing.stdout == ""
    assert "would send 2 event(s)" in listing.stderr
    assert "evt_000003" in listing.stderr and "evt_000006" in listing.stderr
    done = run_cli(*args)
    assert done.exit_code == 0
    assert "selected 2: delivered 2, skipped (already delivered) 0, failed none" in done.stderr
    assert f"ledger: table {LEDGER_TABLE}" in done.stderr
