"""Backup integrity and the restore drill (`verify-backup`).

`check_backup_integrity` reads the whole object once: sha256 and size against what was recorded,
and the archive readable to its end (gzip stream complete for plain; for custom, `pg_restore`
reads every data block). `restore` checks the same before it creates anything (restore.py),
except that a checksummed custom archive's blocks are read there by the load itself.

`verify_backup` is the runbook's "restore into a throwaway database and look at the migration
history": restore into `<db>_verify_<ts>`, compare tables, row counts and migration head with the
facts recorded at backup time, always drop the throwaway database, tag the backup
`verified=ok|failed`, and report. Dumps made by hand (no metadata) are checked as far as
possible, and the report says what could not be checked.
"""

from __future__ import annotations

import hashlib
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import suppress
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from psycopg import sql

from automation.errors import OpsError, TaskFailed, UserInputError
from automation.tasks.backup import collect_facts
from automation.tasks.backups import BackupRef, find_backup, prometheus_text, push_metrics
from automation.tasks.io import pgtools, s3io
from automation.tasks.io.gz import gunzip_stream
from contract import backup_layout as bf

VERIFY_SUCCESS = "opsplane_backup_verify_success"
VERIFY_LAST_RUN = "opsplane_backup_verify_last_run_timestamp_seconds"
PIPE_CHUNK = 1024 * 1024

Reporter = Callable[[str], None]


