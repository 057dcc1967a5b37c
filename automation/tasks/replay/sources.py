"""Where replayed events come from: the app's webhook log table, or an exported event file.

Every source yields `Event`s whose `payload` is the exact bytes to send (never re-serialized).
Filters (`Filters`) select the same way for both sources; order is oldest first, then by id.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from automation.errors import TaskFailed, UserInputError
from automation.tasks.replay.options import Columns as Columns


@dataclass(frozen=True)
class Event:
    """One webhook event to deliver: `payload` is sent byte for byte."""

    id: str
    payload: bytes
    type: str | None = None
    status: str | None = None
    created: datetime | None = None


@dataclass(frozen=True)
class Filters:
    """Which events to replay. `status=None` means any status."""

    status: str | None = "failed"
    since: datetime | None = None
    until: datetime | None = None
    types: tuple[str, ...] = ()
    ids: tuple[str, ...] = ()

    def matches(self, event: Event) -> bool:
        if self.status is not None and event.status != self.status:
            return False
        if self.ids and event.id not in self.ids:
            return False
        if self.types and not any(fnmatchcase(event.type or "", p) for p in self.types):
            return False
        if (self.since or self.until) and event.created is None:
            return False
        if self.since and event.created and event.created < self.since:
            return False
        return not (self.until and event.created and event.created >= self.until)


_RELATIVE_RE = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhdw])$")
_RELATIVE_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_time(option: str, text: str, now: datetime | None = None) -> datetime:
    """ISO 8601 (UTC when no offset), a unix timestamp, or an age such as `90m`, `6h`, `2d`."""
    value = text.strip()
    relative = _RELATIVE_RE.match(value)
    if relative:
        age = timedelta(**{_RELATIVE_UNITS[relative.group(2)]: float(relative.group(1))})
        return (now or datetime.now(UTC)) - age
    if re.fullmatch(r"\d{9,11}(\.\d+)?", value):
        return datetime.fromtimestamp(float(value), UTC)
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise UserInputError(
            f"{option} {text!r}: not a time; use ISO 8601 (2024-05-01T12:00:00Z), "
            "a unix timestamp, or an age like 6h / 2d"
        ) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


# --- the app's webhook log table -------------------------------------------------------------


def _table_identifier(table: str) -> sql.Identifier:
    schema, _, name = table.rpartition(".")
    return sql.Identifier(schema, name) if schema else sql.Identifier(name)


def table_columns(conn: psycopg.Connection, table: str) -> dict[str, str]:
    """Column name -> data type of `table` (`schema.table` or a name on the search path)."""
    schema, _, name = table.rpartition(".")
    rows = conn.execute(
        """SELECT a.attname, format_type(a.atttypid, a.atttypmod)
           FROM pg_attribute a
           WHERE a.attrelid = to_regclass(%s) AND a.attnum > 0 AND NOT a.attisdropped""",
        (f'"{schema}"."{name}"' if schema else f'"{name}"',),
    ).fetchall()
    return dict(rows)


def check_columns(columns: Columns, available: dict[str, str]) -> None:
    """One clear error naming every mapped column the table lacks."""
    if not available:
        raise UserInputError(
            f"--table {columns.table!r}: no such table in the source database; "
            "name the app's webhook log table with --table"
        )
    missing = [
        f"{opt} {col!r}" for opt, col in columns.option_names().items() if col not in available
    ]
    if missing:
        raise UserInputError(
            f"{', '.join(missing)}: not a column of {columns.table} "
            f"(columns: {', '.join(sorted(available))}); map them with the --*-column options"
        )


def _like_pattern(glob: str) -> str:
    escaped = glob.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped.replace("*", "%")


def _select_query(
    columns: Columns, filters: Filters, payload_type: str
) -> tuple[sql.Composed, list[Any]]:
    ident = sql.Identifier
    payload = ident(columns.payload)
    payload_expr = payload if payload_type == "bytea" else sql.SQL("{}::text").format(payload)
    where: list[sql.Composable] = []
    params: list[Any] = []
    if filters.status is not None:
        where.append(sql.SQL("{} = %s").format(ident(columns.status)))
        params.append(filters.status)
    if filters.since:
        where.append(sql.SQL("{} >= %s").format(ident(columns.created)))
        params.append(filters.since)
    if filters.until:
        where.append(sql.SQL("{} < %s").format(ident(columns.created)))
        params.append(filters.until)
    if filters.ids:
        where.append(sql.SQL("{}::text = ANY(%s)").format(ident(columns.id)))
        params.append(list(filters.ids))
    if filters.types:
        where.append(sql.SQL("{}::text LIKE ANY(%s)").format(ident(columns.type)))
        params.append([_like_pattern(t) for t in filters.types])
    query = sql.SQL(
        "SELECT {id}::text, {payload}, {type}::text, {status}::text, {created} FROM {table}"
        " WHERE {where} ORDER BY {created} ASC NULLS FIRST, {id} ASC"
    ).format(
        id=ident(columns.id),
        payload=payload_expr,
        type=ident(columns.type),
        status=ident(columns.status),
        created=ident(columns.created),
        table=_table_identifier(columns.table),
        where=sql.SQL(" AND ").join(where) if where else sql.SQL("true"),
    )
    return query, params


def _as_datetime(value: object) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return value if value is None or value.tzinfo else value.replace(tzinfo=UTC)
    raise UserInputError(f"--created-column: values are {type(value).__name__}, not timestamps")


def read_db_events(url: str, columns: Columns, filters: Filters) -> list[Event]:
    """Matching rows of the webhook log table; text payloads are sent as their UTF-8 bytes."""
    try:
        with psycopg.connect(url, connect_timeout=10) as conn:
            available = table_columns(conn, columns.table)
            check_columns(columns, available)
            if "timestamp" not in available[columns.created] and (filters.since or filters.until):
                raise UserInputError(
                    f"--created-column {columns.created!r} is {available[columns.created]}, "
                    "not a timestamp: --since/--until need one"
                )
            query, params = _select_query(columns, filters, available[columns.payload])
            rows = conn.execute(query, params).fetchall()
    except psycopg.OperationalError as exc:
        raise TaskFailed(f"--from-db: cannot connect ({_first(exc)}); check the URL") from None
    except psycopg.ProgrammingError as exc:
        raise UserInputError(
            f"--from-db: not a PostgreSQL URL ({_first(exc)}); "
            "use postgresql://user:password@host:5432/dbname"
        ) from None
    return [_row_event(row) for row in rows]


def _first(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _row_event(row: tuple[Any, ...]) -> Event:
    event_id, payload, event_type, status, created = row
    body = bytes(payload) if isinstance(payload, bytes | memoryview) else str(payload).encode()
    return Event(event_id, body, event_type, status, _as_datetime(created))


# --- exported event files --------------------------------------------------------------------

_DECODER = json.JSONDecoder()
_WS = " \t\r\n"


def _skip_ws(text: str, pos: int) -> int:
    while pos < len(text) and text[pos] in _WS:
        pos += 1
    return pos


def _expect(text: str, pos: int, char: str, path: Path) -> int:
    pos = _skip_ws(text, pos)
    if pos >= len(text) or text[pos] != char:
        raise UserInputError(
            f"--from-file {path}: malformed event list (expected {char!r} at offset {pos}); "
            "pass `stripe events list` JSON or JSON Lines"
        )
    return pos + 1


def _list_spans(text: str, path: Path) -> list[str]:
    """The raw JSON text of each element of the top-level object's `data` array."""
    pos = _expect(text, 0, "{", path)
    spans: list[str] = []
    while True:
        pos = _skip_ws(text, pos)
        if text.startswith("}", pos):
            return spans
        key, pos = _DECODER.raw_decode(text, pos)
        pos = _expect(text, pos, ":", path)
        pos = _skip_ws(text, pos)
        if key == "data":
            pos = _expect(text, pos, "[", path)
            while not text.startswith("]", _skip_ws(text, pos)):
                start = _skip_ws(text, pos)
                _, pos = _DECODER.raw_decode(text, start)
                spans.append(text[start:pos])
                pos = _skip_ws(text, pos)
                if text.startswith(",", pos):
                    pos += 1
            pos = _skip_ws(text, pos) + 1
        else:
            _, pos = _DECODER.raw_decode(text, pos)
        pos = _skip_ws(text, pos)
        if text.startswith(",", pos):
            pos += 1


