"""`database…`: PostgreSQL reachable and its version, connections by state against
`max_connections` and the app's pool, sessions idle in a transaction, the longest-running query,
leftover restore databases; with `--deep` connections per client and `pg_stat_statements`.

Nothing here prints query text or credentials: only counts, durations, pids and names.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from automation.tasks.checks.model import RUNBOOK, Check, Group
from contract.backup_layout import KIND_PRE_RESTORE

if TYPE_CHECKING:
    from automation.tasks.checks.model import StatusTargets

NEXT_DOWN = f"{RUNBOOK}#alert-databasedown"
NEXT_POOL = f"{RUNBOOK}#alert-databaseconnectionpoolexhausted"
NEXT_IDLE = f"{RUNBOOK}#status-idle-in-transaction"
NEXT_SLOW = f"{RUNBOOK}#status-long-running-query"
NEXT_LEFTOVER = f"{RUNBOOK}#cleaning-up-after-restores"
WARN_USED, FAIL_USED = 0.8, 0.95  # share of max_connections
IDLE_TX_SECONDS = 300
LONG_QUERY_WARN, LONG_QUERY_FAIL = 60.0, 600.0


def group(targets: StatusTargets, timeout: float) -> Group:
    assert targets.database_url
    url = targets.database_url
    return Group("database", lambda: run(url, targets, timeout), NEXT_DOWN)


def connect(url: str, timeout: float) -> Any:
    """A read-only, autocommit session that cannot hang longer than `timeout` on a statement."""
    import psycopg

    # libpq's connect_timeout is whole seconds with a floor of 2; the thread deadline covers it
    return psycopg.connect(
        url,
        connect_timeout=max(2, int(timeout + 0.999)),
        autocommit=True,
        application_name="opsplane-status",
        options=f"-c statement_timeout={int(timeout * 1000)} -c default_transaction_read_only=on",
    )


def run(url: str, targets: StatusTargets, timeout: float) -> list[Check]:
    import psycopg

    try:
        conn = connect(url, timeout)
    except psycopg.Error as exc:
        return [Check("database", "fail", f"unreachable: {first_line(exc)}", NEXT_DOWN)]
    with conn:
        return measure(conn, targets)


def measure(conn: Any, targets: StatusTargets) -> list[Check]:
    version = conn.execute("SHOW server_version").fetchone()[0]
    name = conn.info.dbname
    checks = [Check("database", "pass", f"PostgreSQL {version} reachable, database {name}")]
    checks.append(connections(conn, targets.pool_size))
    checks.append(idle_in_transaction(conn))
    checks.append(longest_query(conn))
    checks.append(leftovers(conn, name))
    if targets.deep:
        checks.append(clients(conn))
        checks.append(top_statements(conn))
    return checks


def connections(conn: Any, pool_size: int | None) -> Check:
    """Client connections by state against max_connections (and the app's pool, if known)."""
    limit = int(conn.execute("SHOW max_connections").fetchone()[0])
    rows = conn.execute(
        "SELECT coalesce(state, 'unknown'), count(*), count(*) FILTER (WHERE datname = "
        "current_database()) FROM pg_stat_activity WHERE backend_type = 'client backend' "
        "GROUP BY 1 ORDER BY 1"
    ).fetchall()
    total = sum(r[1] for r in rows)
    mine = sum(r[2] for r in rows)
    by_state = ", ".join(f"{state} {count}" for state, count, _ in rows) or "none"
    detail = f"{total}/{limit} connections ({by_state}); {mine} to this database"
    if pool_size:
        detail += f" (pool {pool_size})"
    if total >= FAIL_USED * limit:
        return Check("database:connections", "fail", detail, NEXT_POOL)
    if total >= WARN_USED * limit or (pool_size and mine > pool_size):
        return Check("database:connections", "warn", detail, NEXT_POOL)
    return Check("database:connections", "pass", detail)


def idle_in_transaction(conn: Any) -> Check:
    count, oldest = conn.execute(
        "SELECT count(*), coalesce(max(extract(epoch FROM now() - state_change)), 0) "
        "FROM pg_stat_activity WHERE state LIKE 'idle in transaction%%' "
        "AND now() - state_change > make_interval(secs => %s)",
        (IDLE_TX_SECONDS,),
    ).fetchone()
    if count:
        detail = (
            f"{count} session(s) idle in a transaction for more than {IDLE_TX_SECONDS // 60} min "
            f"(oldest {float(oldest):.0f} s)"
        )
        return Check("database:idle-in-transaction", "warn", detail, NEXT_IDLE)
    return Check(
        "database:idle-in-transaction",
        "pass",
        f"no session idle in a transaction for more than {IDLE_TX_SECONDS // 60} min",
    )


def longest_query(conn: Any) -> Check:
    row = conn.execute(
        "SELECT pid, extract(epoch FROM now() - query_start), coalesce(application_name, ''), "
        "coalesce(usename, '') FROM pg_stat_activity WHERE state = 'active' "
        "AND pid <> pg_backend_pid() AND backend_type = 'client backend' "
        "ORDER BY query_start LIMIT 1"
    ).fetchone()
    if row is None:
        return Check("database:longest-query", "pass", "no other query running")
    pid, seconds, application, user = row[0], float(row[1] or 0), row[2], row[3]
    detail = f"{seconds:.1f} s (pid {pid}, user {user or '?'}, application {application or '?'})"
    if seconds >= LONG_QUERY_FAIL:
        return Check("database:longest-query", "fail", detail, NEXT_SLOW)
    if seconds >= LONG_QUERY_WARN:
        return Check("database:longest-query", "warn", detail, NEXT_SLOW)
    return Check("database:longest-query", "pass", detail)


def leftovers(conn: Any, live: str) -> Check:
    """Throwaway databases next to `live`, found as `restore --cleanup` finds them
    (`pgswap.leftovers_on`): pre-restore copies and the targets of restores and drills that did
    not finish, with the disk they hold. One a restore or drill is building now is named apart."""
    from automation.tasks import pgswap

    found = pgswap.leftovers_on(conn, live)
    building = [x.name for x in found if x.kind != KIND_PRE_RESTORE and not x.interrupted]
    left = [x.name for x in found if x.name not in building]
    now = f"; being built now: {', '.join(building)}" if building else ""
    if not left:
        return Check("database:leftovers", "pass", f"no leftover restore databases{now}")
    size = conn.execute(
        "SELECT sum(pg_database_size(datname)) FROM pg_database WHERE datname = ANY(%s)", (left,)
    ).fetchone()[0]
    names = ", ".join(left[:4]) + (" …" if len(left) > 4 else "")
    detail = f"{len(left)} leftover restore database(s), {int(size or 0) / 1e6:.1f} MB: {names}"
    return Check("database:leftovers", "warn", detail + now, NEXT_LEFTOVER)


def clients(conn: Any) -> Check:
    """--deep: connections per client (address, user, application), the busiest first."""
    rows = conn.execute(
        "SELECT coalesce(host(client_addr), 'local'), coalesce(usename, '?'), "
        "coalesce(nullif(application_name, ''), '?'), count(*) FROM pg_stat_activity "
        "WHERE backend_type = 'client backend' GROUP BY 1, 2, 3 ORDER BY 4 DESC LIMIT 8"
    ).fetchall()
    detail = "; ".join(f"{a} {u}/{app}: {n}" for a, u, app, n in rows) or "none"
    return Check("database:clients", "pass", detail)


def top_statements(conn: Any) -> Check:
    """--deep: the statements with the most total time, when pg_stat_statements is installed."""
    import psycopg

    installed = conn.execute(
        "SELECT 1 FROM pg_extension WHERE extname = 'pg_stat_statements'"
    ).fetchone()
    if not installed:
        return Check("database:top-statements", "pass", "pg_stat_statements is not installed")
    try:
        rows = conn.execute(
            "SELECT calls, total_exec_time, mean_exec_time, left(regexp_replace(query, "
            "'\\s+', ' ', 'g'), 60) FROM pg_stat_statements ORDER BY total_exec_time DESC LIMIT 5"
        ).fetchall()
    except psycopg.Error as exc:
        return Check("database:top-statements", "pass", f"not readable: {first_line(exc)}")
    detail = " | ".join(
        f"{q} ({calls} calls, total {total:.0f} ms, mean {mean:.1f} ms)"
        for calls, total, mean, q in rows
    )
    return Check("database:top-statements", "pass", detail or "no statements recorded")


def first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else type(exc).__name__
