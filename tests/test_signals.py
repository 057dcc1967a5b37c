"""Real signals on real long-running commands: SIGTERM gets Ctrl-C's cleanup, an interrupted
`--json` run still prints its report, and replay's in-doubt events are named across kills.

Each test starts `python -m automation ...` as a process, against embedded PostgreSQL, moto S3
over HTTP and a real local webhook receiver, and sends it the signal a person (SIGINT), a Job
deadline or node drain (SIGTERM) or the OOM killer (SIGKILL) would.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import psycopg
import pytest

from automation.tasks.io.pgtools import database_name
from automation.tasks.replay.ledger import LEDGER_TABLE, FileLedger
from tests.receivers import Receiver, stripe_verifier
from tests.services import S3, Postgres
from tests.tasks.test_replay import SECRET, SECRET_ENV, app_db, export_file, stripe_args
from tests.tasks.test_restore_support import create_qr, databases, managed_backup, table_checksums

REPO = Path(__file__).resolve().parents[1]


def spawn(*args: str) -> subprocess.Popen[str]:
    env = dict(os.environ, PYTHONPATH=str(REPO), COLUMNS="200")
    env[SECRET_ENV] = SECRET
    return subprocess.Popen(
        [sys.executable, "-m", "automation", *args],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for(condition: Any, proc: subprocess.Popen[str], what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert proc.poll() is None, f"finished before {what}: {proc.communicate()}"
        assert time.monotonic() < deadline, f"never reached: {what}"
        time.sleep(0.01)


def db_states(url: str) -> dict[str, str]:
    """The ledger once the killed process' sessions are gone (their last statements done)."""
    deadline = time.monotonic() + 30
    with psycopg.connect(url, autocommit=True) as conn:
        while conn.execute(
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        ).fetchone()[0]:
            assert time.monotonic() < deadline, "the killed run's sessions never ended"
            time.sleep(0.02)
        return dict(conn.execute(f"SELECT event_id, state FROM {LEDGER_TABLE}").fetchall())


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error:")]


