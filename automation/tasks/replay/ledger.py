"""The replay ledger: the durable record of what was delivered, so a rerun never sends twice.

Per event, two durable writes: `sending` just before the first request, then `delivered` or
`failed` once the receiver has answered. The ledger is written (committed / fsynced) before the
worker takes its next event. What that guarantees:

- a rerun skips every event recorded `delivered` (unless `--force`);
- a run killed midway leaves at most `--concurrency` events in `sending`: those the receiver may or
  may not have acknowledged. The next run sends them again (at-least-once; Stripe receivers dedup
  by event id). No other event can be delivered twice.
- resending an event whose last state is `sending` marks it `in_doubt` for good (the mark
  survives later runs and later kills), so every report names every event that may have been
  delivered twice, across all interrupted runs; once such a resend is answered the event is
  `delivered` and never sent again.

Two ledgers: a table `opsplane_webhook_replay_ledger` in the app database (`--from-db`), and a JSON
Lines file `<export>.ledger.jsonl` beside an export (`--from-file`). Both take a lock so two runs
over the same source cannot interleave.
"""

from __future__ import annotations

import fcntl
import json
import os
import queue
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, Protocol

import psycopg

from automation.errors import TaskFailed

LEDGER_TABLE = "opsplane_webhook_replay_ledger"
SENDING, DELIVERED, FAILED = "sending", "delivered", "failed"


@dataclass(frozen=True)
class Outcome:
    """How one event's delivery ended in this run."""

    event_id: str
    delivered: bool
    attempts: int
    status_code: int | None = None
    error: str | None = None  # "HTTP 503", "timeout", "connection error: ...", "interrupted"

    @property
    def reason(self) -> str:
        """The failure class used in the summary: the HTTP status, or the error's first word."""
        if self.status_code is not None:
            return str(self.status_code)
        return (self.error or "unknown").split(":")[0]


class Ledger(Protocol):
    location: str

    def states(self) -> dict[str, str]:
        """Latest state (`sending`/`delivered`/`failed`) of every event ever recorded."""

    def begin(self, event_id: str) -> None:
        """Durably mark `event_id` as being sent (before its first request); if it already was
        (a killed run was sending it), also mark it in doubt, for good."""

    def doubted(self) -> set[str]:
        """Every event ever resent while in doubt: it may have been delivered twice."""

    def finish(self, outcome: Outcome) -> None:
        """Durably record how the event's delivery ended."""

    def close(self) -> None: ...


def _now() -> str:
    return datetime.now(UTC).isoformat()


# --- database ledger -------------------------------------------------------------------------

_CREATE = f"""
CREATE TABLE IF NOT EXISTS {LEDGER_TABLE} (
    event_id     text PRIMARY KEY,
    state        text NOT NULL,
    delivered_at timestamptz,
    status_code  integer,
    attempts     integer NOT NULL DEFAULT 0,
    last_error   text,
    run_id       text NOT NULL,
    updated_at   timestamptz NOT NULL DEFAULT now(),
    in_doubt     boolean NOT NULL DEFAULT false
)"""
# ledgers created before the in-doubt mark existed get the column on their next writable run
_ADD_IN_DOUBT = (
    f"ALTER TABLE {LEDGER_TABLE} ADD COLUMN IF NOT EXISTS in_doubt boolean NOT NULL DEFAULT false"
)

_BEGIN = f"""
INSERT INTO {LEDGER_TABLE} (event_id, state, run_id) VALUES (%s, 'sending', %s)
ON CONFLICT (event_id) DO UPDATE
SET state = 'sending', run_id = EXCLUDED.run_id, updated_at = now(),
    in_doubt = {LEDGER_TABLE}.in_doubt OR {LEDGER_TABLE}.state = 'sending'"""

_FINISH = f"""
INSERT INTO {LEDGER_TABLE} (event_id, state, delivered_at, status_code, attempts, last_error,
                            run_id)
VALUES (%(id)s, %(state)s, CASE WHEN %(ok)s THEN now() END, %(code)s, %(attempts)s, %(error)s,
        %(run)s)
ON CONFLICT (event_id) DO UPDATE
SET state = EXCLUDED.state,
    delivered_at = COALESCE(EXCLUDED.delivered_at, {LEDGER_TABLE}.delivered_at),
    status_code = EXCLUDED.status_code, attempts = EXCLUDED.attempts,
    last_error = EXCLUDED.last_error, run_id = EXCLUDED.run_id, updated_at = now()"""

