"""What the replay command line needs before anything runs (defaults, names): no psycopg, no
HTTP client, so `replay --help` stays cheap. The task modules import these from here."""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_CONCURRENCY = 16
JOB_SECRET_ENV = "OPSPLANE_WEBHOOK_SECRET"
JOB_DATABASE_URL_ENV = "OPSPLANE_DATABASE_URL"


@dataclass(frozen=True)
class Columns:
    """Column names of the webhook log table (the QR / QuickBite `webhook_logs` by default)."""

    table: str = "webhook_logs"
    id: str = "event_id"
    payload: str = "payload"
    type: str = "event_type"
    status: str = "status"
    created: str = "created_at"

    def option_names(self) -> dict[str, str]:
        return {
            "--id-column": self.id,
            "--payload-column": self.payload,
            "--type-column": self.type,
            "--status-column": self.status,
            "--created-column": self.created,
        }