class TestReplayInterruptedTwice:
    """Item 4: two kills, then a rerun that finishes; every possible duplicate is named."""

    def test_report_names_in_doubt_events_of_every_killed_run(
        self, postgres: Postgres, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv(SECRET_ENV, SECRET)
        url = app_db(postgres, stripe=True, count=240)  # 80 failed events to replay
        with Receiver(verify=stripe_verifier(SECRET), latency=0.05) as receiver:
            args = ["replay", *stripe_args(receiver, "--from-db", url), "--concurrency", "6"]
            in_doubt: set[str] = set()
            for acks in (15, 45):  # kill twice, each time with events in flight
                proc = spawn(*args)
                wait_for(lambda a=acks: len(receiver.acked_ids()) >= a, proc, f"{acks} acks")
                proc.send_signal(signal.SIGKILL)
                proc.communicate()
                in_doubt |= {k for k, v in db_states(url).items() if v == "sending"}

            final = spawn(*args)
            out, err = final.communicate(timeout=120)
            again = spawn(*args)
            again_out, _ = again.communicate(timeout=120)
            arrivals = Counter(a.event_id for a in receiver.arrivals if a.status == 200)

        assert final.returncode == 0, err
        report = json.loads(out)
        assert in_doubt, "the kills left nothing in flight: the test proves nothing"
        assert set(report["in_doubt_resent"]) == in_doubt  # both kills, not only the last
        assert set(report["in_doubt_resent_this_run"]) < in_doubt  # this run resent some only
        duplicated = {event for event, n in arrivals.items() if n > 1}
        assert duplicated <= in_doubt  # only events the report names can have arrived twice
        assert max(arrivals.values()) <= 2  # an in-doubt event resent once is not resent again
        assert len(arrivals) == 80
        assert json.loads(again_out)["to_send"] == 0  # and a later run sends nothing at all

    def test_file_ledger_keeps_the_mark_across_runs(self, tmp_path: Path) -> None:
        path, _ = export_file(tmp_path, 3)
        first = FileLedger(path, "run1", writable=True)
        first.begin("evt_file_0000")  # killed while sending
        first.close()
        second = FileLedger(path, "run2", writable=True)
        second.begin("evt_file_0000")  # resent: may now have arrived twice
        second.begin("evt_file_0001")  # first send: not in doubt
        second.close()
        third = FileLedger(path, "run3", writable=True)
        third.begin("evt_file_0001")  # killed run2 was sending it
        third.close()
        assert FileLedger(path, "x", writable=False).doubted() == {"evt_file_0000", "evt_file_0001"}


class TestJsonOnInterrupt:
    """Item 5: `--json` interrupted by SIGINT or SIGTERM prints its report on stdout."""

    @pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
    def test_replay_report_on_stdout_says_what_was_done(
        self, signum: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv(SECRET_ENV, SECRET)
        path, _ = export_file(tmp_path, 60)
        with Receiver(verify=stripe_verifier(SECRET), latency=0.05) as receiver:
            args = [*stripe_args(receiver, "--from-file", str(path)), "--concurrency", "4"]
            proc = spawn("replay", *args)
            wait_for(lambda: len(receiver.acked_ids()) >= 10, proc, "10 acks")
            proc.send_signal(signum)
            out, err = proc.communicate(timeout=60)
            acked = receiver.acked_ids()
        states = FileLedger(path, "inspect", writable=False).states()

        assert proc.returncode == 1, err
        document = json.loads(out)
        assert document["ok"] is False and document["interrupted"] is True
        report = document["report"]
        assert report["delivered"] == len(acked) == list(states.values()).count("delivered")
        assert report["not_attempted"] == 60 - len(states) > 0
        word = "terminated (SIGTERM)" if signum == signal.SIGTERM else "interrupted"
        [line] = error_lines(err)
        assert line.startswith(f"error: {word}: delivered {len(acked)} of 60")
        assert "nothing further was changed" not in err
        # cleanup: in-flight events finished and were recorded, the ledger's lock was released
        assert "sending" not in states.values()
        assert FileLedger(path, "next", writable=True).states() == states


class TestSigtermCleanup:
    """Item 7: SIGTERM mid-restore runs the same cleanup as Ctrl-C."""

    def test_sigterm_mid_load_drops_the_new_database_and_leaves_live_alone(
        self, postgres: Postgres, s3: S3
    ) -> None:
        url = postgres.create_database("qr")
        live = database_name(url)
        create_qr(url, rows=100)
        with psycopg.connect(url) as conn:  # a load that takes seconds: 5 ms per row checked
            conn.execute(
                "CREATE FUNCTION slow_ok(integer) RETURNS boolean LANGUAGE sql "
                "AS 'SELECT pg_sleep(0.005) IS NOT NULL'"
            )
            conn.execute("CREATE TABLE slow (n integer CHECK (slow_ok(n)))")
            conn.execute("INSERT INTO slow SELECT generate_series(1, 2000)")
        bucket = s3.create_bucket()
        managed_backup(url, bucket, "qr")
        before = table_checksums(url)
        args = ["--database-url", url, "--bucket", bucket, "--latest", "--yes", "--json"]

        proc = spawn("restore", *args)
        wait_for(lambda: databases(postgres, f"{live}_restore_"), proc, "the new database")
        time.sleep(1.0)  # inside the load
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)

        assert proc.returncode == 1, err
        assert "terminated (SIGTERM)" in err and "Traceback" not in err
        assert f"dropped {live}_restore_" in err  # the cleanup Ctrl-C gets
        assert databases(postgres, f"{live}_restore_") == []
        assert table_checksums(url) == before
        document = json.loads(out)
        assert document["interrupted"] is True
        assert document["report"]["restored"] == [] and document["report"]["not_restored"] == [
            "database"
        ]
        with psycopg.connect(postgres.url()) as conn:  # no psql left loading anything
            left = conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname LIKE %s",
                (f"{live}_restore_%",),
            ).fetchone()[0]
        assert left == 0

    def test_a_second_sigterm_does_not_cut_the_cleanup_short(self, tmp_path: Path) -> None:
        path, _ = export_file(tmp_path, 60)
        with Receiver(verify=stripe_verifier(SECRET), latency=0.2) as receiver:
            args = [*stripe_args(receiver, "--from-file", str(path)), "--concurrency", "4"]
            proc = spawn("replay", *args)
            wait_for(lambda: len(receiver.acked_ids()) >= 4, proc, "4 acks")
            proc.send_signal(signal.SIGTERM)
            time.sleep(0.05)
            proc.send_signal(signal.SIGTERM)  # impatient: ignored while in-flight events finish
            out, err = proc.communicate(timeout=60)
        states = FileLedger(path, "inspect", writable=False).states()
        assert proc.returncode == 1, err
        assert "sending" not in states.values()
        assert json.loads(out)["report"]["delivered"] == list(states.values()).count("delivered")


