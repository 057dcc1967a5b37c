"""Benchmark: the runbook's `pg_dump | gzip > file` against `python -m automation backup` to S3.

Not a test: it prints figures. In one run it
1. starts an embedded PostgreSQL 16 (pgserver) and a moto S3 server (its own process, so its CPU
   and memory are not the automation process's);
2. generates a database of at least --size-mb MB (QR-shaped tables: accounts, qr_items with jsonb
   payloads, qr_events);
3. alternates, --rounds times: the runbook's way (v16 `pg_dump` piped into `gzip -6` into a
   file) and `python -m automation backup` (zlib level --gzip-level, default 1 = the task's
   default) uploading to the moto server;
4. reports throughput (database bytes per second of wall time), the ratio automation/runbook
   (best round of each), and the automation process's peak RSS (`ru_maxrss` of that process
   itself, read when it exits; its pg_dump child is not counted, the runbook side's gzip and
   pg_dump are not either), and checks that it wrote no file (empty cwd and TMPDIR).

Run: .venv/bin/python bench/backup_bench.py [--size-mb 220] [--rounds 3] [--gzip-level 1]
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import boto3
import pgserver
import psycopg

ROOT = Path(__file__).resolve().parents[1]

# measures the automation process alone: its own peak RSS, written when it exits
RSS_WRAPPER = """
import os, resource, runpy, sys
sys.argv = ["automation", *sys.argv[1:]]
try:
    runpy.run_module("automation", run_name="__main__")
finally:
    with open(os.environ["BENCH_RSS_FILE"], "w") as f:
        f.write(str(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss))
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def generate(url: str, size_mb: int) -> int:
    """Fill the database in batches until it is at least `size_mb`; returns its size in bytes."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            """CREATE TABLE accounts (id uuid PRIMARY KEY, email text NOT NULL, plan text NOT NULL,
                                      created_at timestamptz NOT NULL DEFAULT now());
               CREATE TABLE qr_items (id bigserial PRIMARY KEY, owner_id uuid NOT NULL,
                                      target_url text NOT NULL, payload jsonb NOT NULL,
                                      created_at timestamptz NOT NULL DEFAULT now());
               CREATE TABLE qr_events (id bigserial PRIMARY KEY, item_id bigint NOT NULL,
                                       type text NOT NULL, created_at timestamptz NOT NULL
                                       DEFAULT now());
               CREATE TABLE alembic_version (version_num varchar(32) PRIMARY KEY);
               INSERT INTO alembic_version VALUES ('7f3a9c1d2e4b');
               INSERT INTO accounts (id, email, plan)
                 SELECT md5(i::text)::uuid, 'user' || i || '@example.com',
                        (ARRAY['free','pro','team'])[1 + i % 3]
                 FROM generate_series(1, 50000) AS i;"""
        )
        batch = 0
        while database_size(conn) < size_mb * 1024 * 1024:
            start = batch * 200_000
            conn.execute(
                """INSERT INTO qr_items (owner_id, target_url, payload, created_at)
                   SELECT md5((1 + i %% 50000)::text)::uuid,
                          'https://example.com/r/' || md5(i::text) || '?utm=' || (i %% 97),
                          jsonb_build_object('size', 128 + i %% 512, 'color', '#' ||
                              substr(md5((i * 7)::text), 1, 6), 'label', md5((i * 13)::text),
                              'n', i),
                          now() - make_interval(secs => i)
                   FROM generate_series(%s, %s) AS i""",
                (start + 1, start + 200_000),
            )
            conn.execute(
                """INSERT INTO qr_events (item_id, type, created_at)
                   SELECT %s + i %% 200000, (ARRAY['scan','create','export'])[1 + i %% 3],
                          now() - make_interval(secs => i)
                   FROM generate_series(1, 400000) AS i""",
                (start + 1,),
            )
            batch += 1
        conn.execute("VACUUM ANALYZE")
        return database_size(conn)


def database_size(conn: psycopg.Connection) -> int:
    row = conn.execute("SELECT pg_database_size(current_database())").fetchone()
    return int(row[0]) if row else 0


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def process_cpu(pid: int) -> float:
    """CPU seconds (user + system) a running process has used so far, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def runbook_way(pg_bin: Path, url: str, out: Path) -> tuple[float, int, float]:
    """`pg_dump db | gzip > file`, as the runbook's crontab line does; seconds, bytes, CPU."""
    cpu = children_cpu()
    started = time.perf_counter()
    subprocess.run(
        f"'{pg_bin / 'pg_dump'}' '{url}' | gzip > '{out}'", shell=True, check=True
    )  # fmt: skip
    return time.perf_counter() - started, out.stat().st_size, children_cpu() - cpu


