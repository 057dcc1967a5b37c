"""Shared helpers for the backup/verify task tests (real pgserver, moto server, redis-server)."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from click.testing import Result
from typer.testing import CliRunner

from tests import schemas
from tests.services import S3, Postgres, free_port


def populate(url: str, system: str, rows: int) -> str:
    """Create `system`'s schema ("qr" or "quickbite") with generated rows; returns its head."""
    if system == "qr":
        schemas.create_qr_schema(url, rows)
        return schemas.QR_HEAD
    schemas.create_quickbite_schema(url, rows)
    return schemas.QUICKBITE_HEAD


# --- shared fixtures and helpers (import them into a test module to use them) ------------------

REDIS_PASSWORD = "r3dis-test-pw"


def run_cli(*args: str) -> Result:
    """Run `python -m automation ARGS` in-process; stdout and stderr are kept apart."""
    from automation.cli import app

    return CliRunner().invoke(app, list(args))


def one_line_error(result: Result) -> str:
    """The single error line a failed command printed (and proof there was no traceback)."""
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    return lines[0]


@dataclass
class SourceDb:
    url: str
    system: str
    head: str
    name: str


def make_source(postgres: Postgres, system: str, rows: int = 400) -> SourceDb:
    url = postgres.create_database(system)
    head = populate(url, system, rows)
    return SourceDb(url=url, system=system, head=head, name=url.split("/")[3].split("?")[0])


def row_counts(url: str) -> dict[str, int]:
    """Independent of the task code: count every public table's rows."""
    with psycopg.connect(url) as conn:
        tables = [
            r[0]
            for r in conn.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1"
            )
        ]
        return {
            f"public.{t}": conn.execute(f'SELECT count(*) FROM "{t}"').fetchone()[0]  # type: ignore[index]
            for t in tables
        }


def bucket_keys(s3: S3, bucket: str) -> list[str]:
    return [o["Key"] for o in s3.client().list_objects_v2(Bucket=bucket).get("Contents", [])]


def key_ending(s3: S3, bucket: str, suffix: str) -> str:
    """The first key in the bucket that ends with `suffix` (tests make one backup run)."""
    return next(key for key in bucket_keys(s3, bucket) if key.endswith(suffix))


def open_uploads(s3: S3, bucket: str) -> list[dict[str, Any]]:
    return s3.client().list_multipart_uploads(Bucket=bucket).get("Uploads", [])


def load_manifest(s3: S3, bucket: str, key: str) -> dict[str, Any]:
    return json.loads(s3.client().get_object(Bucket=bucket, Key=key)["Body"].read())


def databases(postgres: Postgres) -> list[str]:
    with psycopg.connect(postgres.url()) as conn:
        return [r[0] for r in conn.execute("SELECT datname FROM pg_database")]


@dataclass
class Redis:
    port: int
    password: str
    url: str

    def cli(self, *args: str) -> str:
        env = dict(os.environ, REDISCLI_AUTH=self.password)
        return subprocess.run(
            ["redis-cli", "-p", str(self.port), *args],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()


def start_redis(directory: Path, *extra: str) -> tuple[subprocess.Popen[bytes], Redis]:
    """A real redis-server with a password on a free port; waits until it answers."""
    port = free_port()
    proc = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--requirepass",
         REDIS_PASSWORD, "--save", "", "--appendonly", "no", "--dir", str(directory),
         "--repl-diskless-sync-delay", "0", *extra],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    redis = Redis(port, REDIS_PASSWORD, f"redis://:{REDIS_PASSWORD}@127.0.0.1:{port}/0")
    for _ in range(100):
        try:
            if redis.cli("PING") == "PONG":
                return proc, redis
        except subprocess.CalledProcessError:
            pass
        time.sleep(0.05)
    proc.kill()
    raise RuntimeError("redis-server did not start")


@pytest.fixture(name="redis_server")
def redis_server_fixture(tmp_path: Path) -> Iterator[Redis]:
    """A password-protected redis-server (import this name to use the `redis_server` fixture)."""
    proc, redis = start_redis(tmp_path)
    try:
        yield redis
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@contextmanager
def capture_pushes() -> Iterator[tuple[str, list[tuple[str, str]]]]:
    """A tiny local Pushgateway stand-in: records (path, body) of every POST, answers 200."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    pushes: list[tuple[str, str]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", 0))
            pushes.append((self.path, self.rfile.read(length).decode()))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", pushes
    finally:
        server.shutdown()
        server.server_close()


def promtool_accepts(body: str) -> bool:
    """`promtool check metrics` (the real Prometheus parser) accepts the exposition text."""
    result = subprocess.run(
        ["promtool", "check", "metrics"], input=body, capture_output=True, text=True
    )
    return result.returncode == 0