# one advisory lock key for "a replay is writing this database's ledger"
_LOCK_SQL = "SELECT pg_try_advisory_lock(hashtext('opsplane_webhook_replay'))"


class DbLedger:
    """The ledger table in the app database, written over a small pool of autocommit connections
    (at most POOL_SIZE, whatever the concurrency: the app database's connections are precious)."""

    POOL_SIZE = 4

    def __init__(self, url: str, run_id: str, *, writable: bool) -> None:
        self.url, self.run_id, self.writable = url, run_id, writable
        self.location = f"table {LEDGER_TABLE}"
        self._idle: queue.SimpleQueue[psycopg.Connection] = queue.SimpleQueue()
        self._conns: list[psycopg.Connection] = []
        self._conns_lock = threading.Lock()
        if writable:
            self._take_lock_and_create()

    def _connect(self) -> psycopg.Connection:
        try:
            conn = psycopg.connect(self.url, autocommit=True, connect_timeout=10)
        except psycopg.Error as exc:
            raise TaskFailed(
                f"ledger: cannot connect to the app database ({_first(exc)})"
            ) from None
        self._conns.append(conn)
        return conn

    def _borrow(self) -> psycopg.Connection:
        try:
            return self._idle.get_nowait()
        except queue.Empty:
            pass
        with self._conns_lock:
            if len(self._conns) < self.POOL_SIZE + 1:  # + the connection holding the lock
                return self._connect()
        return self._idle.get()

    def _execute(self, query: str, params: Any, what: str) -> list[tuple[Any, ...]]:
        conn = self._borrow()
        try:
            cursor = conn.execute(query, params)
            return cursor.fetchall() if cursor.description else []
        except psycopg.Error as exc:
            raise TaskFailed(
                f"ledger: cannot record {what} ({_first(exc)}); events in flight stay 'sending' "
                "and the next run resends them as in doubt"
            ) from None
        finally:
            self._idle.put(conn)

    def _take_lock_and_create(self) -> None:
        with self._conns_lock:
            lock_conn = self._connect()
        locked = lock_conn.execute(_LOCK_SQL).fetchone()
        if not (locked and locked[0]):
            raise TaskFailed(
                "another replay is running against this database (its ledger is locked); "
                "wait for it to finish, then rerun"
            )
        try:
            lock_conn.execute(_CREATE)
            lock_conn.execute(_ADD_IN_DOUBT)
        except psycopg.Error as exc:
            raise TaskFailed(
                f"ledger: cannot create {LEDGER_TABLE} ({_first(exc)}); "
                "the database user needs CREATE on the schema"
            ) from None

    def states(self) -> dict[str, str]:
        exists = self._execute("SELECT to_regclass(%s)", (LEDGER_TABLE,), "the ledger")[0][0]
        if exists is None:
            return {}
        return dict(self._execute(f"SELECT event_id, state FROM {LEDGER_TABLE}", None, "states"))

    def begin(self, event_id: str) -> None:
        self._execute(_BEGIN, (event_id, self.run_id), f"sending {event_id}")

    def doubted(self) -> set[str]:
        exists = self._execute("SELECT to_regclass(%s)", (LEDGER_TABLE,), "the ledger")[0][0]
        if exists is None:
            return set()
        query = (  # to_jsonb: a ledger from before the column existed reads as no marks
            f"SELECT event_id FROM {LEDGER_TABLE} l WHERE (to_jsonb(l) ->> 'in_doubt') = 'true'"
        )
        return {row[0] for row in self._execute(query, None, "in-doubt marks")}

    def finish(self, outcome: Outcome) -> None:
        params = {
            "id": outcome.event_id,
            "state": DELIVERED if outcome.delivered else FAILED,
            "ok": outcome.delivered,
            "code": outcome.status_code,
            "attempts": outcome.attempts,
            "error": outcome.error,
            "run": self.run_id,
        }
        self._execute(_FINISH, params, f"the outcome of {outcome.event_id}")

    def close(self) -> None:
        with self._conns_lock:
            for conn in self._conns:
                conn.close()
            self._conns.clear()


