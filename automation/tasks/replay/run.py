"""One replay run: select events, consult the ledger, deliver, summarize.

Plain functions, no CLI: the command (`automation/commands/replay.py`) and the in-cluster Job
both call `replay`.
"""

from __future__ import annotations

import os
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict

from automation.errors import UserInputError
from automation.tasks.io.urls import http_url
from automation.tasks.replay.delivery import DeliveryConfig, deliver_all
from automation.tasks.replay.ledger import DELIVERED, SENDING, DbLedger, FileLedger, Ledger, Outcome
from automation.tasks.replay.options import JOB_DATABASE_URL_ENV as JOB_DATABASE_URL_ENV
from automation.tasks.replay.options import JOB_SECRET_ENV as JOB_SECRET_ENV
from automation.tasks.replay.ratelimit import Rate, RateLimiter
from automation.tasks.replay.sources import (
    Columns,
    Event,
    Filters,
    read_db_events,
    read_file_events,
    select,
)

# what the in-cluster Job reads: the stack declares these from the app's Kubernetes Secrets


@dataclass(frozen=True)
class Source:
    """`--from-db URL` (with its column mapping) or `--from-file PATH`."""

    db_url: str | None = None
    file: Path | None = None
    columns: Columns = field(default_factory=Columns)

    def describe(self) -> str:
        if self.file is not None:
            return f"file {self.file}"
        return f"table {self.columns.table} in database {_db_name(self.db_url or '')}"


def _db_name(url: str) -> str:
    try:
        return str(conninfo_to_dict(url).get("dbname") or "(default)")
    except psycopg.ProgrammingError:
        return "(unparsable URL)"


@dataclass
class Plan:
    """The events this run sends, and those skipped because the ledger says delivered."""

    to_send: list[Event]
    skipped: list[Event]
    in_doubt: list[str]  # to send again: a previous run was killed while sending them
    held: list[str] = field(default_factory=list)  # resent once already and in doubt again


def secret_from_env(var: str) -> str:
    """The signing secret from an environment variable, never echoed."""
    value = os.environ.get(var, "")
    if not value:
        raise UserInputError(
            f"--secret-env {var}: environment variable is unset or empty; export the webhook "
            "signing secret in it and rerun"
        )
    return value


def check_url(url: str) -> str:
    return http_url(url, "--webhook-url", "http://localhost:8000/billing/webhook")


def load_events(source: Source, filters: Filters) -> list[Event]:
    if source.file is not None:
        events = read_file_events(source.file)
    else:
        events = read_db_events(source.db_url or "", source.columns, filters)
    return _first_of_each_id(select(events, filters))


def _first_of_each_id(events: Any) -> list[Event]:
    seen: set[str] = set()
    unique = []
    for event in events:
        if event.id not in seen:
            seen.add(event.id)
            unique.append(event)
    return unique


def open_ledger(source: Source, run_id: str, *, writable: bool) -> Ledger:
    if source.file is not None:
        return FileLedger(source.file, run_id, writable=writable)
    return DbLedger(source.db_url or "", run_id, writable=writable)


def make_plan(
    events: list[Event],
    states: dict[str, str],
    *,
    force: bool,
    limit: int | None,
    doubted: set[str] | None = None,
) -> Plan:
    """Skip delivered events (unless forced); `limit` caps what is sent, not what is skipped.

    An event in `sending` is resent once (in doubt: the killed run may have delivered it). One
    already resent in doubt (`doubted`) and in `sending` again is held, not sent a third time:
    the report names it, and `--id ID --force` sends it after checking the receiver."""
    skipped = [] if force else [e for e in events if states.get(e.id) == DELIVERED]
    held = [] if force else [
        e.id for e in events if states.get(e.id) == SENDING and e.id in (doubted or set())
    ]  # fmt: skip
    not_sent = {e.id for e in skipped} | set(held)
    to_send = [e for e in events if e.id not in not_sent]
    if limit is not None:
        to_send = to_send[:limit]
    in_doubt = [e.id for e in to_send if states.get(e.id) == SENDING]
    return Plan(to_send, skipped, in_doubt, held)


def new_run_id() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ-") + uuid.uuid4().hex[:6]


def summarize(
    plan: Plan, outcomes: list[Outcome], doubted: set[str] | None = None, **context: Any
) -> dict[str, Any]:
    """The report: selected, delivered, failed by status, skipped as already delivered, and
    `in_doubt_resent`: every selected event that may have been delivered twice, by this run or
    an earlier one (the ledger's in-doubt marks, `doubted`)."""
    failed = [o for o in outcomes if not o.delivered]
    delivered = sum(o.delivered for o in outcomes)
    attempted = {o.event_id for o in outcomes}
    selected = {e.id for e in plan.to_send} | {e.id for e in plan.skipped} | set(plan.held)
    resent_now = [i for i in plan.in_doubt if i in attempted]
    return {
        **context,
        "selected": len(selected),
        "skipped_already_delivered": len(plan.skipped),
        "to_send": len(plan.to_send),
        "delivered": delivered,
        "failed": dict(sorted(Counter(o.reason for o in failed).items())),
        "failed_events": [
            {"id": o.event_id, "attempts": o.attempts, "status": o.status_code, "error": o.error}
            for o in failed
        ],
        "not_attempted": len(plan.to_send) - len(outcomes),
        "in_doubt_resent": sorted(((doubted or set()) | set(resent_now)) & selected),
        "in_doubt_resent_this_run": resent_now,
        "held_in_doubt": plan.held,
        "ok": delivered == len(plan.to_send) and not plan.held,
    }


def dry_run_listing(plan: Plan) -> list[dict[str, Any]]:
    return [
        {
            "id": e.id,
            "type": e.type,
            "status": e.status,
            "created": e.created.isoformat() if e.created else None,
            "bytes": len(e.payload),
            "in_doubt": e.id in plan.in_doubt,
        }
        for e in plan.to_send
    ]


def deliver_plan(
    plan: Plan,
    config: DeliveryConfig,
    rate: Rate,
    ledger: Ledger,
    on_outcome: Callable[[Outcome], None] = lambda _: None,
    done: list[Outcome] | None = None,
) -> list[Outcome]:
    """Send the plan; `done` (if given) fills as events finish, even if interrupted."""
    return deliver_all(plan.to_send, config, RateLimiter(rate), ledger, on_outcome, done)
