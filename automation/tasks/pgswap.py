"""Database-level operations of a restore: create the target, find leftovers, swap names.

All of them run connected to the server's maintenance database (`postgres`), never to the
database they change. The swap relies on PostgreSQL 16 allowing `ALTER DATABASE ... RENAME` inside
a transaction block: both renames commit together or not at all, and the rename holds an exclusive
lock on the database until commit, so a connection attempt during the swap waits and then sees
either the old or the new database under the live name, never anything in between.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import psycopg
from psycopg import sql

from automation.errors import TaskFailed
from automation.tasks.io.pgtools import connect, first_line, with_database

MAINTENANCE_DB = "postgres"
MAX_IDENTIFIER = 63  # NAMEDATALEN - 1: longer names are silently truncated by PostgreSQL
RESTORE_INFIX = "_restore_"
PRE_RESTORE_INFIX = "_pre_restore_"


@dataclass
class DatabaseInfo:
    name: str
    owner: str
    encoding: str
    collate: str
    ctype: str
    allows_connections: bool


def admin_url(url: str) -> str:
    """The same server and credentials, connected to the maintenance database."""
    return with_database(url, MAINTENANCE_DB)


def admin_connect(url: str) -> psycopg.Connection:
    return connect(admin_url(url), autocommit=True)


def check_name_length(name: str) -> None:
    if len(name) > MAX_IDENTIFIER:
        raise TaskFailed(
            f"database name {name!r} would be longer than PostgreSQL's {MAX_IDENTIFIER} "
            "characters: restore needs a shorter live database name"
        )


def database_info(url: str, name: str) -> DatabaseInfo | None:
    """Owner, encoding and locale of a database, or None when it does not exist."""
    with admin_connect(url) as conn:
        row = conn.execute(
            """SELECT d.datname, pg_get_userbyid(d.datdba), pg_encoding_to_char(d.encoding),
                      d.datcollate, d.datctype, d.datallowconn
               FROM pg_database d WHERE d.datname = %s""",
            (name,),
        ).fetchone()
    return DatabaseInfo(*row) if row else None


def list_databases(url: str, like_prefix: str) -> list[str]:
    """Databases whose name starts with `like_prefix` (taken literally), sorted."""
    pattern = like_prefix.replace("\\", "\\\\").replace("%", r"\%").replace("_", r"\_") + "%"
    with admin_connect(url) as conn:
        rows = conn.execute(
            "SELECT datname FROM pg_database WHERE datname LIKE %s ORDER BY datname", (pattern,)
        ).fetchall()
    return [r[0] for r in rows]


def restore_leftovers(url: str, live: str, exclude: str | None = None) -> list[str]:
    """`<live>_restore_*` databases: targets of restores that did not finish."""
    return [n for n in list_databases(url, live + RESTORE_INFIX) if n != exclude]


def pre_restore_copies(url: str, live: str) -> list[str]:
    """`<live>_pre_restore_*` databases: what the live database was before each restore."""
    return list_databases(url, live + PRE_RESTORE_INFIX)


def create_like(url: str, name: str, like: DatabaseInfo | None) -> None:
    """An empty database with the live one's owner, encoding and locale (from template0)."""
    check_name_length(name)
    query = sql.SQL("CREATE DATABASE {} TEMPLATE template0").format(sql.Identifier(name))
    if like is not None:
        query += sql.SQL(" OWNER {} ENCODING {} LC_COLLATE {} LC_CTYPE {}").format(
            sql.Identifier(like.owner),
            sql.Literal(like.encoding),
            sql.Literal(like.collate),
            sql.Literal(like.ctype),
        )
    with admin_connect(url) as conn:
        try:
            conn.execute(query)
        except psycopg.Error as exc:
            raise TaskFailed(f"cannot create database {name!r}: {first_line(exc)}") from None


