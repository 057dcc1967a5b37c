"""Loading a verified dump into the new database: plain streamed through `pgload`, custom
through `pg_restore --jobs N` up to the first foreign key (`CustomLoad`)."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from automation.errors import TaskFailed
from automation.tasks import pgload
from automation.tasks.backups import (
    Advance,
    BackupRef,
    BarFactory,
    kill_point,
)
from automation.tasks.io.gz import gunzip_stream
from automation.tasks.io.pgtools import (
    database_name,
)
from automation.tasks.restore.source import (
    READ_CHUNK,
    TOC_ENTRY,
    read_backup,
)
from contract import backup_layout as bf

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
        match = TOC_ENTRY.match(line)
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
