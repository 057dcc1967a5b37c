"""Bring the app database of a recovered instance into the live cluster through the plain
restore's own path (`automation/tasks/restore/database.py`, `DatabaseRestore`): its guards
(protected or missing target refused, one restore per database, shadow database claimed, failed
drop reported), shadow database, check, swap. Only the source differs:

1. verify: the recovered instance is paused at the target and holds the app database; its
   exact row counts and migration head are recorded (what step 4 checks against);
2. create `<db>_restore_<ts>` like the live database;
3. load: `pg_dump` of the paused instance (a consistent read-only snapshot) streamed into
   `pgload.ScriptLoader` (COPY rows, index builds and foreign keys `--jobs` wide), no temp file;
4. check: the shadow database has the recovered row counts and migration head, exactly;
5. swap (`pgswap.swap`): live -> `<db>_pre_restore_<ts>`, shadow -> live, in one transaction.
Anything failing before the swap drops the shadow database (or, when the drop fails, names it
and `restore --cleanup`); a SIGKILL leaves it as a leftover for `restore --cleanup`, and the
live database as it was.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path

from automation.errors import TaskFailed
from automation.tasks import pgload
from automation.tasks.backup import migration_head, pg_dump_chunks, table_row_counts
from automation.tasks.backups import BackupRef, kill_point
from automation.tasks.io import pgtools
from automation.tasks.restore.database import DatabaseRestore
from automation.tasks.restore.report import RestoreReport

Log = Callable[[str], None]


def recorded_facts(source_url: str) -> tuple[dict[str, int], str | None]:
    with pgtools.connect(source_url) as conn, pgtools.db_errors("reading the recovered database"):
        return table_row_counts(conn), migration_head(conn)


class PointInTimeRestore(DatabaseRestore):
    """The plain restore's path (`DatabaseRestore`: `guard` -> verify -> `apply`), with the
    recovered instance as its source instead of a backup file: the same target checks, the
    same exclusive `restore:<db>` claim, the claimed shadow database, the same swap and the
    same handling of a failed drop. Only verify (read the recovered facts) and load (pg_dump of
    the paused instance) differ.

        with PointInTimeRestore(url, source_url, source) as job:
            job.guard()    # before the recovery: protected/missing target, a restore running
            job.verify()
            job.apply()
    """

    def __init__(
        self, url: str, source_url: str, source: str, *, jobs: int = 2, log: Log = lambda _: None
    ) -> None:
        ref = BackupRef(bucket="", key=source, format="point-in-time", size=0)
        super().__init__(url, None, ref, jobs=jobs, log=log)
        self.source_url = source_url
        self.report = RestoreReport(self.live, source, "point-in-time", dry_run=False)
        self._facts: tuple[dict[str, int], str | None] = ({}, None)

    def verify(self) -> RestoreReport:
        self.guard()
        with self.report.step("verify", self.log) as step:
            self._facts = recorded_facts(self.source_url)
            tables = self._facts[0]
            step.detail = f"recovered database: {len(tables)} tables, {sum(tables.values()):,} rows"
        self._verified = True
        return self.report

    def _load_and_check(self, new_url: str) -> None:
        _load_and_check(
            self.report, self.source_url, new_url, self._major, self.jobs, self.log, self._facts
        )


def bring_into_live(
    url: str, source_url: str, source: str, *, jobs: int = 2, log: Log = lambda line: None
) -> RestoreReport:
    """Replace the live database behind `url` with the database behind `source_url` (the
    recovered instance); `source` names it in the report."""
    with PointInTimeRestore(url, source_url, source, jobs=jobs, log=log) as job:
        job.verify()
        return job.apply()


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
