"""Shared helpers for the backup/verify task tests (real pgserver, moto server, redis-server)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg

from tests import schemas

_LONE_PERCENT = re.compile(r"(?<!%)%(?![s%])")


class _EscapingConnection:
    """Wraps a psycopg connection so a query with parameters may use `%` as the modulo operator.

    `tests/schemas.py` writes `i % 3` next to `%s` placeholders, which psycopg rejects; this
    doubles lone `%` only, so it is a no-op once the shared module escapes them itself.
    """

    def __init__(self, conn: psycopg.Connection) -> None:
        self._conn = conn

    def execute(self, query: str, params: Any = None) -> Any:
        if params is not None:
            query = _LONE_PERCENT.sub("%%", query)
        return self._conn.execute(query, params)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)

    def __enter__(self) -> _EscapingConnection:
        self._conn.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._conn.__exit__(*exc)


@contextmanager
def _escaped_connect() -> Iterator[None]:
    original = schemas.psycopg.connect

    def connect(*args: Any, **kwargs: Any) -> _EscapingConnection:
        return _EscapingConnection(original(*args, **kwargs))

    schemas.psycopg.connect = connect  # type: ignore[assignment]
    try:
        yield
    finally:
        schemas.psycopg.connect = original


def populate(url: str, system: str, rows: int) -> str:
    """Create `system`'s schema ("qr" or "quickbite") with generated rows; returns its head."""
    with _escaped_connect():
        if system == "qr":
            schemas.create_qr_schema(url, rows)
            return schemas.QR_HEAD
        schemas.create_quickbite_schema(url, rows)
        return schemas.QUICKBITE_HEAD