class TestJobSigterm:
    """In a Job, SIGTERM reaches only PID 1 (`automation.jobrun`): it passes it on to the task,
    whose interrupted --json report is still uploaded."""

    def test_jobrun_passes_sigterm_on_and_uploads_the_report(self, tmp_path: Path, s3: S3) -> None:
        path, _ = export_file(tmp_path, 60)
        bucket = s3.create_bucket()
        with Receiver(verify=stripe_verifier(SECRET), latency=0.05) as receiver:
            args = [*stripe_args(receiver, "--from-file", str(path)), "--concurrency", "4"]
            env = dict(os.environ, PYTHONPATH=str(REPO), **{SECRET_ENV: SECRET})
            job = subprocess.Popen(
                [sys.executable, "-m", "automation.jobrun", "--report-to",
                 f"s3://{bucket}/reports/r1.json", "--", "replay", *args],
                cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            )  # fmt: skip
            wait_for(lambda: len(receiver.acked_ids()) >= 8, job, "8 acks")
            job.send_signal(signal.SIGTERM)
            _, err = job.communicate(timeout=60)
        states = FileLedger(path, "inspect", writable=False).states()
        uploaded = json.loads(
            s3.client().get_object(Bucket=bucket, Key="reports/r1.json")["Body"].read()
        )

        assert job.returncode == 1, err
        assert uploaded["exitCode"] == 1 and "terminated (SIGTERM)" in uploaded["error"]
        report = uploaded["report"]["report"]
        assert report["delivered"] == list(states.values()).count("delivered") >= 8
        assert "sending" not in states.values()


class TestInDoubtTwice:
    """An in-doubt event resent once, and in flight again when that run died, is not sent a
    third time: it is held and named, and `--id ID --force` sends it."""

    def test_held_then_sent_with_force(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        from typer.testing import CliRunner

        from automation.cli import build_app

        monkeypatch.setenv(SECRET_ENV, SECRET)
        path, _ = export_file(tmp_path, 3)
        for run in ("run1", "run2"):  # killed while sending evt_file_0000, twice
            ledger = FileLedger(path, run, writable=True)
            ledger.begin("evt_file_0000")
            ledger.close()
        with Receiver(verify=stripe_verifier(SECRET)) as receiver:
            args = ["replay", *stripe_args(receiver, "--from-file", str(path))]
            first = CliRunner().invoke(build_app(), args)
            sent_first = set(receiver.acked_ids())
            forced = CliRunner().invoke(build_app(), [*args, "--id", "evt_file_0000", "--force"])

        assert first.exit_code == 1
        report = json.loads(first.stdout)
        assert report["held_in_doubt"] == ["evt_file_0000"]
        assert report["in_doubt_resent"] == ["evt_file_0000"]
        assert sent_first == {"evt_file_0001", "evt_file_0002"}  # the held one was not sent
        [line] = error_lines(first.stderr)
        assert "not sent a third time" in line and "--id evt_file_0000 --force" in line
        assert forced.exit_code == 0, forced.stderr
        assert receiver.acked_ids() == {"evt_file_0000", "evt_file_0001", "evt_file_0002"}
