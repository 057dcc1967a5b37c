"""Restore a database backup without ever leaving the live database partial.

Steps (each timed in the report):
1. verify, before anything changes. Plain `.sql.gz`: streamed from S3, sha256 compared with the
   manifest/metadata, gzip decompressed to its end (a truncated or corrupt stream is refused),
   and a dump that would `\\connect` elsewhere is refused. Custom format: streamed to a temp file
   (sha256 as it arrives) because `pg_restore --jobs` needs a seekable file, and its table of
   contents listed. Its data blocks are read here too for a dry run or when no sha256 was
   recorded; otherwise the matching sha256 says the file is what pg_dump wrote, and the load
   (step 3) is what inflates every block, once.
0. refuse a target that is a template or the maintenance database, or that does not exist
   (unless `create`), and a second restore of the same database while one runs (`pgswap.Claim`).
2. create `<db>_restore_<ts>` (owner, encoding and locale of the live database); names follow
   `contract.backup_layout.throwaway_name`, unique even for two restores in the same second.
3. load, `--jobs N` sessions. Plain (`pgload.ScriptLoader`): streamed again S3 -> gunzip -> psql
   with no temp file (and checksummed again, so a backup replaced in between is caught); COPY
   rows and index builds go N-wide. Custom: `pg_restore --jobs N` up to the first foreign key,
   then the loader, which validates foreign keys N-wide (see `CustomLoad`).
4. check: every table the manifest recorded exists with its row count, and the migration head
   matches.
5. swap (see `pgswap.swap`): live -> `<db>_pre_restore_<ts>`, new -> live, in one transaction.
A failure before the swap drops the new database and leaves the live one untouched; when the drop
itself fails (the server stopped), the error says so, names the leftover and `restore --cleanup`.

Verification checks what `verify.check_backup_integrity` checks (sha256, size, the archive read
to its end; for a checksummed custom archive the load does the reading), done here so that a
custom archive is downloaded once and the file verified is the file `pg_restore` loads, and so
that a `\\connect` in a plain dump is refused.

`OPSPLANE_TEST_KILL_AT=<step>` makes the process SIGKILL itself at that step. It exists for the
crash tests only (tests/tasks/test_restore_kill.py); nothing sets it in production.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import queue
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, BinaryIO

from automation.errors import OpsError, TaskFailed, UserInputError
from automation.tasks import pgload, pgswap
from automation.tasks.backup import migration_head, table_row_counts
from automation.tasks.backups import (
    KILL_ENV,  # noqa: F401  (re-exported: the crash tests import it from here)
    Advance,
    BarFactory,
    find_backup,
    kill_point,
    no_bar,
)
from automation.tasks.backups import BackupRef as BackupRef  # commands name it task.BackupRef
from automation.tasks.io.gz import gunzip_stream
from automation.tasks.io.pgtools import (
    connect,
    database_name,
    db_errors,
    find_pg_tool,
    first_line,
    server_major,
    with_database,
)
from automation.tasks.io.s3io import MultipartUpload, iter_object
from automation.tasks.verify import ToolFailed, drain, run_with_stdin
from contract import backup_layout as bf

READ_CHUNK = 256 * 1024

Log = Callable[[str], None]


# --- what to restore ------------------------------------------------------------------------------
# `backups.find_backup` resolves --key/--latest to a `BackupRef` (managed or hand-made dump).


def resolve_source(
    client: Any, bucket: str, *, prefix: str, app: str | None, key: str | None
) -> BackupRef:
    """The database dump named by `key` (a dump, a run folder or a manifest) or the latest run."""
    return find_backup(client, bucket, prefix=prefix, app=app, key=key)


# --- report ---------------------------------------------------------------------------------------


@dataclass
class Step:
    name: str
    seconds: float
    detail: str = ""


@dataclass
class RestoreReport:
    database: str
    source: str
    format: str
    dry_run: bool
    steps: list[Step] = field(default_factory=list)
    leftovers: list[str] = field(default_factory=list)
    restored_from: str | None = None  # the temporary name the restored database was built under
    pre_restore: str | None = None
    tables: dict[str, int] = field(default_factory=dict)
    migration_head: str | None = None
    sessions_ended: int = 0
    bytes_restored: int = 0
    repaired: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @contextlib.contextmanager
    def step(self, name: str, log: Log) -> Iterator[Step]:
        log(f"{name} ...")
        started = time.monotonic()
        entry = Step(name, 0.0)
        try:
            yield entry
        finally:
            entry.seconds = round(time.monotonic() - started, 3)
            self.steps.append(entry)
        detail = f" ({entry.detail})" if entry.detail else ""
        log(f"{name}: done in {entry.seconds:.1f}s{detail}")


# --- verify ---------------------------------------------------------------------------------------


def prefetch(chunks: Iterable[bytes], depth: int = 8) -> Iterator[bytes]:
    """Read `chunks` in a background thread, up to `depth` ahead, so the S3 download overlaps
    the caller's gunzip/sha256 (both release the GIL). Memory: at most `depth` chunks."""
    buffer: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def offer(item: tuple[str, Any]) -> bool:
        while not stop.is_set():
            try:
                buffer.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False  # the consumer went away

    def reader() -> None:
        try:
            for chunk in chunks:
                if not offer(("chunk", chunk)):
                    return
            offer(("end", None))
        except BaseException as exc:  # handed to the consumer, raised in its thread
            offer(("error", exc))

    thread = threading.Thread(target=reader, name="s3-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            kind, value = buffer.get()
            if kind == "end":
                return
            if kind == "error":
                raise value
            yield value
    finally:
        stop.set()
        thread.join(timeout=5)


class Checksummed:
    """Wraps a chunk stream: sha256 and byte count of everything that passed through."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._chunks = chunks
        self.sha = hashlib.sha256()
        self.size = 0

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self._chunks:
            self.sha.update(chunk)
            self.size += len(chunk)
            yield chunk

    def mismatch(self, expected: str | None, recorded_size: str | None = None) -> str | None:
        """What differs from the recorded sha256 (and size, when recorded), or None."""
        got = self.sha.hexdigest()
        if expected and got != expected.lower():
            return f"checksum mismatch: stored sha256 {expected[:12]}..., content {got[:12]}..."
        if recorded_size and recorded_size.isdigit() and int(recorded_size) != self.size:
            return f"size mismatch: recorded {recorded_size} bytes, read {self.size}"
        return None


_CONNECT_LINE = re.compile(rb"\n\\c(?:onnect)?[ \n]")  # `\\connect db`, `\\c db`


def read_backup(client: Any, source: BackupRef) -> tuple[Checksummed, Iterator[bytes]]:
    """The backup's bytes, read and checksummed in a background thread (hashlib and the socket
    release the GIL, so that overlaps the caller's gunzip)."""
    stream = Checksummed(iter_object(client, source.bucket, source.key, READ_CHUNK))
    return stream, prefetch(stream)


def switches_database(tail: bytes, out: bytes) -> bool:
    """Does `out` (preceded by `tail`, the end of the text before it) hold a `\\connect` line?"""
    return bool(_CONNECT_LINE.search(tail + out[:16]) or _CONNECT_LINE.search(out))


def verify_plain(client: Any, source: BackupRef, bar: BarFactory) -> int:
    """Read the whole `.sql.gz`; return its inflated size or raise TaskFailed with the reason."""
    stream, chunks = read_backup(client, source)
    inflated = 0
    tail = b"\n"
    try:
        with bar("verify (sha256 + gunzip)", source.size or None) as advance:
            done = 0
            for out in gunzip_stream(chunks):
                if switches_database(tail, out):
                    raise ValueError(
                        "the dump switches database with \\connect (made with pg_dump --create); "
                        "restore would write outside the new database: make it without --create"
                    )
                tail = (tail + out)[-16:] if len(out) < 16 else out[-16:]
                inflated += len(out)
                advance(stream.size - done)
                done = stream.size
    except ValueError as exc:
        raise refused(source, str(exc)) from None
    problem = stream.mismatch(source.sha256, source.metadata.get(bf.META_SIZE))
    if problem:
        raise refused(source, problem)
    return inflated


def download_custom(
    client: Any,
    source: BackupRef,
    directory: Path,
    bar: BarFactory,
    pg_restore: Path,
    *,
    read_blocks: bool,
) -> Path:
    """Stream a custom archive to a temp file (pg_restore --jobs needs to seek), checksummed.
    With `read_blocks`, the same bytes go into `pg_restore --file /dev/null` as they arrive
    (`verify.run_with_stdin`), which inflates every data block, so the download and the read
    take the time of the slower of the two, not the sum."""
    path = directory / "db.dump"
    stream, chunks = read_backup(client, source)
    unreadable: str | None = None
    what = "download + read archive" if read_blocks else "download archive (sha256)"
    with path.open("wb") as out, bar(what, source.size or None) as step:
        saved = _written(chunks, out, step)
        if read_blocks:
            try:
                args = [str(pg_restore), "--file", os.devnull]
                run_with_stdin(args, saved, None, "unreadable custom archive (data)")
            except ToolFailed as exc:  # an S3 error reading the archive is raised as it is
                unreadable = str(exc)  # reported after the checksum, which may explain it
        drain(saved)  # the rest, when pg_restore stopped early: the checksum covers it all
    problem = stream.mismatch(source.sha256, source.metadata.get(bf.META_SIZE))
    if problem:
        raise refused(source, problem)
    if unreadable:
        raise refused(source, unreadable)
    return path


def _written(chunks: Iterable[bytes], out: BinaryIO, advance: Advance) -> Iterator[bytes]:
    """`chunks`, each written to `out` (and counted) as it passes."""
    for chunk in chunks:
        out.write(chunk)
        advance(len(chunk))
        yield chunk


_TOC_ENTRY = re.compile(r"^\d+; \d+ \d+ (?P<what>.+)$")  # a `pg_restore --list` entry line


def verify_custom(path: Path, pg_restore: Path, source: BackupRef) -> list[str]:
    """The archive's table of contents must read; returns its entries' `--list` lines."""
    result = subprocess.run(
        [str(pg_restore), "--list", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        reason = pgload.tool_error(result.stderr) or f"pg_restore exited {result.returncode}"
        raise refused(source, f"unreadable custom archive (table of contents): {reason}")
    return [line for line in result.stdout.splitlines() if _TOC_ENTRY.match(line)]


def refused(source: BackupRef, reason: str) -> TaskFailed:
    return TaskFailed(
        f"backup s3://{source.bucket}/{source.key} refused, nothing was changed: {reason}"
    )


# --- load ---------------------------------------------------------------------------------------
# A plain dump streams from S3 through `pgload.ScriptLoader` (COPY rows N-wide, indexes N-wide);
# a custom archive with `pg_restore --jobs N` (whole tables N-wide, indexes as tables finish), and
# its foreign keys and what follows them through the loader (validated N-wide).


def stream_plain(
    client: Any,
    source: BackupRef,
    target_url: str,
    psql: Path,
    sessions: int,
    inflated_total: int,
    bar: BarFactory,
    log_dir: Path,
) -> pgload.LoadStats:
    """S3 -> gunzip -> `sessions` psql sessions, without a temp file."""
    stream, chunks = read_backup(client, source)

    def unchanged_to_the_end() -> Iterator[bytes]:
        yield from gunzip_stream(chunks)
        problem = stream.mismatch(source.sha256, source.metadata.get(bf.META_SIZE))
        if problem:
            raise TaskFailed(f"backup changed while restoring: {problem}")

    loader = pgload.ScriptLoader(psql, target_url, sessions, log_dir)
    with bar(f"load (psql x{sessions})", inflated_total or None) as advance:
        return loader.load(_counted(unchanged_to_the_end(), advance))


def _counted(chunks: Iterable[bytes], advance: Advance) -> Iterator[bytes]:
    first = True
    for chunk in chunks:
        yield chunk
        advance(len(chunk))
        if first:
            kill_point("streaming")
            first = False


# pg_restore --verbose: one of these per table-of-contents entry it has done (--jobs > 1 names the
# entry's dump id; --jobs 1 does not, but says what it creates, loads or executes). With --jobs,
# the leader and its workers share stderr and a line can hold pieces of two messages: search.
_ENTRY_DONE = re.compile(r"(?:finished|processing|processing missed) item (\d+) ")
_SERIAL_ENTRY = re.compile(r"^pg_restore: (?:creating|processing data for|executing) ")


@dataclass
class CustomLoad:
    """Loading one custom archive into the new database, `jobs` sessions wide.

    Up to its first foreign key: `pg_restore --jobs N`, which loads whole tables N at a time and
    builds a table's indexes while other tables still load. From there on (foreign keys, then
    what pg_dump sorts after them): the loader, which adds the keys NOT VALID and validates them
    N at a time (`pg_restore` adds each key and checks it in one step that locks both tables,
    and never runs two entries on a common table at once). See `split_at_foreign_keys` for why
    the order stays valid. Either part stops at the first error; every data block is read (and
    so checked) by the first."""

    path: Path
    target_url: str
    pg_restore: Path
    psql: Path
    jobs: int
    bar: BarFactory
    work: Path

    def run(self, entries: list[str]) -> str:
        """Load the archive's `entries` (`pg_restore --list` lines); say what was done."""
        head, tail = split_at_foreign_keys(entries)
        self.restore_jobs(head)
        done = f"{len(head)} entries by pg_restore --jobs {self.jobs}"
        if not tail:
            return done
        stats = self.load_after_foreign_keys(tail)
        return (
            f"{done}, {len(tail)} (foreign keys on, grants, refreshes) by psql x{self.jobs} "
            f"({stats.foreign_keys_validated} foreign keys validated {self.jobs}-wide)"
        )

    def restore_jobs(self, entries: list[str]) -> None:
        """`pg_restore --jobs N --use-list` of `entries`; progress: entries done."""
        jobs = self.jobs
        args = [str(self.pg_restore), "--exit-on-error", "--verbose", f"--jobs={jobs}"]
        args += ["--use-list", str(self._listing("jobs", entries))]
        args += ["--dbname", database_name(self.target_url), str(self.path)]
        proc = subprocess.Popen(
            args,
            env=pgload.load_env(self.target_url),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            preexec_fn=pgload.die_with_parent,
            start_new_session=True,  # its workers are killed with it (see _kill_group)
        )
        assert proc.stderr is not None
        ids = {line.split(";", 1)[0] for line in entries}
        errors: list[str] = []
        done: set[str] = set()
        try:
            with self.bar(f"load (pg_restore --jobs {jobs}, entries)", len(ids) or None) as step:
                for line in proc.stderr:
                    if finished := _entries_done(line, jobs, ids, done):
                        step(finished)
                        kill_point("pg_restore")
                    elif "error" in line.lower() and len(errors) < 5:
                        errors.append(line.strip())
            proc.wait()
        finally:
            _kill_group(proc)
        if proc.returncode != 0:
            reason = pgload.tool_error("\n".join(errors)) or f"exit {proc.returncode}"
            raise TaskFailed(f"pg_restore --jobs {jobs} failed loading the archive: {reason}")

    def load_after_foreign_keys(self, entries: list[str]) -> pgload.LoadStats:
        """The SQL `pg_restore` writes for `entries` (post-data only), through the loader."""
        errors = self.work / "pg_restore-tail.stderr"
        args = [str(self.pg_restore), "--use-list", str(self._listing("tail", entries))]
        args += ["--file=-", str(self.path)]
        proc = pgload.spawn(args, errors, stdout=subprocess.PIPE)
        assert proc.stdout is not None
        loader = pgload.ScriptLoader(
            self.psql, self.target_url, self.jobs, self.work, post_data_only=True
        )
        what = f"foreign keys and later entries (psql x{self.jobs})"
        try:
            with self.bar(what, len(entries)) as step:
                stdout = proc.stdout
                assert stdout is not None
                stats = loader.load(iter(lambda: stdout.read(READ_CHUNK), b""))
                step(len(entries))
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
        if proc.returncode != 0:
            reason = pgload.logged_error(errors) or f"exit {proc.returncode}"
            raise TaskFailed(f"pg_restore failed writing the archive's foreign keys: {reason}")
        return stats

    def _listing(self, name: str, entries: list[str]) -> Path:
        """A `--use-list` file naming `entries`."""
        path = self.work / f"pg_restore-{name}.list"
        path.write_text("".join(f"{line}\n" for line in entries))
        return path


# Entries pg_restore runs after all others whatever their place in the list: grants, then event
# triggers (and their comments) and materialized-view refreshes (pg_backup_archiver.c, passes).
_LATER_PASSES = (
    "ACL ",
    "DEFAULT ACL ",
    "EVENT TRIGGER ",
    "COMMENT - EVENT TRIGGER ",
    "MATERIALIZED VIEW DATA ",
)


def split_at_foreign_keys(entries: list[str]) -> tuple[list[str], list[str]]:
    """(the entries before the first foreign key, the rest), in the order pg_restore runs them.

    pg_dump lists every entry after the ones it depends on, so a list cut anywhere runs in a
    valid order. The entries pg_restore defers to its later passes go to the second part, where
    `pg_restore --file` writes them in those passes again: grants still come after every other
    entry, and refreshes after the grants."""
    head: list[str] = []
    tail: list[str] = []
    cut = False
    for line in entries:
        match = _TOC_ENTRY.match(line)
        what = match["what"] if match else ""
        cut = cut or what.startswith("FK CONSTRAINT ")
        (tail if cut or what.startswith(_LATER_PASSES) else head).append(line)
    return head, tail


def _entries_done(line: str, jobs: int, entries: set[str], done: set[str]) -> int:
    """How many entries not counted yet this verbose line finishes (records them in `done`)."""
    if jobs > 1:
        new = set(_ENTRY_DONE.findall(line)) & entries - done
    else:
        new = {str(len(done))} if _SERIAL_ENTRY.match(line) and len(done) < len(entries) else set()
    done |= new
    return len(new)


def _kill_group(proc: subprocess.Popen[str]) -> None:
    """If pg_restore still runs (we are failing), SIGKILL it and the workers it forked (they share
    its session). Once it has exited it has ended its workers itself."""
    if proc.poll() is None:  # not reaped, so its process group id cannot have been reused
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


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

    def verify(self) -> RestoreReport:
        """Report leftovers, then read and check the backup. Changes nothing.

        A custom archive whose sha256 was recorded and matches is the file pg_dump wrote: its
        blocks are then inflated once, by the load into the new database (which fails, and is
        dropped, if one does not inflate), instead of twice. A dry run, or an archive without
        a recorded checksum, has every block read here."""
        report = self.report
        pgswap.check_target(self.url, self.live, create=self.create)
        if not self.dry_run:
            self._take_claim()
        report.leftovers = pgswap.restore_leftovers(self.url, self.live)
        for name in report.leftovers:
            self.log(f"leftover of {interrupted(name)}: {name} (drop with `restore --cleanup`)")
        if pgswap.blocked_live(self.url, self.live):
            self.log(f"{self.live} refuses connections (an interrupted swap); restore re-allows")
        self._major = server_major(pgswap.admin_url(self.url))
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


# --- Redis and objects (--component redis|objects|all) ----------------------------------------

RDB_MAGIC = b"REDIS"


def _run_part(manifest: bf.Manifest | None, fmt: str, what: str) -> list[bf.Part]:
    parts = [p for p in (manifest.parts if manifest else []) if p.format == fmt]
    if manifest is None:
        raise UserInputError(
            f"restoring {what} needs a backup run with a manifest; this backup has none "
            "(a hand-made dump holds only the database)"
        )
    if not parts and fmt == "rdb":
        raise UserInputError(f"backup run {manifest.run_id} of {manifest.app} has no {what} part")
    return parts


AOF_DIR = "appendonlydir"  # Redis 7's multi-part AOF directory (default `appenddirname`)
AOF_BASE = "appendonly.aof.1.base.rdb"
AOF_MANIFEST = "appendonly.aof.manifest"


class RedisRestore:
    """The run's `redis.rdb.gz`, verified whole into a temp file, then moved into Redis' data
    directory by renames. Redis must be stopped: a running one overwrites what it finds.

    Both persistence modes are covered. `dump.rdb` is what Redis loads with `appendonly no`; with
    `appendonly yes` (how opsplane runs Redis) Redis 7 loads only its AOF directory and ignores
    `dump.rdb`, so a fresh `appendonlydir` is staged too whose base file *is* the restored RDB
    (a manifest naming only that base). The previous `dump.rdb` and `appendonlydir` are kept as
    `*.pre_restore_<ts>`."""

    def __init__(
        self, client: Any, bucket: str, manifest: bf.Manifest | None, data_dir: Path, log: Log
    ) -> None:
        self.client, self.bucket, self.data_dir, self.log = client, bucket, data_dir, log
        self.part = _run_part(manifest, "rdb", "Redis")[0]
        self._staged: Path | None = None
        self._staged_aof: Path | None = None

    def verify(self) -> None:
        if not self.data_dir.is_dir():
            raise UserInputError(
                f"--redis-data-dir {self.data_dir}: no such directory (Redis' data directory)"
            )
        staged = self.data_dir / ".dump.rdb.restoring"  # same filesystem: the rename is atomic
        stream = Checksummed(iter_object(self.client, self.bucket, self.part.key, READ_CHUNK))
        try:
            with staged.open("wb") as out:
                for chunk in gunzip_stream(stream):
                    out.write(chunk)
        except ValueError as exc:
            staged.unlink(missing_ok=True)
            raise TaskFailed(f"Redis part {self.part.key} refused: {exc}") from None
        problem = stream.mismatch(self.part.sha256)
        with staged.open("rb") as check:
            magic = check.read(len(RDB_MAGIC))
        if problem or magic != RDB_MAGIC:
            staged.unlink(missing_ok=True)
            raise TaskFailed(f"Redis part {self.part.key} refused: {problem or 'not an RDB file'}")
        self._staged = staged
        self._staged_aof = self._stage_aof(staged)

    def _stage_aof(self, rdb: Path) -> Path:
        """An AOF directory whose only file is the restored RDB as its base."""
        aof = self.data_dir / f".{AOF_DIR}.restoring"
        shutil.rmtree(aof, ignore_errors=True)
        aof.mkdir()
        shutil.copyfile(rdb, aof / AOF_BASE)
        (aof / AOF_MANIFEST).write_text(f"file {AOF_BASE} seq 1 type b\n")
        return aof

    def apply(self) -> str:
        assert self._staged is not None and self._staged_aof is not None, "verify() first"
        stamp = restore_stamp()
        for name, staged in ((AOF_DIR, self._staged_aof), ("dump.rdb", self._staged)):
            target = self.data_dir / name
            if target.exists():
                os.replace(target, self.data_dir / f"{name}.pre_restore_{stamp}")
            os.replace(staged, target)
        target = self.data_dir / "dump.rdb"
        self.log(f"redis: wrote {target} and {AOF_DIR}/ from {self.part.key}")
        return str(target)

    def discard(self) -> None:
        if self._staged is not None:
            self._staged.unlink(missing_ok=True)
        if self._staged_aof is not None:
            shutil.rmtree(self._staged_aof, ignore_errors=True)


class ObjectsRestore:
    """Mirror the run's `objects/` back into the app's bucket (the runbook's `mc mirror`): every
    object is checksummed before anything is written, and again while it is copied. Objects the
    bucket holds that the backup does not are left alone (as `mc mirror` does)."""

    def __init__(
        self,
        client: Any,
        bucket: str,
        manifest: bf.Manifest | None,
        target_client: Any,
        target_bucket: str,
        log: Log,
    ) -> None:
        self.client, self.bucket, self.log = client, bucket, log
        self.target_client, self.target_bucket = target_client, target_bucket
        self.parts = _run_part(manifest, "object", "objects")

    def target_key(self, part: bf.Part) -> str:
        parsed = bf.parse_run_key(part.key)
        assert parsed is not None and parsed[3].startswith(bf.OBJECTS_DIR)
        return parsed[3][len(bf.OBJECTS_DIR) :]

    def verify(self) -> None:
        for part in self.parts:
            stream = Checksummed(iter_object(self.client, self.bucket, part.key, READ_CHUNK))
            for _ in stream:
                pass
            problem = stream.mismatch(part.sha256)
            if problem:
                raise TaskFailed(f"object {part.key} refused, nothing was changed: {problem}")

    def apply(self) -> int:
        for part in self.parts:
            with MultipartUpload(
                self.target_client, self.target_bucket, self.target_key(part)
            ) as upload:
                for chunk in iter_object(self.client, self.bucket, part.key, READ_CHUNK):
                    upload.write(chunk)
                stored = upload.complete()
            if stored.sha256 != part.sha256:
                raise TaskFailed(f"object {part.key} changed while being restored")
        self.log(f"objects: restored {len(self.parts)} objects into {self.target_bucket}")
        return len(self.parts)


# --- cleanup --------------------------------------------------------------------------------------


@dataclass
class CleanupReport:
    database: str
    found: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    repaired: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def cleanup_candidates(url: str) -> list[str]:
    """Pre-restore copies, then the `_restore_`/`_verify_` databases of restores and drills (one
    in use, e.g. a restore running now, is listed and then skipped by `cleanup`)."""
    found = pgswap.leftovers(url, database_name(url))
    return [x.name for x in found if x.kind == bf.KIND_PRE_RESTORE] + [
        x.name for x in found if x.kind != bf.KIND_PRE_RESTORE
    ]


def cleanup(url: str, names: list[str], log: Log = lambda line: None) -> CleanupReport:
    """Drop the given pre-restore copies and leftovers; a database in use is skipped, not forced
    (it may be a restore running right now)."""
    live = database_name(url)
    report = CleanupReport(live, found=list(names))
    if pgswap.blocked_live(url, live):
        pgswap.set_allow_connections(url, live, True)
        report.repaired.append(f"re-allowed connections to {live}")
    for name in names:
        parsed = bf.parse_throwaway(name)
        if parsed is None or not parsed.belongs_to(live):
            raise UserInputError(f"{name} is not a restore or verify-backup leftover of {live}")
    busy = {x.name for x in pgswap.leftovers(url, live) if x.in_use}
    for name in names:
        why = "in use (a restore or verify-backup running now?)" if name in busy else None
        why = why or pgswap.drop_database(url, name, force=False)
        if why is None:
            report.dropped.append(name)
            log(f"dropped {name}")
        else:
            report.skipped[name] = why
            log(f"skipped {name}: {why}")
    return report