def automation_way(
    url: str, bucket: str, level: int, env: dict[str, str]
) -> tuple[float, int, float]:
    """`python -m automation backup` to the moto server; seconds, peak RSS (KiB), CPU."""
    workdir = Path(tempfile.mkdtemp(prefix="bench-cwd-"))
    tmpdir = Path(tempfile.mkdtemp(prefix="bench-tmp-"))
    rss_file = Path(tempfile.mkdtemp(prefix="bench-rss-")) / "rss"
    run_env = env | {
        "TMPDIR": str(tmpdir),
        "BENCH_RSS_FILE": str(rss_file),
        "PYTHONPATH": str(ROOT),
    }
    args = [sys.executable, "-c", RSS_WRAPPER, "backup", "--database-url", url,
            "--bucket", bucket, "--gzip-level", str(level)]  # fmt: skip
    cpu = children_cpu()
    started = time.perf_counter()
    done = subprocess.run(args, env=run_env, cwd=workdir, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"automation backup failed: {done.stderr.strip()}")
    seconds = time.perf_counter() - started
    cpu = children_cpu() - cpu
    leftovers = list(workdir.iterdir()) + list(tmpdir.iterdir())
    if leftovers:
        raise SystemExit(f"automation backup left files behind: {leftovers}")
    rss_kib = int(rss_file.read_text())
    for d in (workdir, tmpdir, rss_file.parent):
        shutil.rmtree(d, ignore_errors=True)
    return seconds, rss_kib, cpu


def start_moto(port: int) -> subprocess.Popen[bytes]:
    moto = shutil.which("moto_server", path=str(Path(sys.executable).parent)) or "moto_server"
    proc = subprocess.Popen(
        [moto, "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise SystemExit("moto_server did not start")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size-mb", type=int, default=220)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--gzip-level", type=int, default=1)
    opts = parser.parse_args()

    os.environ.setdefault("XDG_RUNTIME_DIR", tempfile.gettempdir())
    data_dir = tempfile.mkdtemp(prefix="bench-pg-")
    server = pgserver.get_server(data_dir, cleanup_mode="delete")
    socket_dir = server.get_uri().split("host=")[1]
    pg_bin = Path(pgserver.__file__).parent / "pginstall" / "bin"
    port = free_port()
    moto = start_moto(port)
    out_dir = Path(tempfile.mkdtemp(prefix="bench-runbook-"))
    try:
        with psycopg.connect(f"postgresql://postgres@/postgres?host={socket_dir}") as conn:
            conn.autocommit = True
            conn.execute("CREATE DATABASE qr_bench")
        url = f"postgresql://postgres@/qr_bench?host={socket_dir}"
        print(f"generating >= {opts.size_mb} MB ...", flush=True)
        size = generate(url, opts.size_mb)
        print(f"database size: {size / 1e6:.1f} MB (pg_database_size)")

        env = dict(os.environ) | {
            "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
            "AWS_ACCESS_KEY_ID": "bench",
            "AWS_SECRET_ACCESS_KEY": "bench",
            "AWS_DEFAULT_REGION": "us-east-1",
        }
        boto3.client(
            "s3",
            endpoint_url=env["AWS_ENDPOINT_URL"],
            region_name="us-east-1",
            aws_access_key_id="bench",
            aws_secret_access_key="bench",
        ).create_bucket(Bucket="bench-backups")

        runbook_s, automation_s, rss = [], [], []
        for round_no in range(1, opts.rounds + 1):
            out = out_dir / f"backup_{round_no}.sql.gz"
            seconds, gz_size, cpu = runbook_way(pg_bin, url, out)
            runbook_s.append(seconds)
            print(f"round {round_no}: runbook    {seconds:6.2f}s  cpu {cpu:5.1f}s "
                  f"(pg_dump+gzip)  {gz_size / 1e6:.1f} MB file", flush=True)  # fmt: skip
            moto_cpu = process_cpu(moto.pid)
            seconds, rss_kib, cpu = automation_way(url, "bench-backups", opts.gzip_level, env)
            moto_cpu = process_cpu(moto.pid) - moto_cpu
            automation_s.append(seconds)
            rss.append(rss_kib)
            print(f"round {round_no}: automation {seconds:6.2f}s  cpu {cpu:5.1f}s "
                  f"(python+pg_dump) + {moto_cpu:4.1f}s moto  peak RSS {rss_kib / 1024:.0f} MiB",
                  flush=True)  # fmt: skip

        best_runbook, best_automation = min(runbook_s), min(automation_s)
        ratio = best_runbook / best_automation
        print()
        print(f"runbook    pg_dump | gzip -6 > file : {size / best_runbook / 1e6:7.1f} MB/s "
              f"(best of {opts.rounds}; median {statistics.median(runbook_s):.2f}s)")  # fmt: skip
        print(f"automation backup -> S3 (level {opts.gzip_level}) : "
              f"{size / best_automation / 1e6:7.1f} MB/s (best of {opts.rounds}; "
              f"median {statistics.median(automation_s):.2f}s)")  # fmt: skip
        median_ratio = statistics.median(runbook_s) / statistics.median(automation_s)
        print(f"throughput ratio automation/runbook: {ratio:.2f} best-of, "
              f"{median_ratio:.2f} median  (goal >= 0.9)")  # fmt: skip
        print(f"automation peak RSS: {max(rss) / 1024:.0f} MiB  (goal < 150 MiB)")
        print("automation temp files: none (cwd and TMPDIR empty after every run)")
        print(f"cpu: {os.cpu_count()} cores")
    finally:
        moto.terminate()
        moto.wait(timeout=10)
        shutil.rmtree(out_dir, ignore_errors=True)
        server.cleanup()


if __name__ == "__main__":
    main()
