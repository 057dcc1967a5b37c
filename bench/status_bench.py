"""`status` wall time, interpreter start-up included: a full healthy report of one app, and the
same with one hung dependency (a health endpoint that accepts and never answers).

    .venv/bin/python bench/status_bench.py                 # 7 rounds each, --timeout 2
    .venv/bin/python bench/status_bench.py --rounds 11 --timeout 5

Real services on 127.0.0.1, started here: embedded PostgreSQL 16 (pgserver; the QR schema with a
few hundred rows), redis-server, S3 (moto server) holding a fresh backup run with a passed drill,
two HTTP health endpoints and an Alertmanager stand-in. Each round is one
`python -m automation status --app qr ... --json` process (what an engineer types), timed from
spawn to exit. Goals (issue 13): healthy <= 1.5 s; one hung dependency <= timeout + 1 s.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.services import free_port
from tests.status import HttpService, put_run, run_id_ago, silent_server, tag_drill
from tests.tasks.test_restore_support import create_qr

REPO = Path(__file__).resolve().parents[1]


@contextmanager
def postgres_url() -> Iterator[str]:
    import pgserver
    import psycopg

    server = pgserver.get_server(
        tempfile.mkdtemp(prefix="opsplane-bench-pg-"), cleanup_mode="delete"
    )
    try:
        url = server.get_uri()
        create_qr(url, rows=300)
        with psycopg.connect(url) as conn:  # every failed webhook delivered: a healthy app
            conn.execute("UPDATE webhook_logs SET status = 'processed'")
        yield url
    finally:
        server.cleanup()


@contextmanager
def redis_url() -> Iterator[str]:
    port = free_port()
    proc = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        for _ in range(100):
            ping = subprocess.run(["redis-cli", "-p", str(port), "PING"], capture_output=True)
            if ping.stdout.strip() == b"PONG":
                break
            time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@contextmanager
def s3_bucket() -> Iterator[tuple[str, str]]:
    import boto3
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    try:
        client = boto3.client(
            "s3",
            endpoint_url=endpoint,
            region_name="us-east-1",
            aws_access_key_id="bench",
            aws_secret_access_key="bench",
        )
        client.create_bucket(Bucket="bench")
        keys = put_run(client, "bench", "qr", run_id_ago(hours=2), ("db", "redis"))
        tag_drill(client, "bench", keys["db"], "ok", run_id_ago(hours=1), 30)
        yield endpoint, "bench"
    finally:
        server.stop()


def time_status(args: list[str], env: dict[str, str]) -> tuple[float, int, dict]:
    started = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "automation", "status", *args, "--json"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
    )
    elapsed = time.perf_counter() - started
    return elapsed, proc.returncode, json.loads(proc.stdout)


def rounds(label: str, args: list[str], env: dict[str, str], count: int) -> float:
    times = []
    for _ in range(count):
        elapsed, code, report = time_status(args, env)
        times.append(elapsed)
    worst = {c["name"]: c["status"] for c in report["checks"] if c["status"] != "pass"}
    median = statistics.median(times)
    spread = f"min {min(times):.2f} s, max {max(times):.2f} s"
    print(f"{label}: median {median:.2f} s over {count} rounds ({spread}); exit {code}; "
          f"{len(report['checks'])} checks, not passing: {worst or 'none'}")  # fmt: skip
    return median


def main() -> None:
    import logging

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's request log
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--timeout", type=float, default=2.0)
    options = parser.parse_args()
    with ExitStack() as stack:
        db = stack.enter_context(postgres_url())
        redis = stack.enter_context(redis_url())
        endpoint, bucket = stack.enter_context(s3_bucket())
        services = [HttpService(), HttpService(), HttpService()]
        for service in services:
            stack.callback(service.close)
        api, web, alertmanager = services
        alertmanager.alerts = []
        hung = stack.enter_context(silent_server())
        env = dict(os.environ, AWS_ENDPOINT_URL=endpoint, AWS_ACCESS_KEY_ID="bench",
                   AWS_SECRET_ACCESS_KEY="bench", AWS_DEFAULT_REGION="us-east-1")  # fmt: skip
        base = ["--app", "qr", "--database-url", db, "--redis-url", redis, "--bucket", bucket,
                "--webhook-table", "webhook_logs", "--alertmanager-url", alertmanager.url(""),
                "--timeout", f"{options.timeout:g}"]  # fmt: skip
        base += ["--health-url", f"web={web.url('/')}"]
        healthy = rounds(
            "healthy", [*base, "--health-url", f"api={api.url()}"], env, options.rounds
        )
        hung_args = [*base, "--health-url", f"api=http://127.0.0.1:{hung}/health"]
        stuck = rounds("one hung dependency", hung_args, env, options.rounds)
    print(f"goals: healthy {healthy:.2f} s <= 1.5 s: {'met' if healthy <= 1.5 else 'NOT met'}; "
          f"hung {stuck:.2f} s <= timeout + 1 = {options.timeout + 1:g} s: "
          f"{'met' if stuck <= options.timeout + 1 else 'NOT met'}")  # fmt: skip


if __name__ == "__main__":
    main()
