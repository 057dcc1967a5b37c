"""Database-level operations of a restore: create the target, find leftovers, swap names.

All of them run connected to the server's maintenance database (`postgres`), never to the
database they change. The swap relies on PostgreSQL 16 allowing `ALTER DATABASE ... RENAME` inside
a transaction block: both renames commit together or not at all, and the rename holds an exclusive
lock on the database until commit, so a connection attempt during the swap waits and then sees
either the old or the new database under the live name, never anything in between.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass

import psycopg
from psycopg import sql

from automation.errors import OpsError, TaskFailed, UserInputError
from automation.tasks.io.pgtools import connect, first_line, with_database
from contract import backup_layout as bf

MAINTENANCE_DB = "postgres"
MAX_IDENTIFIER = bf.MAX_IDENTIFIER
RESTORE_INFIX = f"_{bf.KIND_RESTORE}_"
PRE_RESTORE_INFIX = f"_{bf.KIND_PRE_RESTORE}_"
# never a restore target: the templates every CREATE DATABASE copies, and the maintenance database
# every restore (and most tools) connect to
PROTECTED = frozenset({"template0", "template1", "postgres", MAINTENANCE_DB})
CLAIM_NAMESPACE = 0x6F707370  # 'opsp': the first key of every opsplane advisory lock


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


@dataclass(frozen=True)
class Leftover:
    """A database following the throwaway pattern (`contract.backup_layout.throwaway_name`)."""

    name: str
    live: str
    kind: str  # restore | pre_restore | verify
    in_use: bool  # claimed by a running opsplane process (a restore or drill now), or connected

    @property
    def interrupted(self) -> bool:
        """Left behind by a restore or drill that did not finish (a pre-restore copy is kept
        on purpose, so it is never `interrupted`)."""
        return self.kind != bf.KIND_PRE_RESTORE and not self.in_use


_LEFTOVERS = """
SELECT d.datname,
       EXISTS (SELECT 1 FROM pg_locks l
               WHERE l.locktype = 'advisory' AND l.granted AND l.classid = %s::oid
                 AND l.objid = hashtext(d.datname)::oid AND l.objsubid = 2)
       OR EXISTS (SELECT 1 FROM pg_stat_activity a WHERE a.datname = d.datname)
