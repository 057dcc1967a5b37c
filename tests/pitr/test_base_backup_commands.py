"""`base-backup` (with retention), `backups list` showing base backups beside logical ones, and
`backups pin` of a base backup through barman-cloud-backup-keep."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer

from automation.tasks.pitr.barman import list_base_backups
from contract import wal_layout as wl
from tests.pitr.conftest import (
    REPO,
    aws_env,
    cli,
    make_cluster,
    stop_instances,
    write_batch,
)
from tests.services import S3


class Gateway(BaseHTTPRequestHandler):
    """A Pushgateway stand-in that records what was pushed (path, body)."""

    pushed: list[tuple[str, str]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"])).decode()
        Gateway.pushed.append((self.path, body))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def test_base_backup_list_pin_and_retention(s3: S3) -> None:
    bucket = s3.create_bucket("pitr")
    cluster = make_cluster(bucket, s3.endpoint)
    env = aws_env(s3.endpoint)
    try:
        write_batch(cluster.url, 1)
        wrong = cli("base-backup", "--database-url", cluster.admin, "--pgdata", "/tmp",
                    "--bucket", bucket, "--app", "qr", env=env)  # fmt: skip
        assert wrong.returncode == 2 and "data directory is" in wrong.stderr
        args = ["--database-url", cluster.admin, "--pgdata", str(cluster.instance.pgdata)]
        args += ["--bucket", bucket, "--app", "qr", "--json"]
        made = cli("base-backup", *args, env=env)
        assert made.returncode == 0, made.stderr
        backup_id = json.loads(made.stdout)["backup_id"]

        logical = cli("backup", "--database-url", cluster.url, "--bucket", bucket, "--app", "qr",
                      env=env)  # fmt: skip
        assert logical.returncode == 0, logical.stderr
        listed = json.loads(cli("backups", "list", "--bucket", bucket, "--json", env=env).stdout)
        assert sorted(r["format"] for r in listed) == ["base", "plain"]
        base = next(r for r in listed if r["format"] == "base")
        assert base["run_id"] == backup_id and base["app"] == "qr" and base["complete"]
        assert base["retention"] == "window"
        text = cli("backups", "list", "--bucket", bucket, "--app", "qr", env=env)
        assert "base" in text.stdout and backup_id in text.stdout

        pinned = cli("backups", "pin", base["key"], "--bucket", bucket, env=env)
        assert pinned.returncode == 0, pinned.stderr
        listed = json.loads(cli("backups", "list", "--bucket", bucket, "--json", env=env).stdout)
        assert next(r for r in listed if r["format"] == "base")["retention"] == "pinned"

        # retention with a pinned backup: a second backup, then a 1-day window keeps both;
        # the success time goes to the Pushgateway (the BaseBackupMissing alert reads it)
        gateway = HTTPServer(("127.0.0.1", 0), Gateway)
        threading.Thread(target=gateway.serve_forever, daemon=True).start()
        url = f"http://127.0.0.1:{gateway.server_port}"
        again = cli("base-backup", *args, "--retention-days", "1", "--pushgateway", url, env=env)
        gateway.shutdown()
        assert again.returncode == 0, again.stderr
        path, body = Gateway.pushed[-1]
        assert path == "/metrics/job/opsplane-base-backup/app/qr"
        assert 'opsplane_pitr_base_backup_last_success_timestamp_seconds{app="qr"}' in body
        ids = [b.backup_id for b in list_base_backups(cluster.archive)]
        assert backup_id in ids and len(ids) == 2
        released = cli("backups", "pin", base["key"], "--unpin", "--bucket", bucket, env=env)
        assert released.returncode == 0, released.stderr

        # retention deletes: the two backups aged 10 and 5 days, a third now, a 1-day window.
        # Recovering to a day ago needs the 5-day-old one; the 10-day-old one goes, unpinned.
        second = next(i for i in ids if i != backup_id)
        age_backup(s3, bucket, backup_id, days=10)
        age_backup(s3, bucket, second, days=5)
        third = cli("base-backup", *args, "--retention-days", "1", env=env)
        assert third.returncode == 0, third.stderr
        kept = [b.backup_id for b in list_base_backups(cluster.archive)]
        assert kept == [second, json.loads(third.stdout)["backup_id"]]
        assert json.loads(third.stdout)["retention"] == "RECOVERY WINDOW OF 1 DAYS"
    finally:
        cluster.instance.stop("immediate")
        stop_instances(cluster.root)


def age_backup(s3: S3, bucket: str, backup_id: str, *, days: int) -> None:
    """Rewrite a base backup's times in its backup.info (what barman-cloud's retention reads) as
    if it had been taken `days` ago; its data stays as it is."""
    client = s3.client()
    key = wl.base_key("backups", "qr", backup_id) + "backup.info"
    info = client.get_object(Bucket=bucket, Key=key)["Body"].read().decode()
    then = datetime.now(UTC) - timedelta(days=days)
    lines = [
        f"{name}={then.isoformat(sep=' ')}" if name in ("begin_time", "end_time") else line
        for line in info.splitlines()
        for name in [line.split("=", 1)[0]]
    ]
    assert sum(line.startswith(("begin_time=", "end_time=")) for line in lines) == 2, info
    client.put_object(Bucket=bucket, Key=key, Body="\n".join(lines).encode() + b"\n")


def test_the_schedule_loop_takes_the_first_base_backup_at_start(s3: S3, tmp_path) -> None:
    """PITR just turned on (an empty archive): the loop the sidecar and the dev container run
    backs up at once instead of waiting for its schedule (here: once a year), so the window
    exists right after `pulumi up`; with one in the archive, a restarted loop only waits."""
    bucket = s3.create_bucket("pitr")
    cluster = make_cluster(bucket, s3.endpoint)
    env = {**os.environ, **aws_env(s3.endpoint)}
    args = [sys.executable, "-m", "automation", "base-backup", "--database-url", cluster.admin,
            "--pgdata", str(cluster.instance.pgdata), "--bucket", bucket, "--app", "qr",
            "--schedule", "0 0 1 1 *"]  # fmt: skip

    def loop_until(line: str, timeout: float = 120) -> str:
        err = tmp_path / "loop.err"
        with err.open("w") as sink:
            proc = subprocess.Popen(args, cwd=REPO, env=env, stderr=sink, stdout=sink)
            try:
                deadline = time.monotonic() + timeout
                while line not in err.read_text() and time.monotonic() < deadline:
                    assert proc.poll() is None, err.read_text()
                    time.sleep(0.2)
            finally:
                proc.terminate()
                proc.wait(30)
        return " ".join(err.read_text().split())  # the console wraps long lines

    try:
        write_batch(cluster.url, 1)
        assert list_base_backups(cluster.archive) == []
        first = loop_until("next base backup at")
        assert "no base backup in" in first and "taking the first one now" in first, first
        [made] = list_base_backups(cluster.archive)
        assert made.status == "DONE" and f"base backup {made.backup_id} done" in first
        assert first.index("done") < first.index("next base backup at")

        again = loop_until("next base backup at")
        assert "taking the first one now" not in again, again
        assert [b.backup_id for b in list_base_backups(cluster.archive)] == [made.backup_id]
    finally:
        cluster.instance.stop("immediate")
        stop_instances(cluster.root)
