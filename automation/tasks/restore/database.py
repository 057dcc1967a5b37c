"""The whole database restore: verify, new database, load, check, swap (see the package)."""

from __future__ import annotations

import os
import tempfile
from datetime import datetime
from pathlib import Path
from typing import Any

from automation.errors import OpsError, TaskFailed
from automation.tasks import pgload, pgswap
from automation.tasks.backup import migration_head, table_row_counts
from automation.tasks.backups import (
    BackupRef,
    BarFactory,
    kill_point,
    no_bar,
)
from automation.tasks.io.pgtools import (
    connect,
    database_name,
    db_errors,
    find_pg_tool,
    first_line,
    server_major,
    with_database,
)
from automation.tasks.restore.load import CustomLoad, stream_plain
from automation.tasks.restore.report import Log, RestoreReport
from automation.tasks.restore.source import (
    download_custom,
    verify_custom,
    verify_plain,
)
from contract import backup_layout as bf

# --- check ----------------------------------------------------------------------------------------


def check_restored(url: str, manifest: bf.Manifest | None) -> tuple[dict[str, int], str | None]:
    """Compare the restored database with the facts recorded at backup time."""
    with connect(url) as conn, db_errors(f"checking the restored database {database_name(url)}"):
        counts = table_row_counts(conn)
        head_now = migration_head(conn)
    facts = manifest.database if manifest else None
    if facts is None:
        return counts, head_now
    problems = [
        f"{table}: {counts.get(table, 'missing')} rows, backup recorded {expected}"
        for table, expected in sorted(facts.tables.items())
        if counts.get(table) != expected
    ]
    if facts.migration_head is not None and head_now != facts.migration_head:
        problems.append(f"migration head {head_now!r}, backup recorded {facts.migration_head!r}")
    if problems:
        raise TaskFailed("restored database does not match the backup: " + "; ".join(problems[:5]))
    return counts, head_now


# --- the whole restore ----------------------------------------------------------------------------


def restore_stamp(now: datetime | None = None) -> str:
    """Lower-case, sortable, unique, valid unquoted: 20251122_075300_3f9a07c1 (see the contract)."""
    return bf.throwaway_stamp(now)