FROM pg_database d ORDER BY d.datname"""


def leftovers(url: str, live: str | None = None) -> list[Leftover]:
    """Every throwaway database on the server behind `url` (only those next to `live` when given):
    `<db>_restore_*`, `<db>_pre_restore_*`, `<db>_verify_*`. What `restore --cleanup` drops."""
    with admin_connect(url) as conn:
        return leftovers_on(conn, live)


def leftovers_on(conn: psycopg.Connection, live: str | None = None) -> list[Leftover]:
    """`leftovers` over a session already open to any database of the server (pg_database and
    pg_locks are server-wide): `status` passes its own read-only session. One query."""
    rows = conn.execute(_LEFTOVERS, (CLAIM_NAMESPACE,)).fetchall()
    found = []
    for name, in_use in rows:
        parsed = bf.parse_throwaway(name)
        if parsed is not None and (live is None or parsed.belongs_to(live)):
            found.append(Leftover(name, parsed.live, parsed.kind, bool(in_use)))
    return found


def restore_leftovers(url: str, live: str, exclude: str | None = None) -> list[str]:
    """`<live>_restore_*` and `<live>_verify_*` databases no running process claims: the targets
    of restores and drills that did not finish."""
    return [x.name for x in leftovers(url, live) if x.interrupted and x.name != exclude]


def pre_restore_copies(url: str, live: str) -> list[str]:
    """`<live>_pre_restore_*` databases: what the live database was before each restore."""
    return [x.name for x in leftovers(url, live) if x.kind == bf.KIND_PRE_RESTORE]


class Claim:
    """Session-level advisory locks held on one maintenance-database connection while a restore or
    drill runs: PostgreSQL releases them when the process dies, however it dies, so a claimed
    throwaway database is in use and an unclaimed one is a leftover. `exclusive` keys refuse a
    second holder (one restore per live database), naming what the first is doing."""

    def __init__(self, url: str, label: str) -> None:
        self.url, self.label = url, label
        self._conn: psycopg.Connection | None = None

    def __enter__(self) -> Claim:
        self._conn = admin_connect(self.url)
        name = f"opsplane {self.label}"[:MAX_IDENTIFIER]
        self._conn.execute("SELECT set_config('application_name', %s, false)", (name,))
        return self

    def __exit__(self, *exc: object) -> None:
        if self._conn is not None:
            self._conn.close()  # ends the session: PostgreSQL drops its locks with it

    def take(self, key: str, *, what: str | None = None) -> None:
        """Hold the lock on `key`; with `what`, it is exclusive: a second holder is refused."""
        assert self._conn is not None, "use Claim as a context manager"
        row = self._conn.execute(
            "SELECT pg_try_advisory_lock(%s, hashtext(%s))", (CLAIM_NAMESPACE, key)
        ).fetchone()
        if row and row[0]:
            return
        holder = self._holder(key)
        raise TaskFailed(
            f"{what or key}: already running ({holder}); wait for it to finish, or end that "
            "process and run `restore --cleanup`"
        )

    def _holder(self, key: str) -> str:
        assert self._conn is not None
        row = self._conn.execute(
            """SELECT a.application_name, a.backend_start FROM pg_locks l
               JOIN pg_stat_activity a ON a.pid = l.pid
               WHERE l.locktype = 'advisory' AND l.granted AND l.classid = %s::oid
                 AND l.objid = hashtext(%s)::oid AND l.objsubid = 2""",
            (CLAIM_NAMESPACE, key),
        ).fetchone()
        if row is None:
            return "it has just ended; try again"
        return f"{row[0] or 'another session'}, since {row[1]:%Y-%m-%d %H:%M:%S %Z}"


def check_target(url: str, live: str, *, create: bool) -> DatabaseInfo | None:
    """Refuse a restore target that must never be replaced, or that does not exist without
    `create`. Returns the live database's info (None: it does not exist and will be created)."""
    if live in PROTECTED:
        raise UserInputError(
            f"--database-url names {live!r}, a template or maintenance database: restore never "
            "replaces it; name the app's database"
        )
    info = database_info(url, live)
    if info is None and not create:
        raise UserInputError(
            f"database {live!r} does not exist on that server: check the name in --database-url, "
            "or pass --create to restore into a new database (a fresh server)"
        )
    if info is not None and _is_template(url, live):
        raise UserInputError(
            f"database {live!r} is a template (datistemplate): restore never replaces one"
        )
    return info


def _is_template(url: str, name: str) -> bool:
    with admin_connect(url) as conn:
        row = conn.execute(
            "SELECT datistemplate FROM pg_database WHERE datname = %s", (name,)
        ).fetchone()
    return bool(row and row[0])


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
            except psycopg.OperationalError as exc:
                raise TaskFailed(
                    f"PostgreSQL went away during the swap ({first_line(exc)}): both renames are "
                    f"one transaction, so {live!r} holds the old or the restored database, never "
                    f"a mix; once the server is back, `restore --cleanup --dry-run` shows what "
                    f"is left ({new!r} if the swap did not commit)"
                ) from None
    finally:
        if live_exists:
            _reallow_quietly(url, live, pre_restore)
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


def _reallow_quietly(url: str, live: str, pre_restore: str) -> None:
    """`_reallow`, unless the server is gone: then the next restore or `--cleanup` re-allows
    (`blocked_live`), and the error being raised is the one worth reading."""
    with contextlib.suppress(OpsError, psycopg.OperationalError):
        _reallow(url, live, pre_restore)


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