class DamagedArchive(TaskFailed):
    """The stored backup is not what was recorded, or not readable to its end."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass
class IntegrityReport:
    key: str
    format: str
    size: int
    sha256: str
    checksum_recorded: bool
    archive_complete: bool


@dataclass
class Check:
    name: str
    ok: bool
    detail: str


@dataclass
class VerifyReport:
    bucket: str
    key: str
    app: str | None
    format: str
    ok: bool = False
    restore_seconds: float | None = None
    database: str | None = None
    checks: list[Check] = field(default_factory=list)
    not_checked: list[str] = field(default_factory=list)

    def add(self, name: str, ok: bool, detail: str) -> bool:
        self.checks.append(Check(name, ok, detail))
        return ok

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# --- integrity -----------------------------------------------------------------------------------


def check_backup_integrity(
    client: Any, ref: BackupRef, pg_restore: Path | None = None
) -> IntegrityReport:
    """Stream the object once: checksum and size as recorded, and the archive readable to the end.

    Raises TaskFailed naming what is wrong. `pg_restore` is needed for custom archives (read in
    full, since `pg_restore --list` reads only the table of contents and misses a truncated tail).
    """
    hasher = hashlib.sha256()
    size = 0

    def counted(chunks: Iterable[bytes]) -> Iterator[bytes]:
        nonlocal size
        for chunk in chunks:
            hasher.update(chunk)
            size += len(chunk)
            yield chunk

    stream = counted(s3io.iter_object(client, ref.bucket, ref.key))
    if ref.format == "custom" and pg_restore is None:
        raise UserInputError("a custom-format backup needs pg_restore to check it")
    problems: list[str] = []
    try:
        if ref.format == "plain":
            drain(gunzip_chunks(stream, ref.key))
        else:
            read_custom_archive(pg_restore, stream, ref.key)  # type: ignore[arg-type]
    except DamagedArchive as exc:
        problems.append(exc.reason)
    drain(stream)  # the checksum covers the whole object even when the archive broke early
    digest = hasher.hexdigest()
    recorded_size = ref.metadata.get(bf.META_SIZE)
    if ref.sha256 is not None and ref.sha256 != digest:
        problems.insert(
            0, f"checksum mismatch: recorded sha256 {ref.sha256[:16]}…, stored {digest[:16]}…"
        )
    if recorded_size and int(recorded_size) != size:
        problems.insert(0, f"size mismatch: recorded {recorded_size} bytes, stored {size}")
    if problems:
        raise DamagedArchive(
            f"s3://{ref.bucket}/{ref.key}: {'; '.join(problems)}; the backup is damaged, "
            "use another one",
            reason="; ".join(problems),
        )
    return IntegrityReport(ref.key, ref.format, size, digest, ref.sha256 is not None, True)


def gunzip_chunks(chunks: Iterable[bytes], key: str) -> Iterator[bytes]:
    """Decompress gzip (also several concatenated members) and insist the stream is complete."""
    try:
        yield from gunzip_stream(chunks, PIPE_CHUNK)
    except ValueError as exc:
        raise DamagedArchive(f"{key}: {exc}; the backup is damaged", str(exc)) from None


def drain(chunks: Iterable[bytes]) -> None:
    for _ in chunks:
        pass


def read_custom_archive(pg_restore: Path, chunks: Iterable[bytes], key: str) -> None:
    """Feed a custom archive to `pg_restore -f /dev/null`, which reads every block to the end."""
    try:
        run_with_stdin(
            [str(pg_restore), "--file=/dev/null"],
            chunks,
            env=None,
            what="custom archive unreadable (pg_restore)",
        )
    except TaskFailed as exc:
        raise DamagedArchive(f"{key}: {exc}", str(exc)) from None


class ToolFailed(TaskFailed):
    """The tool `run_with_stdin` ran exited non-zero (an error reading `chunks` is not this)."""


def run_with_stdin(
    args: list[str], chunks: Iterable[bytes], env: dict[str, str] | None, what: str
) -> None:
    """Run a tool with `chunks` streamed to its stdin; a non-zero exit is ToolFailed with its
    last error line. The writer runs in this thread; stderr is drained by another."""
    proc = subprocess.Popen(
        args, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env
    )
    errors: list[str] = []
    reader = threading.Thread(target=_collect_errors, args=(proc.stderr, errors), daemon=True)
    reader.start()
    try:
        _feed(proc.stdin, chunks)
        code = proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    reader.join(timeout=5)
    if code != 0:
        raise ToolFailed(f"{what} (exit {code}): {errors[-1] if errors else 'no message'}")


def _feed(stdin: IO[bytes] | None, chunks: Iterable[bytes]) -> None:
    assert stdin is not None
    # BrokenPipeError: the tool stopped reading; its exit code and stderr tell why
    with suppress(BrokenPipeError):
        try:
            for chunk in chunks:
                stdin.write(chunk)
        finally:
            with suppress(BrokenPipeError):
                stdin.close()


def _collect_errors(stream: Any, errors: list[str]) -> None:
    for raw in iter(stream.readline, b""):
        line = raw.decode(errors="replace").strip()
        if line and ("error" in line.lower() or "fatal" in line.lower()):
            errors.append(line)
        if len(errors) > 50:
            del errors[:25]


# --- restore into a database ---------------------------------------------------------------------


def create_database(admin_url: str, name: str) -> None:
    fix = "the --database-url role needs CREATEDB"
    with (
        pgtools.connect(admin_url, autocommit=True) as conn,
        pgtools.db_errors(f"cannot create the throwaway database {name}", fix),
    ):
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def drop_database(admin_url: str, name: str) -> None:
    fix = f'drop it by hand: DROP DATABASE "{name}"'
    with (
        pgtools.connect(admin_url, autocommit=True) as conn,
        pgtools.db_errors(f"could not drop the throwaway database {name}", fix),
    ):
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


def restore_into(client: Any, ref: BackupRef, target_url: str, tools: dict[str, Path]) -> None:
    """Stream the backup into an empty database; stops at the first SQL error."""
    env = pgtools.libpq_env(target_url)
    chunks = s3io.iter_object(client, ref.bucket, ref.key)
    if ref.format == "plain":
        args = [
            str(tools["psql"]),
            "--no-psqlrc",
            "--quiet",
            "--no-password",
            "--set=ON_ERROR_STOP=1",
            "--single-transaction",
        ]
        run_with_stdin(args, gunzip_chunks(chunks, ref.key), env, "restore (psql) failed")
    else:
        args = [
            str(tools["pg_restore"]),
            "--no-password",
            "--exit-on-error",
            "--single-transaction",
            f"--dbname={pgtools.database_name(target_url)}",
        ]
        run_with_stdin(args, chunks, env, "restore (pg_restore) failed")


def throwaway_name(database: str, now: datetime | None = None) -> str:
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%d%H%M%S")
    return f"{database[: 63 - len(stamp) - 8]}_verify_{stamp}"


# --- checks --------------------------------------------------------------------------------------


def compare_with_recorded(report: VerifyReport, ref: BackupRef, restored: bf.DatabaseFacts) -> None:
    """Tables present, row counts and migration head against what the backup recorded."""
    recorded = ref.database
    if recorded is None:
        report.not_checked.append("row counts and tables (no manifest recorded them)")
        report.add("tables restored", bool(restored.tables), f"{len(restored.tables)} tables")
    else:
        missing = sorted(set(recorded.tables) - set(restored.tables))
        report.add(
            "tables present",
            not missing,
            f"all {len(recorded.tables)}" if not missing else f"missing: {', '.join(missing)}",
        )
        wrong = [
            f"{t} {restored.tables.get(t)} != {n}"
            for t, n in sorted(recorded.tables.items())
            if t in restored.tables and restored.tables[t] != n
        ]
        rows = sum(recorded.tables.values())
        report.add(
            "row counts", not wrong, f"{rows:,} rows match" if not wrong else "; ".join(wrong)
        )
    head = ref.migration_head
    if head is None:
        report.not_checked.append("migration head (none recorded with the backup)")
        report.add(
            "migration head found",
            True,
            restored.migration_head or "no alembic_version/flyway_schema_history table",
        )
    else:
        report.add(
            "migration head",
            restored.migration_head == head,
            f"{restored.migration_head} (recorded {head})",
        )


# --- the drill -----------------------------------------------------------------------------------


def verify_backup(
    database_url: str,
    bucket: str,
    prefix: str = bf.DEFAULT_PREFIX,
    key: str | None = None,
    app: str | None = None,
    report_progress: Reporter = lambda _: None,
) -> VerifyReport:
    """Check, restore, compare, drop; tag the result on the backup. Raises only for bad input or
    when the drill itself could not run (database or S3 unreachable)."""
    client = s3io.s3_client()
    ref = find_backup(client, bucket, prefix, app, key)
    tools = pgtools.tools_for(database_url, "psql", "pg_restore")
    report = VerifyReport(bucket=bucket, key=ref.key, app=ref.app or app, format=ref.format)
    report_progress(f"verifying s3://{bucket}/{ref.key} ({ref.format}, {ref.size:,} bytes)")
    try:
        judge(client, ref, database_url, tools, report, report_progress)
    except OpsError:
        # the drill could not finish (e.g. no CREATEDB): no verdict, unless a check already failed
        if any(not c.ok for c in report.checks):
            record_result(client, ref, report)
        raise
    record_result(client, ref, report)
    return report


def judge(
    client: Any,
    ref: BackupRef,
    database_url: str,
    tools: dict[str, Path],
    report: VerifyReport,
    progress: Reporter,
) -> None:
    """Run every check into `report` (a failed check is recorded, not raised)."""
    if not ref.managed:
        report.not_checked.append("checksum (none recorded: backup made by hand)")
    try:
        integrity = check_backup_integrity(client, ref, tools["pg_restore"])
    except TaskFailed as exc:
        report.add("integrity", False, str(exc))
        return
    report.add(
        "integrity",
        True,
        f"sha256 {integrity.sha256[:16]}… "
        + ("matches" if integrity.checksum_recorded else "computed")
        + f", {integrity.size:,} bytes, archive complete",
    )
    name = throwaway_name(pgtools.database_name(database_url))
    report.database = name
    target = pgtools.with_database(database_url, name)
    create_database(database_url, name)
    try:
        progress(f"restoring into throwaway database {name}")
        started = time.monotonic()
        try:
            restore_into(client, ref, target, tools)
        except TaskFailed as exc:
            report.add("restore", False, str(exc))
            return
        report.restore_seconds = round(time.monotonic() - started, 3)
        report.add("restore", True, f"restored in {report.restore_seconds:.2f}s")
        with pgtools.connect(target) as conn, pgtools.db_errors(f"reading {name}"):
            restored = collect_facts(conn, name)
        compare_with_recorded(report, ref, restored)
    finally:
        drop_database(database_url, name)
        progress(f"dropped {name}")
    report.ok = all(c.ok for c in report.checks)


def record_result(client: Any, ref: BackupRef, report: VerifyReport) -> None:
    """Tag the backup with the drill's verdict (`report.ok` is set by `judge`)."""
    if not report.checks:
        return
    tags = {
        bf.TAG_VERIFIED: "ok" if report.ok else "failed",
        bf.TAG_VERIFIED_AT: bf.new_run_id(),
    }
    if report.restore_seconds is not None:
        tags[bf.TAG_VERIFIED_SECONDS] = f"{report.restore_seconds:.1f}"
    s3io.merge_tags(client, ref.bucket, ref.key, tags)


def push_verify_result(gateway: str, app: str, success: bool) -> None:
    now = time.time()
    labels = {"app": app}
    body = prometheus_text(
        [(VERIFY_SUCCESS, labels, 1.0 if success else 0.0), (VERIFY_LAST_RUN, labels, now)],
        {
            VERIFY_SUCCESS: "1 when the last restore drill passed every check.",
            VERIFY_LAST_RUN: "Unix time of the last restore drill.",
        },
    )
    push_metrics(gateway, "opsplane_backup_verify", labels, body)