class DatabaseRestore:
    """One database restore in two phases, so a stack operation can verify before maintenance:

        with DatabaseRestore(url, client, source) as job:
            job.verify()            # checks the backup, changes nothing
            with maintenance(...):
                job.apply()         # create, load, check, swap

    The temp directory (custom archives only) lives as long as the `with` block.
    """

    def __init__(
        self,
        url: str,
        client: Any,
        source: BackupRef,
        *,
        jobs: int = 1,
        dry_run: bool = False,
        create: bool = False,
        log: Log = lambda line: None,
        bar: BarFactory = no_bar,
    ) -> None:
        self.url, self.client, self.source = url, client, source
        self.create = create
        self.jobs, self.log, self.bar = jobs, log, bar
        self.live = database_name(url)
        self.report = RestoreReport(
            self.live, f"s3://{source.bucket}/{source.key}", source.format, dry_run
        )
        self.dry_run = dry_run
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self._archive: Path | None = None
        self._entries: list[str] = []
        self._inflated = 0
        self._major = 0
        self._verified = False
        self._claim: pgswap.Claim | None = None
        self._guarded = False

    def __enter__(self) -> DatabaseRestore:
        self._tmp = tempfile.TemporaryDirectory(prefix="opsplane-restore-")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._claim is not None:
            self._claim.__exit__(*exc)
            self._claim = None
        if self._tmp is not None:
            self._tmp.cleanup()

    def _take_claim(self) -> None:
        """One restore of a database at a time: the second is refused, naming the first. Held
        until the restore ends (or its process dies: PostgreSQL then releases it)."""
        claim = pgswap.Claim(self.url, f"restore of {self.live} (pid {os.getpid()})")
        self._claim = claim.__enter__()
        claim.take(f"restore:{self.live}", what=f"a restore of {self.live}")

    @property
    def work(self) -> Path:
        assert self._tmp is not None, "use DatabaseRestore as a context manager"
        return Path(self._tmp.name)

    def guard(self) -> None:
        """What every restore into a live database checks first, changing nothing: the target
        is neither protected nor missing (`pgswap.check_target`), no other restore of it runs
        (the exclusive `restore:<db>` claim, held from here to the end), and leftovers are
        reported. Idempotent: a second call only re-checks nothing."""
        if self._guarded:
            return
        pgswap.check_target(self.url, self.live, create=self.create)
        if not self.dry_run:
            self._take_claim()
        self.report.leftovers = pgswap.restore_leftovers(self.url, self.live)
        for name in self.report.leftovers:
            self.log(f"leftover of {interrupted(name)}: {name} (drop with `restore --cleanup`)")
        if pgswap.blocked_live(self.url, self.live):
            self.log(f"{self.live} refuses connections (an interrupted swap); restore re-allows")
        self._major = server_major(pgswap.admin_url(self.url))
        self._guarded = True

    def verify(self) -> RestoreReport:
        """Report leftovers, then read and check the backup. Changes nothing.

        A custom archive whose sha256 was recorded and matches is the file pg_dump wrote: its
        blocks are then inflated once, by the load into the new database (which fails, and is
        dropped, if one does not inflate), instead of twice. A dry run, or an archive without
        a recorded checksum, has every block read here."""
        report = self.report
        self.guard()
        with report.step("verify", self.log) as step:
            read_blocks = self.dry_run or not self.source.sha256
            self._archive, self._inflated, self._entries = _verify(
                self.client, self.source, self._major, self.work, self.bar, read_blocks
            )
            checksum = "matched" if self.source.sha256 else "not recorded (hand-made backup)"
            step.detail = f"{self.source.format}, {self.source.size:,} bytes, sha256 {checksum}"
            if self._archive is not None:
                step.detail += f", {len(self._entries)} entries listed" + (
                    ", every data block read" if read_blocks else ", blocks read by the load"
                )
        self._verified = True
        return report

    def apply(self) -> RestoreReport:
        """Create the new database, load and check it, then swap it in."""
        assert self._verified, "verify() first"
        report, url, live = self.report, self.url, self.live
        _repair_blocked_live(url, live, report, self.log)
        stamp = restore_stamp()
        new = f"{live}{pgswap.RESTORE_INFIX}{stamp}"
        pre = f"{live}{pgswap.PRE_RESTORE_INFIX}{stamp}"
        pgswap.check_name_length(pre)
        live_info = pgswap.check_target(url, live, create=self.create)
        if self._claim is None:
            self._take_claim()
        assert self._claim is not None
        self._claim.take(new)  # `new` is in use, not a leftover, while this process lives
        with report.step("create", self.log) as step:
            pgswap.create_like(url, new, live_info)
            step.detail = new
        try:
            self._load_and_check(with_database(url, new))
        except BaseException as exc:
            self._discard(new, exc)
            raise
        kill_point("before_swap")
        with report.step("swap", self.log) as step:
            report.sessions_ended = pgswap.swap(
                url, live, new, pre, live_exists=live_info is not None, on_step=kill_point
            )
            step.detail = f"{live} -> {pre}, {new} -> {live}" if live_info else f"{new} -> {live}"
        kill_point("after_swap")
        report.restored_from = new
        report.pre_restore = pre if live_info is not None else None
        return report

    def _discard(self, new: str, exc: BaseException) -> None:
        """After a failed load: drop `new` and say so, or (the server is gone) say what is left
        and how to remove it. Raises a TaskFailed carrying both when the drop failed."""
        why = _drop(self.url, new)
        if why is None:
            self.log(f"restore failed: dropped {new}; the live database {self.live} is unchanged")
            return
        self.report.leftovers.append(new)
        left = (
            f"the live database {self.live} is unchanged; {new} is left behind (dropping it "
            f"failed: {why}): remove it with `python -m automation restore --cleanup "
            f"--database-url ...` once the server is back"
        )
        self.log(f"restore failed: {left}")
        if isinstance(exc, OpsError):
            raise TaskFailed(f"{exc}; {left}") from None

    def _load_and_check(self, new_url: str) -> None:
        report, source = self.report, self.source
        with report.step("load", self.log) as step:
            psql = find_pg_tool("psql", self._major)
            if self._archive is None:
                stats = stream_plain(
                    self.client,
                    source,
                    new_url,
                    psql,
                    self.jobs,
                    self._inflated,
                    self.bar,
                    self.work,
                )
                step.detail = f"{self._inflated:,} bytes of SQL, {_load_detail(stats)}"
            else:
                pg_restore = find_pg_tool("pg_restore", self._major)
                load = CustomLoad(
                    self._archive, new_url, pg_restore, psql, self.jobs, self.bar, self.work
                )
                step.detail = f"custom archive: {load.run(self._entries)}"
            report.bytes_restored = self._inflated
        with report.step("check", self.log) as step:
            report.tables, report.migration_head = check_restored(new_url, source.manifest)
            recorded = "matched the backup's record" if source.manifest else "no manifest"
            step.detail = f"{len(report.tables)} tables, head {report.migration_head}, {recorded}"