def drop_database(url: str, name: str, *, force: bool) -> str | None:
    """Drop one database; returns None when done, else why not (e.g. still in use)."""
    query = sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name))
    if force:
        query += sql.SQL(" WITH (FORCE)")
    with admin_connect(url) as conn:
        try:
            conn.execute(query)
        except psycopg.Error as exc:
            return first_line(exc)
    return None


def set_allow_connections(url: str, name: str, allow: bool) -> None:
    query = sql.SQL("ALTER DATABASE {} WITH ALLOW_CONNECTIONS {}").format(
        sql.Identifier(name), sql.Literal(allow)
    )
    with admin_connect(url) as conn:
        conn.execute(query)


def terminate_sessions(conn: psycopg.Connection, name: str) -> int:
    """End every other session on database `name`; returns how many were signalled."""
    rows = conn.execute(
        """SELECT pg_terminate_backend(pid) FROM pg_stat_activity
           WHERE datname = %s AND pid <> pg_backend_pid()""",
        (name,),
    ).fetchall()
    return len(rows)


def swap(
    url: str,
    live: str,
    new: str,
    pre_restore: str,
    *,
    live_exists: bool = True,
    attempts: int = 5,
    on_step: Callable[[str], None] = lambda step: None,
) -> int:
    """Make `new` the live database; keep the old one as `pre_restore`. Returns sessions ended.

    New connections to the live database are refused while its sessions are ended and the names
    swap (ALLOW_CONNECTIONS false); the old database gets connections back under its new name.
    Both renames are one transaction. A session that slips in between terminate and rename makes
    the rename fail, the transaction rolls back, and the swap is retried.
    """
    check_name_length(pre_restore)
    ended = 0
    if live_exists:
        set_allow_connections(url, live, False)
    try:
        for attempt in range(1, attempts + 1):
            try:
                ended += _swap_once(url, live, new, pre_restore, live_exists, on_step)
                return ended
            except psycopg.errors.ObjectInUse as exc:
                if attempt == attempts:
                    raise TaskFailed(
                        f"could not swap databases: {first_line(exc)} after {attempts} attempts; "
                        f"the live database {live!r} is unchanged"
                    ) from None
                time.sleep(0.2 * attempt)
    finally:
        if live_exists:
            _reallow(url, live, pre_restore)
    return ended


def _swap_once(
    url: str,
    live: str,
    new: str,
    pre_restore: str,
    live_exists: bool,
    on_step: Callable[[str], None],
) -> int:
    with connect(admin_url(url)) as conn:
        ended = terminate_sessions(conn, live) if live_exists else 0
        if ended:
            _wait_for_sessions_to_end(conn, live)
        on_step("swap_begin")
        if live_exists:
            conn.execute(_rename(live, pre_restore))
            on_step("after_first_rename")
        conn.execute(_rename(new, live))
        conn.commit()
    return ended


def _wait_for_sessions_to_end(conn: psycopg.Connection, name: str, timeout: float = 10.0) -> None:
    """pg_terminate_backend only signals; wait until the backends are really gone."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
            (name,),
        ).fetchone()
        conn.rollback()  # a fresh snapshot of pg_stat_activity on the next loop
        if row and row[0] == 0:
            return
        time.sleep(0.05)


def _rename(old: str, new: str) -> sql.Composed:
    return sql.SQL("ALTER DATABASE {} RENAME TO {}").format(
        sql.Identifier(old), sql.Identifier(new)
    )


def _reallow(url: str, live: str, pre_restore: str) -> None:
    """After the swap the old database is `pre_restore`; if the swap failed it is still `live`."""
    for name in (pre_restore, live):
        info = database_info(url, name)
        if info is not None and not info.allows_connections:
            set_allow_connections(url, name, True)


def blocked_live(url: str, live: str) -> bool:
    """True when a swap died after blocking connections to the live database (SIGKILL)."""
    info = database_info(url, live)
    return info is not None and not info.allows_connections
