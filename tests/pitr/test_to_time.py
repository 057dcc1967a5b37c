"""`restore --to-time` against a real archiving PostgreSQL 16 cluster and moto S3: three
timestamped batches; a time between batches 2 and 3 gives exactly batches 1 and 2."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import psycopg
import pytest

from automation.tasks import pgswap
from tests.pitr.conftest import (
    Cluster,
    aws_env,
    batches,
    cli,
    iso,
    make_cluster,
    mid,
    no_traceback,
    stop_instances,
)
from tests.services import S3


@dataclass
class History:
    cluster: Cluster
    backup_id: str
    times: list[datetime]  # after each batch's commit
    env: dict[str, str]


def databases(url: str) -> list[str]:
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT datname FROM pg_database ORDER BY 1").fetchall()
    return [r[0] for r in rows]


@pytest.fixture(scope="module")
def history(s3_server: S3) -> Iterator[History]:
    with pytest.MonkeyPatch.context() as mp:
        for name, value in aws_env(s3_server.endpoint).items():
            mp.setenv(name, value)
        bucket = s3_server.create_bucket("pitr")
        cluster = make_cluster(bucket, s3_server.endpoint)
        try:
            backup_id, times = cluster.write_history()
            yield History(cluster, backup_id, times, aws_env(s3_server.endpoint))
        finally:
            cluster.instance.stop("immediate")
            stop_instances(cluster.root)


def common(h: History) -> list[str]:
    c = h.cluster
    return ["--database-url", c.url, "--bucket", c.bucket, "--app", "qr"]


class TestStatus:
    def test_status_shows_base_backup_window_and_newest_wal(self, history: History) -> None:
        c = history.cluster
        args = ["--bucket", c.bucket, "--app", "qr", "--database-url", c.admin, "--json"]
        result = cli("pitr", "status", *args, env=history.env)
        assert result.returncode == 0, result.stderr
        doc = json.loads(result.stdout)
        assert [b["backup_id"] for b in doc["base_backups"]] == [history.backup_id]
        start = datetime.fromisoformat(doc["window"]["start"])
        end = datetime.fromisoformat(doc["window"]["end"])
        t1, _, t3 = history.times
        assert start < t1 and t3 - timedelta(seconds=1) < end <= t3
        assert doc["newest_wal"]["segment"] and 0 <= doc["newest_wal"]["age_seconds"] < 120
        assert doc["archiving_failing"] is False and doc["ok"] is True

    def test_archive_command_prints_one_line_with_p(self, history: History) -> None:
        result = cli("pitr", "archive-command", "--bucket", "b-1", "--app", "qr")
        assert result.returncode == 0
        assert result.stdout.count("\n") == 1 and result.stdout.rstrip().endswith(" %p")
        assert "s3://b-1/backups/pitr" in result.stdout


class TestInspect:
    def test_inspect_between_2_and_3_leaves_live_untouched(
        self, history: History, work_dir
    ) -> None:
        c = history.cluster
        before = databases(c.admin)
        _, t2, t3 = history.times
        result = cli("restore", *common(history), "--to-time", iso(mid(t2, t3)), "--inspect",
                     "--work-dir", str(work_dir), "--json", env=history.env)  # fmt: skip
        assert result.returncode == 0, result.stderr
        doc = json.loads(result.stdout)
        assert batches(doc["url"]) == {1: 50, 2: 50}
        assert batches(c.url) == {1: 50, 2: 50, 3: 50}
        assert databases(c.admin) == before

        # another, earlier time: the base backup is reused, not downloaded again
        t1 = history.times[0]
        again = cli("restore", *common(history), "--to-time", iso(mid(t1, t2)), "--inspect",
                    "--work-dir", str(work_dir), "--json", env=history.env)  # fmt: skip
        assert again.returncode == 0, again.stderr
        assert "reusing" in again.stderr
        assert batches(json.loads(again.stdout)["url"]) == {1: 50}

        # a later time on the same base: the paused copy replays on, no new copy
        later = cli("restore", *common(history), "--to-time", "latest", "--inspect",
                    "--work-dir", str(work_dir), "--json", env=history.env)  # fmt: skip
        assert later.returncode == 0, later.stderr
        assert "continuing" in later.stderr
        assert batches(json.loads(later.stdout)["url"]) == {1: 50, 2: 50, 3: 50}
        assert databases(c.admin) == before


def assert_nothing_changed(history: History, before: list[str], work_dir: Path) -> None:
    """A refused `--to-time`: live holds all three batches, no database came or went, and the
    work directory is still empty (refused before the recovery)."""
    c = history.cluster
    assert batches(c.url) == {1: 50, 2: 50, 3: 50}
    assert databases(c.admin) == before
    assert not any(work_dir.iterdir())


class TestRefused:
    @pytest.mark.parametrize("when", ["before", "after"])
    def test_time_outside_window_refused_naming_it(
        self, history: History, work_dir, when: str
    ) -> None:
        c = history.cluster
        before = databases(c.admin)
        moment = (
            history.times[0] - timedelta(hours=1)
            if when == "before"
            else datetime.now().astimezone() + timedelta(hours=1)
        )
        result = cli("restore", *common(history), "--to-time", iso(moment), "--yes",
                     "--work-dir", str(work_dir), env=history.env)  # fmt: skip
        assert result.returncode == 2, result.stderr
        no_traceback(result)
        assert "recoverable window is" in result.stderr and "nothing was changed" in result.stderr
        assert_nothing_changed(history, before, work_dir)  # not even the work directory

    def test_time_without_zone_refused(self, history: History) -> None:
        result = cli(
            "restore",
            *common(history),
            "--to-time",
            "2026-11-21T17:00:00",
            "--yes",
            env=history.env,
        )
        assert result.returncode == 2 and "no zone" in result.stderr
        no_traceback(result)


class TestGuards:
    """`--to-time` into live goes through the plain restore's guards (`DatabaseRestore.guard`),
    before the recovery and before anything changes."""

    @pytest.mark.parametrize("target", ["template1", "postgres"])
    def test_protected_target_refused_before_anything_changes(
        self, history: History, work_dir, target: str
    ) -> None:
        c = history.cluster
        before = databases(c.admin)
        args = ["--database-url", c.instance.url(target), "--bucket", c.bucket, "--app", "qr"]
        result = cli("restore", *args, "--to-time", "latest", "--yes",
                     "--work-dir", str(work_dir), env=history.env)  # fmt: skip
        assert result.returncode == 2, result.stderr
        no_traceback(result)
        [line] = [x for x in result.stderr.splitlines() if x.startswith("error:")]
        assert f"'{target}'" in line and "template or maintenance database" in line
        assert_nothing_changed(history, before, work_dir)  # refused before the recovery

    def test_refused_while_a_restore_of_the_database_holds_the_claim(
        self, history: History, work_dir
    ) -> None:
        c = history.cluster
        before = databases(c.admin)
        # what a running plain restore of qr holds (DatabaseRestore._take_claim)
        with pgswap.Claim(c.url, "restore of qr (pid 4242)") as claim:
            claim.take("restore:qr", what="a restore of qr")
            result = cli("restore", *common(history), "--to-time", "latest", "--yes",
                         "--work-dir", str(work_dir), env=history.env)  # fmt: skip
        assert result.returncode == 1, result.stderr
        no_traceback(result)
        [line] = [x for x in result.stderr.splitlines() if x.startswith("error:")]
        assert "a restore of qr: already running" in line and "pid 4242" in line
        assert_nothing_changed(history, before, work_dir)


class TestIntoLive:
    def test_to_time_between_2_and_3_gives_exactly_1_and_2(
        self, history: History, work_dir
    ) -> None:
        c = history.cluster
        _, t2, t3 = history.times
        result = cli("restore", *common(history), "--to-time", iso(mid(t2, t3)), "--yes", "--json",
                     "--work-dir", str(work_dir), env=history.env)  # fmt: skip
        assert result.returncode == 0, result.stderr
        doc = json.loads(result.stdout)["database"]
        assert batches(c.url) == {1: 50, 2: 50}
        assert batches(c.instance.url(doc["pre_restore"])) == {1: 50, 2: 50, 3: 50}
        assert [s["name"] for s in doc["steps"]] == ["verify", "create", "load", "check", "swap"]
        with psycopg.connect(c.url) as conn:  # sequences and constraints came along
            conn.execute("INSERT INTO orders (batch) VALUES (4)")
