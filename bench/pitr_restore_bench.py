"""Time to a queryable point-in-time copy (`restore --to-time --inspect`) against the runbook's
`gunzip -c | psql`, and the full `--to-time` restore into live next to plain `restore`.

Setup, once: a PostgreSQL 16 cluster archiving to a moto S3 server (tests/pitr/conftest.py),
a generated QR-shaped database `bench` whose plain dump is >= --min-mb (bench/restore_bench.py's
generator), its plain `pg_dump | gzip` on local disk (the runbook's nightly file) and a managed
logical backup in S3 (for plain `restore`). Before each round (not timed): a new base backup and
2 x --updates (default 20) updates of 1% of the accounts after it, archived (every round
replays the same WAL, not the previous rounds' restores).

Each round, one after the other (wall time of the whole command or pipeline):
- runbook:      createdb + `gunzip -c bench.sql.gz | psql` (local file, no download);
- inspect:      `restore --to-time latest --inspect` with an empty --work-dir (download and
                unpack the base backup, replay WAL, pause; the copy then answers queries);
- re-inspect:   the same work dir, an earlier --to-time (the base backup is reused);
- to-time:      `restore --to-time latest --yes` with an empty work dir: recover, then
                dump -> shadow database -> check -> swap into live;
- restore:      plain `restore --latest --yes` of the logical backup (verify, load, check, swap).

    .venv/bin/python bench/pitr_restore_bench.py            # 3 rounds
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import boto3
import psycopg

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("XDG_RUNTIME_DIR", tempfile.gettempdir())

from automation.tasks.backup import BackupOptions, run_backup  # noqa: E402
from automation.tasks.io.pgtools import libpq_env  # noqa: E402
from bench.restore_bench import BYTES_PER_ROW, generate  # noqa: E402
from tests.pitr.conftest import aws_env, make_cluster, pg_bin, stop_instances  # noqa: E402
from tests.services import free_port  # noqa: E402

BUCKET = "pitr-restore-bench"


def cli(*args: str) -> float:
    """Run one command; its wall time. Its log lines go to stderr with the second they came."""
    started = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-m", "automation", *args], cwd=REPO, stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert proc.stderr is not None
    lines = [f"{time.monotonic() - started:7.2f} {line.rstrip()}" for line in proc.stderr]
    if proc.wait() != 0:
        raise SystemExit(f"{args[0]} failed: {lines[-5:]}")
    took = time.monotonic() - started
    print(f"--- {' '.join(args[:1] + args[-4:])}: {took:.1f}s", *lines, sep="\n", file=sys.stderr)
    return took


def runbook(admin_url: str, url: str, dump: Path) -> float:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute("DROP DATABASE IF EXISTS runbook WITH (FORCE)")
        conn.execute("CREATE DATABASE runbook")
    env = libpq_env(url.replace("dbname=bench", "dbname=runbook"))
    started = time.monotonic()
    subprocess.run(
        f"gunzip -c {dump} | {pg_bin() / 'psql'} -q -v ON_ERROR_STOP=1 > /dev/null",
        shell=True, check=True, env=env,
    )  # fmt: skip
    took = time.monotonic() - started
    with (
        psycopg.connect(url) as a,
        psycopg.connect(url.replace("dbname=bench", "dbname=runbook")) as b,
    ):
        query = "SELECT count(*) FROM qr_events"
        assert a.execute(query).fetchone() == b.execute(query).fetchone(), "runbook load incomplete"
    return took


def fresh(path: Path) -> Path:
    stop_instances(path)
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path


def setup(cluster, min_mb: int) -> tuple[str, Path]:
    with psycopg.connect(cluster.admin, autocommit=True) as conn:
        conn.execute("CREATE DATABASE bench")
    url = cluster.instance.url("bench")
    generate(url, min_mb * 1024 * 1024 // BYTES_PER_ROW)
    dump = Path(tempfile.mkdtemp(prefix="pitr-bench-")) / "bench.sql.gz"
    subprocess.run(
        f"{pg_bin() / 'pg_dump'} | gzip > {dump}", shell=True, check=True, env=libpq_env(url)
    )
    run_backup(BackupOptions(bucket=BUCKET, database_url=url, app="qr", format="plain"))
    return url, dump


def new_base(cluster, url: str, updates: int) -> datetime:
    """A fresh base backup, then `updates` x 2 updates of 1% of the accounts after it
    (archived): every round replays the same WAL, not the previous rounds' restores. Returns
    a time between the two halves of the writes."""
    cluster.base_backup()
    for _ in range(updates):
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("UPDATE accounts SET plan = plan WHERE random() < 0.01")
    middle = datetime.now(UTC)
    for _ in range(updates):
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("UPDATE accounts SET plan = plan WHERE random() < 0.01")
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("INSERT INTO alembic_version VALUES ('after-' || txid_current())")
    cluster.switch_and_wait(timeout=300)
    return middle


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--min-mb", type=int, default=200)
    parser.add_argument("--updates", type=int, default=20, help="x2 updates of 1%% of accounts")
    args = parser.parse_args()
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    os.environ.update(aws_env(f"http://127.0.0.1:{port}"))
    boto3.client("s3").create_bucket(Bucket=BUCKET)
    cluster = make_cluster(BUCKET, f"http://127.0.0.1:{port}")
    work = Path("/tmp/pitr-bench-w")
    try:
        url, dump = setup(cluster, args.min_mb)
        size = int(subprocess.run(["gzip", "-l", str(dump)], capture_output=True, text=True)
                   .stdout.splitlines()[1].split()[1])  # fmt: skip
        common = ["--database-url", url, "--bucket", BUCKET, "--app", "qr"]
        rounds = []
        for n in range(args.rounds):
            middle = new_base(cluster, url, args.updates)
            row = {"runbook": runbook(cluster.admin, url, dump)}
            row["inspect"] = cli("restore", *common, "--to-time", "latest", "--inspect",
                                 "--work-dir", str(fresh(work)))  # fmt: skip
            row["re_inspect"] = cli("restore", *common, "--to-time", middle.isoformat(),
                                    "--inspect", "--work-dir", str(work))  # fmt: skip
            row["to_time"] = cli("restore", *common, "--to-time", "latest", "--yes",
                                 "--work-dir", str(fresh(work)))  # fmt: skip
            row["restore"] = cli("restore", *common, "--latest", "--yes")
            cli("restore", "--cleanup", "--database-url", url, "--yes")
            rounds.append({k: round(v, 1) for k, v in row.items()})
            print(json.dumps({"round": n + 1, **rounds[-1]}), flush=True)
        med = {k: round(statistics.median(r[k] for r in rounds), 1) for k in rounds[0]}
        print(json.dumps({
            "sql_bytes": size, "rounds": rounds, "median": med,
            "inspect_over_runbook": round(med["inspect"] / med["runbook"], 2),
            "re_inspect_over_runbook": round(med["re_inspect"] / med["runbook"], 2),
            "to_time_over_restore": round(med["to_time"] / med["restore"], 2),
            "at": (datetime.now(UTC) - timedelta(0)).isoformat(timespec="seconds"),
        }, indent=2))  # fmt: skip
    finally:
        stop_instances(work)
        cluster.instance.stop("immediate")
        stop_instances(cluster.root)
        server.stop()


if __name__ == "__main__":
    main()
