"""RPO of continuous WAL archiving: how old is the newest recoverable commit, second by second?

A PostgreSQL 16 cluster (pgserver's binaries, run unprivileged by automation.tasks.pitr) archives
to a moto S3 server with the shared archive_command and the program's default archive_timeout
(55 s).
A writer commits `--rate` small transactions a second for `--seconds`, recording after each
commit the server's WAL insert position (at or past the commit record's end) and the time. Every
second a sampler reads pg_stat_archiver.last_archived_wal: barman-cloud-wal-archive returned
success for it, so it is in S3. The newest recoverable commit is the newest one whose recorded
position lies inside an archived segment; its age at that second is the sample. Reported:
p50/p99/max of the age, and the commit rate reached. The archive is then checked against the
samples: `pitr status`'s window end must be at or after the newest commit the sampler counted.

    .venv/bin/python bench/pitr_rpo_bench.py                 # 5 minutes at 60 commits/s
    .venv/bin/python bench/pitr_rpo_bench.py --seconds 60    # a short try
"""

from __future__ import annotations

import argparse
import bisect
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import boto3
import psycopg

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("XDG_RUNTIME_DIR", tempfile.gettempdir())

from automation.tasks.pitr.state import pitr_state  # noqa: E402
from contract.wal_layout import DEFAULT_ARCHIVE_TIMEOUT  # noqa: E402
from tests.pitr.conftest import aws_env, make_cluster, stop_instances  # noqa: E402
from tests.services import free_port  # noqa: E402

SEGMENT = 16 * 1024 * 1024


def lsn_int(text: str) -> int:
    high, low = text.split("/")
    return (int(high, 16) << 32) + int(low, 16)


def segment_end(name: str) -> int:
    """End position of WAL segment `name` (timeline, log, seg: 8 hex digits each)."""
    log, seg = int(name[8:16], 16), int(name[16:24], 16)
    return (log * 0x100000000 // SEGMENT + seg + 1) * SEGMENT


def writer(url: str, rate: float, seconds: float, commits: list[tuple[int, float]]) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS ticks (id bigserial PRIMARY KEY, at timestamptz)")
        start = time.monotonic()
        n = 0
        while time.monotonic() - start < seconds:
            conn.execute("INSERT INTO ticks (at) VALUES (now())")
            row = conn.execute("SELECT pg_current_wal_insert_lsn()::text").fetchone()
            commits.append((lsn_int(row[0]), time.time()))
            n += 1
            delay = start + n / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)


def sample(
    admin: str, seconds: float, commits: list[tuple[int, float]], since: float
) -> list[float]:
    """Each second: now - the newest archived commit's time (`since`, the writer's start,
    while none of its commits is archived yet: everything since then would be lost)."""
    ages: list[float] = []
    with psycopg.connect(admin, autocommit=True) as conn:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            time.sleep(1.0)
            last = conn.execute("SELECT last_archived_wal FROM pg_stat_archiver").fetchone()[0]
            snapshot = list(commits)
            limit = segment_end(last) if last else 0
            i = bisect.bisect_right([c[0] for c in snapshot], limit)
            ages.append(time.time() - (snapshot[i - 1][1] if i else since))
    return ages


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=300)
    parser.add_argument("--rate", type=float, default=60)
    parser.add_argument(
        "--archive-timeout",
        type=int,
        default=DEFAULT_ARCHIVE_TIMEOUT,
        help=f"seconds (default {DEFAULT_ARCHIVE_TIMEOUT}, the program's)",
    )
    args = parser.parse_args()
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    env = aws_env(f"http://127.0.0.1:{port}")
    os.environ.update(env)
    boto3.client("s3").create_bucket(Bucket="pitr-rpo-bench")
    cluster = make_cluster(
        "pitr-rpo-bench", env["AWS_ENDPOINT_URL"], archive_timeout=args.archive_timeout
    )
    try:
        cluster.base_backup()
        commits: list[tuple[int, float]] = []
        thread = threading.Thread(
            target=writer, args=(cluster.url, args.rate, args.seconds, commits)
        )
        started = time.monotonic()
        since = time.time()
        thread.start()
        ages = sample(cluster.admin, args.seconds, commits, since)
        thread.join()
        elapsed = time.monotonic() - started
        ages_sorted = sorted(ages)
        p99 = ages_sorted[min(len(ages_sorted) - 1, int(0.99 * len(ages_sorted)))]
        state = pitr_state("pitr-rpo-bench", "qr", "backups", database_url=cluster.admin)
        result = {
            "seconds": args.seconds,
            "commits": len(commits),
            "commits_per_second": round(len(commits) / elapsed, 1),
            "samples": len(ages),
            "age_p50": round(statistics.median(ages), 1),
            "age_p99": round(p99, 1),
            "age_max": round(max(ages), 1),
            "window_end": state.window_end.isoformat() if state.window_end else None,
            "archived_count": state.archiver.archived_count if state.archiver else None,
            "archive_timeout": args.archive_timeout,
            "at": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        print(json.dumps(result, indent=2))
    finally:
        cluster.instance.stop("immediate")
        stop_instances(cluster.root)
        server.stop()


if __name__ == "__main__":
    main()