def _first(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


# --- file ledger -----------------------------------------------------------------------------


def file_ledger_path(export: Path) -> Path:
    return export.with_name(export.name + ".ledger.jsonl")


class FileLedger:
    """`<export>.ledger.jsonl`: one JSON record per line, appended and fsynced per write."""

    def __init__(self, export: Path, run_id: str, *, writable: bool) -> None:
        self.path = file_ledger_path(export)
        self.location = str(self.path)
        self.run_id = run_id
        self._lock = threading.Lock()
        self._sync_lock = threading.Lock()
        self._written = self._synced = 0
        self._handle: IO[str] | None = None
        self._last: dict[str, str] = {}
        if writable:
            self._open_locked()
            self._last = self.states()  # under the lock: what previous runs left

    def _open_locked(self) -> None:
        try:
            handle = self.path.open("a+", encoding="utf-8")
        except OSError as exc:
            raise TaskFailed(f"ledger {self.path}: cannot open ({exc.strerror})") from None
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            raise TaskFailed(
                f"ledger {self.path} is locked: another replay of this export is running; "
                "wait for it to finish, then rerun"
            ) from None
        handle.seek(0, os.SEEK_END)
        if handle.tell() > 0:
            handle.seek(handle.tell() - 1)
            if handle.read(1) != "\n":  # a write cut short by a crash: start a fresh line
                handle.write("\n")
        self._handle = handle

    def states(self) -> dict[str, str]:
        return {record["event_id"]: record["state"] for record in self._records()}

    def doubted(self) -> set[str]:
        return {record["event_id"] for record in self._records() if record.get("in_doubt")}

    def _records(self) -> list[dict[str, Any]]:
        try:
            lines = self.path.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            return []
        records: list[dict[str, Any]] = []
        for number, line in enumerate(lines, start=1):
            try:
                record = json.loads(line)
                records.append({**record, "event_id": record["event_id"], "state": record["state"]})
            except (ValueError, KeyError, TypeError):
                if line.strip() and number != len(lines) and not _is_cut_line(lines, number):
                    raise TaskFailed(
                        f"ledger {self.path}: line {number} is corrupt; move the file aside "
                        "only if you accept that delivered events may be sent again"
                    ) from None
        return records

    def _append(self, record: dict[str, Any]) -> None:
        """Write one record and return once an fsync covers it (fsyncs are shared: group commit)."""
        assert self._handle is not None, "ledger opened read-only"
        line = json.dumps(record, sort_keys=True) + "\n"
        try:
            with self._lock:
                self._handle.write(line)
                self._handle.flush()
                self._written += 1
                mine = self._written
            with self._sync_lock:
                if self._synced >= mine:
                    return  # another worker's fsync, started after our flush, covered us
                target = self._written  # every record up to here is flushed to the OS
                os.fsync(self._handle.fileno())
                self._synced = target
        except OSError as exc:
            raise TaskFailed(
                f"ledger {self.path}: cannot write ({exc.strerror}); events in flight stay "
                "'sending' and the next run resends them as in doubt"
            ) from None

    def begin(self, event_id: str) -> None:
        record: dict[str, Any] = {
            "event_id": event_id,
            "state": SENDING,
            "at": _now(),
            "run_id": self.run_id,
        }
        with self._lock:
            if self._last.get(event_id) == SENDING:  # a killed run was sending it
                record["in_doubt"] = True
            self._last[event_id] = SENDING
        self._append(record)

    def finish(self, outcome: Outcome) -> None:
        with self._lock:
            self._last[outcome.event_id] = DELIVERED if outcome.delivered else FAILED
        self._append(
            {
                "event_id": outcome.event_id,
                "state": DELIVERED if outcome.delivered else FAILED,
                "status_code": outcome.status_code,
                "attempts": outcome.attempts,
                "last_error": outcome.error,
                "at": _now(),
                "run_id": self.run_id,
            }
        )

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()  # closing releases the flock
            self._handle = None


def _is_cut_line(lines: list[str], number: int) -> bool:
    """A line cut short by a crash, followed by the newline the next run wrote before appending."""
    line = lines[number - 1]
    return not line.rstrip().endswith("}")