def _file_event(raw: bytes, where: str, path: Path) -> Event:
    try:
        obj = json.loads(raw)
    except ValueError as exc:  # JSONDecodeError, or UnicodeDecodeError for bytes not UTF-8
        detail = exc.msg if isinstance(exc, json.JSONDecodeError) else str(exc)
        raise UserInputError(f"--from-file {path}: {where} is not JSON ({detail})") from None
    if not isinstance(obj, dict) or not isinstance(obj.get("id"), str):
        raise UserInputError(f"--from-file {path}: {where} is not an event object with an 'id'")
    created = obj.get("created")
    when = datetime.fromtimestamp(created, UTC) if isinstance(created, int | float) else None
    event_type = obj.get("type") if isinstance(obj.get("type"), str) else None
    return Event(obj["id"], raw, event_type, None, when)


def _is_list_document(text: str) -> bool:
    try:
        obj, end = _DECODER.raw_decode(text, _skip_ws(text, 0))
    except ValueError:
        return False
    return (
        _skip_ws(text, end) == len(text)
        and isinstance(obj, dict)
        and obj.get("object") == "list"
        and isinstance(obj.get("data"), list)
    )


def read_file_events(path: Path) -> list[Event]:
    """Events of a `stripe events list` JSON document or a JSON Lines file of Event objects.

    JSON Lines: each line's bytes are sent exactly. List document: each element's raw text as it
    appears in the file (indentation inside the element included), encoded as UTF-8.
    """
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise UserInputError(f"--from-file {path}: cannot read ({exc.strerror})") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise UserInputError(f"--from-file {path}: not UTF-8 text") from None
    if _is_list_document(text):
        spans = _list_spans(text, path)
        return [_file_event(s.encode(), f"data[{i}]", path) for i, s in enumerate(spans)]
    events = []
    for number, line in enumerate(data.split(b"\n"), start=1):
        raw = line.removesuffix(b"\r")
        if raw.strip():
            events.append(_file_event(raw, f"line {number}", path))
    if not events:
        raise UserInputError(f"--from-file {path}: no events in the file")
    return events


def select(events: Iterable[Event], filters: Filters) -> Iterator[Event]:
    """Filtered, oldest first (events without a time keep file order, first)."""
    matched = [e for e in events if filters.matches(e)]
    epoch = datetime.min.replace(tzinfo=UTC)
    ordered = sorted(enumerate(matched), key=lambda p: (p[1].created or epoch, p[0]))
    return (event for _, event in ordered)
