"""Bring the app database of a recovered instance into the live cluster, the way every restore
does (`automation/tasks/restore.py`): verify, shadow database, check, swap.

1. verify: the recovered instance is paused at the target and holds the app database; its
   exact row counts and migration head are recorded (what step 4 checks against);
2. create `<db>_restore_<ts>` like the live database;
3. load: `pg_dump` of the paused instance (a consistent read-only snapshot) streamed into
   `pgload.ScriptLoader` (COPY rows, index builds and foreign keys `--jobs` wide), no temp file;
4. check: the shadow database has the recovered row counts and migration head, exactly;
5. swap (`pgswap.swap`): live -> `<db>_pre_restore_<ts>`, shadow -> live, in one transaction.
Anything failing before the swap drops the shadow database; a SIGKILL leaves it as a leftover
for `restore --cleanup`, and the live database as it was.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path

from automation.errors import TaskFailed
from automation.tasks import pgload, pgswap
from automation.tasks.backup import migration_head, pg_dump_chunks, table_row_counts
from automation.tasks.backups import kill_point
from automation.tasks.io import pgtools
from automation.tasks.restore import RestoreReport
from automation.tasks.restore.database import restore_stamp

Log = Callable[[str], None]


def recorded_facts(source_url: str) -> tuple[dict[str, int], str | None]:
    with pgtools.connect(source_url) as conn, pgtools.db_errors("reading the recovered database"):
        return table_row_counts(conn), migration_head(conn)


def _repair_blocked(url: str, live: str, report: RestoreReport, log: Log) -> None:
    if pgswap.blocked_live(url, live):
        pgswap.set_allow_connections(url, live, True)
        report.repaired.append(
            f"re-allowed connections to {live} (left blocked by an interrupted swap)"
        )
        log(report.repaired[-1])


def bring_into_live(
    url: str, source_url: str, source: str, *, jobs: int = 2, log: Log = lambda line: None
) -> RestoreReport:
    """Replace the live database behind `url` with the database behind `source_url` (the
    recovered instance); `source` names it in the report."""
    live = pgtools.database_name(url)
    report = RestoreReport(live, source, "point-in-time", dry_run=False)
    report.leftovers = pgswap.restore_leftovers(url, live)
    with report.step("verify", log) as step:
        tables, head = recorded_facts(source_url)
        major = pgtools.server_major(pgswap.admin_url(url))
        step.detail = f"recovered database: {len(tables)} tables, {sum(tables.values()):,} rows"
    _repair_blocked(url, live, report, log)
    stamp = restore_stamp()
    new, pre = f"{live}{pgswap.RESTORE_INFIX}{stamp}", f"{live}{pgswap.PRE_RESTORE_INFIX}{stamp}"
    pgswap.check_name_length(pre)
    live_info = pgswap.database_info(url, live)
    with report.step("create", log) as step:
        pgswap.create_like(url, new, live_info)
        step.detail = new
    try:
        _load_and_check(
            report, source_url, pgtools.with_database(url, new), major, jobs, log, (tables, head)
        )
    except BaseException:
        log(f"restore failed: dropping {new}; the live database {live} is unchanged")
        pgswap.drop_database(url, new, force=True)
        raise
    kill_point("before_swap")
    with report.step("swap", log) as step:
        report.sessions_ended = pgswap.swap(
            url, live, new, pre, live_exists=live_info is not None, on_step=kill_point
        )
        step.detail = f"{live} -> {pre}, {new} -> {live}" if live_info else f"{new} -> {live}"
    kill_point("after_swap")
    report.restored_from, report.pre_restore = new, pre if live_info is not None else None
    return report


def _load_and_check(
    report: RestoreReport,
    source_url: str,
    new_url: str,
    major: int,
    jobs: int,
    log: Log,
    facts: tuple[dict[str, int], str | None],
) -> None:
    with (
        report.step("load", log) as step,
        tempfile.TemporaryDirectory(prefix="opsplane-pitr-") as tmp,
    ):
        pg_dump = pgtools.find_pg_tool("pg_dump", major)
        psql = pgtools.find_pg_tool("psql", major)
        loader = pgload.ScriptLoader(psql, new_url, jobs, Path(tmp))
        counted = _counted(pg_dump_chunks(pg_dump, source_url, "plain"), report)
        stats = loader.load(counted)
        step.detail = f"{report.bytes_restored:,} bytes of SQL by pg_dump | psql x{stats.sessions}"
    with report.step("check", log) as step:
        with pgtools.connect(new_url) as conn:
            counts, head = table_row_counts(conn), migration_head(conn)
        tables, expected_head = facts
        problems = [
            f"{table}: {counts.get(table, 'missing')} rows, recovered {rows}"
            for table, rows in sorted(tables.items())
            if counts.get(table) != rows
        ]
        if head != expected_head:
            problems.append(f"migration head {head!r}, recovered {expected_head!r}")
        if problems:
            raise TaskFailed(
                "restored database does not match the recovered one: " + "; ".join(problems[:5])
            )
        report.tables, report.migration_head = counts, head
        step.detail = f"{len(counts)} tables and head {head} match the recovered instance"


def _counted(chunks, report: RestoreReport):  # type: ignore[no-untyped-def]
    first = True
    for chunk in chunks:
        report.bytes_restored += len(chunk)
        yield chunk
        if first:
            kill_point("streaming")
            first = False
