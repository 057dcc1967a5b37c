"""Real services for tests: embedded PostgreSQL 16 (pgserver) and S3 over HTTP (moto server)."""

from __future__ import annotations

import os
import socket
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import boto3
import pgserver
import psycopg
import pytest


@dataclass
class Postgres:
    """A running embedded PostgreSQL server reached over its unix socket."""

    server: pgserver.PostgresServer
    socket_dir: str
    bin_dir: Path

    def url(self, dbname: str = "postgres", user: str = "postgres") -> str:
        return f"postgresql://{user}@/{dbname}?host={self.socket_dir}"

    def create_database(self, prefix: str = "t") -> str:
        """A fresh database with a unique name; returns its URL."""
        name = f"{prefix}_{uuid.uuid4().hex[:10]}"
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    data_dir = tempfile.mkdtemp(prefix="opsplane-pg-")
    server = pgserver.get_server(data_dir, cleanup_mode="delete")
    socket_dir = server.get_uri().split("host=")[1]
    bin_dir = Path(pgserver.__file__).parent / "pginstall" / "bin"
    try:
        yield Postgres(server=server, socket_dir=socket_dir, bin_dir=bin_dir)
    finally:
        server.cleanup()


@dataclass
class S3:
    endpoint: str

    def client(self):  # boto3 client typing is dynamic
        return boto3.client("s3", endpoint_url=self.endpoint, region_name="us-east-1")

    def create_bucket(self, prefix: str = "bkt") -> str:
        name = f"{prefix}-{uuid.uuid4().hex[:10]}"
        self.client().create_bucket(Bucket=name)
        return name


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3]:
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield S3(endpoint=f"http://127.0.0.1:{port}")
    finally:
        server.stop()


@pytest.fixture
def s3(s3_server: S3, monkeypatch: pytest.MonkeyPatch) -> S3:
    """S3 over HTTP with the standard AWS environment pointing at it (as a CronJob would see)."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_server.endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    return s3_server


os.environ.setdefault("XDG_RUNTIME_DIR", tempfile.gettempdir())