def _load_detail(stats: pgload.LoadStats) -> str:
    """What the loader did, for the report."""
    if not stats.pg_dump_layout:
        return "one psql session (not a pg_dump script)"
    wide = f"{stats.sessions}-wide"
    copies = f"{stats.parallel_copies} tables copied {wide} in {stats.copy_pieces} pieces"
    post = (
        f"{stats.post_parallel} indexes/constraints {wide}, {stats.post_serial} other post-data "
        f"entries, {stats.foreign_keys_validated} foreign keys validated {wide}"
    )
    return f"{copies}, {post}"


def restore_database(
    url: str,
    client: Any,
    source: BackupRef,
    *,
    jobs: int = 1,
    dry_run: bool = False,
    create: bool = False,
    log: Log = lambda line: None,
    bar: BarFactory = no_bar,
) -> RestoreReport:
    """Verify, restore into a new database, check it, swap it in. See the module doc."""
    with DatabaseRestore(
        url, client, source, jobs=jobs, dry_run=dry_run, create=create, log=log, bar=bar
    ) as job:
        job.verify()
        if dry_run:
            log("dry run: the backup is good; nothing was changed")
            return job.report
        return job.apply()


def interrupted(name: str) -> str:
    """What left the throwaway database `name` behind, for messages."""
    parsed = bf.parse_throwaway(name)
    kind = parsed.kind if parsed else bf.KIND_RESTORE
    return "an interrupted verify-backup" if kind == bf.KIND_VERIFY else "an interrupted restore"


def _drop(url: str, name: str) -> str | None:
    """Drop `name` (forced); None when done, else why not (never raises: the caller is already
    reporting a failure)."""
    try:
        return pgswap.drop_database(url, name, force=True)
    except OpsError:  # connecting failed
        return "PostgreSQL is not reachable"
    except Exception as exc:  # psycopg errors outside the statement (the server went away)
        return first_line(exc)


def _repair_blocked_live(url: str, live: str, report: RestoreReport, log: Log) -> None:
    """A swap killed mid-way can leave the live database refusing connections: undo that."""
    if not pgswap.blocked_live(url, live):
        return
    pgswap.set_allow_connections(url, live, True)
    report.repaired.append(
        f"re-allowed connections to {live} (left blocked by an interrupted swap)"
    )
    log(report.repaired[-1])


def _verify(
    client: Any, source: BackupRef, major: int, work: Path, bar: BarFactory, read_blocks: bool
) -> tuple[Path | None, int, list[str]]:
    """Plain: (None, inflated size, []). Custom: (the archive, its size, its `--list` lines)."""
    if source.format == "plain":
        return None, verify_plain(client, source, bar), []
    pg_restore = find_pg_tool("pg_restore", major)
    path = download_custom(client, source, work, bar, pg_restore, read_blocks=read_blocks)
    entries = verify_custom(path, pg_restore, source)
    return path, path.stat().st_size, entries
