"""A tiny local stand-in for the QR API: its health endpoint and its Stripe webhook receiver.

- `GET /health`: like the app's readiness check, it opens a database connection and answers 200
  only when the schema it runs on is there (every table and the Alembic head), else 503 saying
  what is missing.
- `POST /webhooks/stripe`: verifies `Stripe-Signature` with the `stripe` library (400 when bad),
  then acknowledges and records the event id. Receivers dedup by event id, so a repeat is
  acknowledged but counted as a duplicate.
"""

from __future__ import annotations

import json
import threading
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import psycopg

from automation.demo.seed import QR_HEAD, QR_TABLES

WEBHOOK_PATH = "/webhooks/stripe"


@dataclass
class StandIn:
    database_url: str
    webhook_secret: str
    deliveries: Counter[str] = field(default_factory=Counter)
    rejected: int = 0

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    def start(self) -> StandIn:
        server = _Server(("127.0.0.1", 0), _handler_for(self))
        self._server = server
        threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    @property
    def base_url(self) -> str:
        assert self._server is not None, "stand-in not started"
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    # --- what the demo checks -------------------------------------------------------------------
    def delivered(self) -> Counter[str]:
        with self._lock:
            return Counter(self.deliveries)

    # --- endpoints --------------------------------------------------------------------------------
    def health(self) -> tuple[int, dict[str, Any]]:
        try:
            with psycopg.connect(self.database_url, connect_timeout=3) as conn:
                present = {
                    name
                    for (name,) in conn.execute(
                        "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
                    )
                }
                missing = sorted(set(QR_TABLES) - present)
                head = None
                if "alembic_version" in present:
                    row = conn.execute("SELECT version_num FROM alembic_version").fetchone()
                    head = row[0] if row else None
        except psycopg.Error as exc:
            return 503, {"status": "unhealthy", "error": f"database: {str(exc).strip()}"}
        if missing:
            return 503, {"status": "unhealthy", "error": f"missing tables: {', '.join(missing)}"}
        if head != QR_HEAD:
            return 503, {"status": "unhealthy", "error": f"schema at {head}, expected {QR_HEAD}"}
        return 200, {"status": "ok", "migration": head}

    def webhook(self, headers: dict[str, str], body: bytes) -> tuple[int, dict[str, Any]]:
        import stripe

        try:
            event = stripe.Webhook.construct_event(
                body, headers.get("Stripe-Signature"), self.webhook_secret
            )
        except (stripe.SignatureVerificationError, ValueError):
            with self._lock:
                self.rejected += 1
            return 400, {"error": "bad signature"}
        with self._lock:
            self.deliveries[str(event["id"])] += 1
        return 200, {"received": True}


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False


def _handler_for(app: StandIn) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            if self.path.split("?")[0] != "/health":
                self.reply(404, {"error": "not found"})
                return
            self.reply(*app.health())

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length)
            if self.path.split("?")[0] != WEBHOOK_PATH:
                self.reply(404, {"error": "not found"})
                return
            self.reply(*app.webhook(dict(self.headers.items()), body))

        def reply(self, status: int, document: dict[str, Any]) -> None:
            data = json.dumps(document).encode()
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):
                self.close_connection = True

        def log_message(self, format: str, *args: object) -> None:  # quiet
            return

    return Handler
