"""Helpers for the `status` tests: real local HTTP servers (healthy, failing, slow, hung), a TCP
server that accepts and never answers (a hung PostgreSQL or Redis), an Alertmanager stand-in, and
backup runs written in the shared layout with chosen run ids (to age them)."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from click.testing import Result
from typer.testing import CliRunner

from contract import backup_layout as bf


def run_status(*args: str) -> Result:
    """`python -m automation status ARGS` in-process; stdout and stderr kept apart."""
    from automation.cli import app

    return CliRunner().invoke(app, ["status", *args])


def by_name(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in document["checks"]}


class HttpService:
    """A local HTTP server answering GET with `code` after `delay` seconds; `alerts` (a list) is
    served as JSON on /api/v2/alerts (Alertmanager's API) and /api/v1/alerts (Prometheus')."""

    def __init__(self, code: int = 200, delay: float = 0.0) -> None:
        self.code, self.delay, self.alerts = code, delay, None
        self.hits = 0
        service = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                service.hits += 1
                time.sleep(service.delay)
                body = b'{"status": "ok"}'
                if self.path.startswith("/api/v2/alerts") and service.alerts is not None:
                    body = json.dumps(service.alerts).encode()
                if self.path.startswith("/api/v1/alerts") and service.alerts is not None:
                    data = {"status": "success", "data": {"alerts": service.alerts}}
                    body = json.dumps(data).encode()
                self.send_response(service.code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str = "/health") -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}{path}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@contextmanager
def http_service(code: int = 200, delay: float = 0.0) -> Iterator[HttpService]:
    service = HttpService(code, delay)
    try:
        yield service
    finally:
        service.close()


@contextmanager
def silent_server() -> Iterator[int]:
    """A TCP port that accepts connections and never answers (nor closes them): a hung peer."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                continue
            held.append(conn)

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        thread.join(timeout=2)
        for conn in held:
            conn.close()
        listener.close()


def closed_port() -> int:
    """A port nothing listens on (connection refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run_id_ago(**delta: float) -> str:
    return (datetime.now(UTC) - timedelta(**delta)).strftime(bf.RUN_ID_FORMAT)


def put_run(
    client: Any, bucket: str, app: str, run_id: str, parts: tuple[str, ...] = ("db",)
) -> dict[str, str]:
    """A backup run in the shared layout (parts, then the manifest last); returns part -> key."""
    names = {"db": bf.DB_CUSTOM, "redis": bf.REDIS_PART, "objects": bf.OBJECTS_DIR + "a.png"}
    keys = {}
    for part in parts:
        key = bf.part_key(bf.DEFAULT_PREFIX, app, run_id, names[part])
        client.put_object(Bucket=bucket, Key=key, Body=b"PGDMP" if part == "db" else b"x")
        keys[part] = key
    manifest = bf.Manifest(app=app, run_id=run_id, created_at=run_id)
    client.put_object(
        Bucket=bucket,
        Key=bf.part_key(bf.DEFAULT_PREFIX, app, run_id, bf.MANIFEST),
        Body=manifest.to_json(),
    )
    return keys


def tag_drill(client: Any, bucket: str, key: str, verdict: str, at: str, seconds: float) -> None:
    """What `verify-backup` records on the database part after a drill."""
    client.put_object_tagging(
        Bucket=bucket,
        Key=key,
        Tagging={
            "TagSet": [
                {"Key": bf.TAG_VERIFIED, "Value": verdict},
                {"Key": bf.TAG_VERIFIED_AT, "Value": at},
                {"Key": bf.TAG_VERIFIED_SECONDS, "Value": f"{seconds:.1f}"},
            ]
        },
    )
