"""Load a pg_dump plain-format script into a new, empty database over several psql sessions.

A pg_dump script is pre-data (the schema), data (a COPY block per table, sequence values, large
objects), then post-data (indexes, constraints, foreign keys, triggers, ...); pg_dump introduces
every entry with a comment header (`-- Name: x; Type: INDEX; ...`, `-- Data for Name: t; Type:
TABLE DATA; ...`). The runbook's `gunzip -c | psql` runs it all in one session, one statement
after another. `ScriptLoader` reads the same stream once, in order, and:
1. streams pre-data into one session, which finishes before any data is loaded;
2. cuts every COPY block at row boundaries into pieces that N sessions take from one queue, so
   even a single big table loads N-wide; the other data (sequence values, large objects,
   `--inserts` statements) streams in order into one more session;
3. builds indexes and primary-key/unique constraints N-wide, biggest table first, then runs
   everything else of post-data (foreign keys, triggers, grants, ...) in one session in the
   dump's order, so nothing runs before what it depends on; foreign keys are added there
   NOT VALID and then validated N-wide (`Entry.defer_validation`), which ends in the same
   catalog state as the dump's ADD FOREIGN KEY.
A script without pg_dump's headers (hand-written SQL) streams through one session unchanged.

Nothing spans the sessions in one transaction: the target is a new database that the caller drops
if the load fails, so a partial load is never visible under a live name.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import os
import queue
import re
import signal
import subprocess
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from automation.errors import TaskFailed
from automation.tasks.io import pgtools
from automation.tasks.io.pgtools import libpq_env

# Index and constraint builds sort in memory instead of on disk (server memory, per session).
LOAD_SETTINGS = "-c maintenance_work_mem=256MB"
COPY_PIECE = 1024 * 1024  # rows are handed to the COPY sessions in pieces of about this size

_HEADER = re.compile(rb"-- (Data for )?Name: .*; Type: (?P<kind>[^;]+); Schema: ")
_DATA_KINDS = frozenset({b"TABLE DATA", b"SEQUENCE SET", b"BLOBS", b"BLOB DATA", b"LARGE OBJECTS"})
_PARALLEL_KINDS = frozenset({b"INDEX", b"CONSTRAINT"})  # each locks one table, none needs another
_PARALLEL_COPY = re.compile(rb"COPY (?P<table>\S+) \(.*\) FROM stdin;\n\Z")
_ANY_COPY = re.compile(rb"COPY .* FROM stdin.*;\n\Z", re.IGNORECASE)
_SETTING = re.compile(
    rb"(?:SET (?P<set>[\w.]+) (?:=|TO) |(?:RE)?SET (?P<auth>SESSION AUTHORIZATION|ROLE)\b"
    rb"|SELECT pg_catalog\.set_config\('(?P<cfg>\w+)')"
)
_TABLE_OF = re.compile(
    rb"^(?:ALTER TABLE(?: ONLY)? |CREATE (?:UNIQUE )?INDEX .*? ON (?:ONLY )?)(?P<table>[^\s(]+)",
    re.MULTILINE,
)
_FOREIGN_KEY = re.compile(
    rb"ALTER TABLE ONLY (?P<table>[^\s;]+)\n    ADD CONSTRAINT (?P<name>[^\s;]+) FOREIGN KEY "
    rb"\([^;]*\) REFERENCES [^;]*;\Z"
)
_DONE = b"@@opsplane-entry-done"


# --- child processes ------------------------------------------------------------------------------


def _resolve_prctl() -> Callable[[int, int], int] | None:
    try:
        prctl: Callable[[int, int], int] = ctypes.CDLL(None, use_errno=True).prctl
        return prctl
    except (OSError, AttributeError):
        return None  # not Linux: children simply outlive us (the new database is never live)


_PRCTL = _resolve_prctl()  # looked up here, not in the forked child (no dlopen after fork)
PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """Child side of Popen: get SIGKILL if the restore process dies, so psql never commits a
    half-streamed block because its stdin reached EOF."""
    if _PRCTL is not None:
        _PRCTL(PR_SET_PDEATHSIG, signal.SIGKILL)


def load_env(target_url: str) -> dict[str, str]:
    """libpq settings for psql/pg_restore loading the new database, with LOAD_SETTINGS added."""
    env = libpq_env(target_url)
    env["PGOPTIONS"] = f"{env.get('PGOPTIONS', '')} {LOAD_SETTINGS}".strip()
    return env


def spawn(args: list[str], errors: Path, **popen: Any) -> subprocess.Popen[bytes]:
    """Start a PostgreSQL tool that dies with this process, its stderr going to `errors`."""
    with errors.open("wb") as sink:
        return subprocess.Popen(args, stderr=sink, preexec_fn=die_with_parent, **popen)


def logged_error(errors: Path) -> str:
    """The first error line in a tool's stderr file (see `spawn`)."""
    return tool_error(errors.read_text(errors="replace"))


def tool_error(stderr: str) -> str:
    """The first error line a PostgreSQL tool printed (or its first line)."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    errors = [line for line in lines if "error" in line.lower() or "fatal" in line.lower()]
    return pgtools.explain_tool_error((errors or lines or [""])[0][:300])


class Session:
    """One psql process running what is written to its stdin (ON_ERROR_STOP, results discarded).

    Must be created by a thread that outlives the process: the parent-death signal follows the
    creating thread."""

    def __init__(self, psql: Path, env: dict[str, str], errors: Path, *, acks: bool = False):
        self.errors = errors
        # acks: query results come back on stdout (tuples only) so `run_and_wait` can see its
        # marker; otherwise they are discarded
        output = ["--tuples-only", "--no-align"] if acks else ["-o", os.devnull]
        self.proc = spawn(
            [str(psql), "-X", "-q", "-v", "ON_ERROR_STOP=1", *output, "-f", "-"],
            errors,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE if acks else subprocess.DEVNULL,
            env=env,
        )
        self.settings: tuple[bytes, ...] = ()

    @property
    def stdin(self) -> IO[bytes]:
        assert self.proc.stdin is not None
        return self.proc.stdin

    def use(self, settings: tuple[bytes, ...]) -> None:
        """Make the session's settings (search_path, default_tablespace, ...) the entry's."""
        if settings != self.settings:
            self.stdin.write(b"".join(settings))
            self.settings = settings

    def run_and_wait(self, text: bytes) -> bool:
        """Run `text`, return once psql has executed it (False if psql stopped on an error).

        The marker is a query, not `\\echo`: a session restricted by the dump's `\\restrict`
        (pg_dump since 17.6/16.10/15.14) refuses every meta-command."""
        assert self.proc.stdout is not None
        try:
            self.stdin.write(text + b"\nSELECT '" + _DONE + b"';\n")
            self.stdin.flush()
        except BrokenPipeError:
            return False
        while line := self.proc.stdout.readline():  # other results (set_config) come before it
            if line.rstrip(b"\n") == _DONE:
                return True
        return False

    def finish(self) -> None:
        """End input and wait; raise TaskFailed with psql's first error if it failed."""
        with contextlib.suppress(BrokenPipeError):
            self.stdin.close()
        code = self.proc.wait()
        if code != 0:
            reason = logged_error(self.errors)
            raise TaskFailed(f"psql failed loading the dump (exit {code}): {reason}")

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


# --- the script's parts ---------------------------------------------------------------------------


@dataclass
class Entry:
    """One post-data entry of the script, with the session settings in force where it starts."""

    kind: bytes
    settings: tuple[bytes, ...]
    text: bytearray = field(default_factory=bytearray)

    @functools.cached_property
    def table(self) -> bytes | None:
        """The table its statement works on: `ALTER TABLE t ...`, `CREATE INDEX ... ON t`."""
        match = _TABLE_OF.search(self.text)
        return match["table"] if match else None

    def defer_validation(self) -> Entry | None:
        """A foreign key entry becomes ADD ... NOT VALID (instant); the returned entry validates
        it. Validations lock the referencing table SHARE UPDATE EXCLUSIVE and the referenced one
        ROW SHARE, so unlike ADD FOREIGN KEY they can run side by side without deadlocks. None if
        this is not a plain single-statement foreign key (then it runs as written)."""
        if self.kind != b"FK CONSTRAINT":
            return None
        lines = self.text.splitlines(keepends=True)
        comments = [line for line in lines if line.startswith(b"--") or not line.strip()]
        statement = b"".join(line for line in lines if line not in comments).strip()
        match = _FOREIGN_KEY.match(statement)
        if match is None or statement.endswith(b" NOT VALID;"):
            return None
        self.text = bytearray(b"".join(comments) + statement[:-1] + b" NOT VALID;\n")
        validate = b"ALTER TABLE ONLY %s VALIDATE CONSTRAINT %s;\n" % (
            match["table"],
            match["name"],
        )
        return Entry(b"FK VALIDATE", self.settings, bytearray(validate))


def setting_key(line: bytes) -> bytes | None:
    """`SET default_tablespace = '';` -> b"default_tablespace"; None if not a session setting."""
    match = _SETTING.match(line)
    if match is None:
        return None
    return (match["set"] or match["auth"] or match["cfg"]).lower()


class _CopyPool:
    """N sessions taking COPY pieces from one queue; a session keeps its COPY open while the
    pieces it takes belong to the same table."""

    def __init__(self, sessions: list[Session], depth: int) -> None:
        self.sessions = sessions
        self.pieces: queue.Queue[_Piece | None] = queue.Queue(maxsize=depth)
        self.failed = threading.Event()
        self.threads = [
            threading.Thread(target=self._work, args=(s,), name=f"copy-{i}", daemon=True)
            for i, s in enumerate(sessions)
        ]
        for thread in self.threads:
            thread.start()

    def put(self, piece: _Piece) -> None:
        while not self.failed.is_set():
            try:
                self.pieces.put(piece, timeout=0.1)
                return
            except queue.Full:
                continue
        raise _SessionStopped

    def _work(self, session: Session) -> None:
        open_copy: bytes | None = None
        try:
            while (piece := self.pieces.get()) is not None:
                if piece.copy != open_copy:
                    if open_copy is not None:
                        session.stdin.write(b"\\.\n")
                    session.use(piece.settings)
                    session.stdin.write(piece.copy)
                    open_copy = piece.copy
                session.stdin.write(piece.rows)
            if open_copy is not None:
                session.stdin.write(b"\\.\n")
        except (BrokenPipeError, ValueError):
            self.failed.set()  # psql stopped: finish() reports its error

    def finish(self) -> None:
        """Wait until every piece is loaded and committed; raise if a session failed."""
        for _ in self.threads:
            self._put_end()
        for thread in self.threads:
            thread.join()
        for session in self.sessions:
            session.finish()
        if self.failed.is_set():
            raise TaskFailed("a COPY session stopped before its rows were loaded")

    def stop(self) -> None:
        """After the sessions were killed: wake every thread that waits for a piece."""
        self.failed.set()
        self._drain()
        for _ in self.threads:
            with contextlib.suppress(queue.Full):
                self.pieces.put_nowait(None)

    def _put_end(self) -> None:
        while True:
            try:
                self.pieces.put(None, timeout=0.1)
                return
            except queue.Full:
                if self.failed.is_set():
                    self._drain()

    def _drain(self) -> None:
        """Drop the pieces no session will take (one has failed: the load is lost anyway)."""
        with contextlib.suppress(queue.Empty):
            while True:
                self.pieces.get_nowait()


@dataclass(frozen=True)
class _Piece:
    copy: bytes  # the COPY line
    settings: tuple[bytes, ...]
    rows: bytes


class _SessionStopped(Exception):
    """A session stopped reading; its own error is reported when it is finished."""


# --- the loader -----------------------------------------------------------------------------------

PREAMBLE, PRE, DATA, POST = "preamble", "pre-data", "data", "post-data"


@dataclass
class LoadStats:
    sessions: int
    pg_dump_layout: bool = False
    parallel_copies: int = 0
    copy_pieces: int = 0
    post_parallel: int = 0
    post_serial: int = 0
    foreign_keys_validated: int = 0


class ScriptLoader:
    """Feed it the script's bytes in order (`load(chunks)`); see the module doc."""

    def __init__(
        self,
        psql: Path,
        target_url: str,
        sessions: int,
        log_dir: Path,
        *,
        post_data_only: bool = False,
    ) -> None:
        """`post_data_only`: the script holds post-data entries only (what `pg_restore --use-list
        L --file -` writes for the end of an archive's table of contents, once everything
        before it is in the database); they go straight to step 3 of the module doc."""
        self.psql, self.env, self.log_dir = psql, load_env(target_url), log_dir
        self.post_data_only = post_data_only
        self.width = max(1, sessions)
        self.stats = LoadStats(self.width)
        self._phase = PREAMBLE
        self._preamble: list[bytes] = []  # the script's opening settings: every session runs them
        self._settings: dict[bytes, bytes] = {}  # settings changed after it, by name
        self._partial = bytearray()  # an incomplete SQL line
        self._prev_blank = True
        self._serial: Session | None = None  # pre-data's session, then the data phase's
        self._pool: _CopyPool | None = None
        self._copy: tuple[bytes, bytes] | None = None  # (COPY line, table) of a parallel COPY
        self._passthrough = False  # inside a COPY block that goes to the serial session as is
        self._rows = bytearray()
        self._entry_statements = False  # the current data entry has run a statement
        self._entry_copied = False  # the current data entry's COPY went to the pool
        self._post: list[Entry] = []
        self._sizes: dict[bytes, int] = {}
        self._all: list[Session] = []

    # -- public

    def load(self, chunks: Iterable[bytes]) -> LoadStats:
        """Load everything; on any failure kill every session and raise (TaskFailed for psql)."""
        try:
            self._serial = self._session("pre-data")
            for chunk in chunks:
                self._feed(chunk)
            self._end_of_script()
        except _SessionStopped:
            self._report_stopped()
        except BaseException:
            self.abort()
            raise
        return self.stats

    def abort(self) -> None:
        """Kill every session (nothing is committed that the caller keeps: it drops the database)
        and let the COPY threads end."""
        for session in self._all:
            session.kill()
        if self._pool is not None:
            self._pool.stop()

    # -- sessions (all started by the thread calling load(), which outlives them)

    def _session(self, role: str, *, acks: bool = False) -> Session:
        errors = self.log_dir / f"psql-{len(self._all) + 1}-{role}.stderr"
        session = Session(self.psql, self.env, errors, acks=acks)
        self._all.append(session)
        return session

    def _parallel_session(self, role: str, *, acks: bool = False) -> Session:
        session = self._session(role, acks=acks)
        session.stdin.write(b"".join(self._preamble))
        return session

    def _settings_now(self) -> tuple[bytes, ...]:
        return tuple(self._settings.values())

    def _write_serial(self, data: bytes) -> None:
        if self._serial is None:  # the data phase's session for what is not a parallel COPY
            self._serial = self._parallel_session("data")
            self._serial.use(self._settings_now())
        try:
            self._serial.stdin.write(data)
        except BrokenPipeError:
            raise _SessionStopped from None

    def _finish_serial(self) -> None:
        if self._serial is not None:
            session, self._serial = self._serial, None
            session.finish()

    def _finish_pool(self) -> None:
        if self._pool is not None:
            pool, self._pool = self._pool, None
            pool.finish()

    def _report_stopped(self) -> None:
        """A session stopped reading: finish the others to find and raise its error."""
        try:
            self._finish_data()
        finally:
            self.abort()
        raise TaskFailed("a psql session stopped reading the dump")

    # -- parsing

    def _feed(self, data: bytes) -> None:
        while data:
            if self._copy is not None or self._passthrough:
                data = self._copy_rows(data)
            else:
                data = self._sql(data)

    def _sql(self, data: bytes) -> bytes:
        """Handle whole lines of SQL; return what follows a COPY line (its rows), else b""."""
        start = 0
        while (newline := data.find(b"\n", start)) >= 0:
            if self._partial:
                self._partial += data[start : newline + 1]
                line = bytes(self._partial)
                self._partial.clear()
            else:
                line = data[start : newline + 1]
            start = newline + 1
            if self._line(line):
                return data[start:]
        self._partial += data[start:]
        return b""

    def _line(self, line: bytes) -> bool:
        """One line of SQL; True when it opened a COPY block."""
        if line.startswith(b"\\") and self._restriction(line):
            return False
        header = _HEADER.match(line)
        if header is not None:
            self._enter(header["kind"])
        # pg_dump writes its SETs after a blank line; elsewhere a SET may be in a function body
        key = setting_key(line) if (self._prev_blank or self._phase == PREAMBLE) else None
        self._prev_blank = not line.strip()
        if key is not None:
            self._record_setting(key, line)
        if self._phase == POST:
            if key is None:
                self._post[-1].text += line
            return False
        if self._phase == DATA:
            return self._data_line(line, setting=key is not None)
        return self._to_serial(line)

    def _data_line(self, line: bytes, *, setting: bool) -> bool:
        copy = _PARALLEL_COPY.match(line)
        if copy is not None and not self._entry_statements:
            self._copy = (line, copy["table"])
            self._entry_copied = True
            self.stats.parallel_copies += 1
            return True
        statement = not setting and _is_sql(line)
        if self._serial is None and not statement:
            return False  # a comment or SET between data entries: no session needed yet
        if statement:
            self._entry_statements = True
            if self._entry_copied:  # e.g. ENABLE TRIGGER after the rows: only once they are in
                self._finish_pool()
        return self._to_serial(line)

    def _to_serial(self, line: bytes) -> bool:
        self._write_serial(line)
        if _ANY_COPY.match(line):
            self._passthrough = True
            return True
        return False

    def _restriction(self, line: bytes) -> bool:
        """pg_dump's `\\restrict KEY` (first lines) goes to every session, so none of them runs
        a meta-command planted in the dump; its `\\unrestrict KEY` (last line) is dropped: a
        session only ends, and in a session that was never restricted it would be an error."""
        if line.startswith(b"\\unrestrict "):
            return True
        if line.startswith(b"\\restrict ") and self._phase == PREAMBLE:
            self._preamble.append(line)
            self._to_serial(line)
            return True
        return False

    def _record_setting(self, key: bytes, line: bytes) -> None:
        if self._phase == PREAMBLE:
            self._preamble.append(line)
        else:
            self._settings[key] = line

    def _enter(self, kind: bytes) -> None:
        """A pg_dump entry header: move to the phase it belongs to."""
        self.stats.pg_dump_layout = True
        self._entry_statements = self._entry_copied = False
        if kind in _DATA_KINDS and self._phase in (PREAMBLE, PRE):
            self._finish_serial()  # the schema must be in before any data
            self._phase = DATA
        elif kind not in _DATA_KINDS and self._phase == DATA:
            self._finish_data()
            self._phase = POST
        elif self._phase == PREAMBLE and self.post_data_only:
            self._finish_serial()  # it ran the opening settings only
            self._phase = POST
        elif self._phase == PREAMBLE:
            self._phase = PRE
        if self._phase == POST:
            self._post.append(Entry(kind, self._settings_now()))

    def _copy_rows(self, data: bytes) -> bytes:
        """Rows of a COPY block; return what follows its `\\.` line (b"" while inside)."""
        rows = self._rows
        rows += data
        if rows.startswith(b"\\.\n"):  # rows always start at a line start
            end = 0
        else:
            found = rows.find(b"\n\\.\n")
            end = found + 1 if found >= 0 else -1
        if end >= 0:
            self._emit_rows(bytes(rows[:end]))
            rest = bytes(rows[end + 3 :])
            rows.clear()
            self._end_copy()
            return rest
        if len(rows) >= COPY_PIECE and (cut := rows.rfind(b"\n") + 1):
            self._emit_rows(bytes(rows[:cut]))
            del rows[:cut]
        return b""

    def _emit_rows(self, rows: bytes) -> None:
        if not rows:
            return
        if self._passthrough:
            self._write_serial(rows)
            return
        assert self._copy is not None
        line, table = self._copy
        if self._pool is None:
            sessions = [self._parallel_session(f"copy{i}") for i in range(self.width)]
            self._pool = _CopyPool(sessions, depth=2 * self.width)
        self._pool.put(_Piece(line, self._settings_now(), rows))
        self._sizes[table] = self._sizes.get(table, 0) + len(rows)
        self.stats.copy_pieces += 1

    def _end_copy(self) -> None:
        if self._passthrough:
            self._write_serial(b"\\.\n")
        self._passthrough, self._copy = False, None
        self._prev_blank = False

    # -- phase ends

    def _finish_data(self) -> None:
        """All data is in once every COPY session and the data session have finished."""
        try:
            self._finish_serial()
        finally:
            self._finish_pool()

    def _end_of_script(self) -> None:
        if self._partial:
            self._feed(b"\n")  # a last line without its newline
        if self._copy is not None or self._passthrough:
            raise TaskFailed("the dump ends inside a COPY block: the script is cut short")
        if self._phase == POST:
            self._run_post_data()
        else:
            self._finish_data()

    def _run_post_data(self) -> None:
        """Indexes and constraints N-wide; the rest in order in one session, foreign keys added
        NOT VALID there; then the foreign keys validated N-wide."""
        parallel = [e for e in self._post if e.kind in _PARALLEL_KINDS]
        serial = [e for e in self._post if e.kind not in _PARALLEL_KINDS]
        parallel.sort(key=lambda e: self._sizes.get(e.table or b"", 0), reverse=True)
        self._run_parallel(parallel)
        validations = [v for e in serial if (v := e.defer_validation()) is not None]
        validations.sort(key=lambda e: self._sizes.get(e.table or b"", 0), reverse=True)
        self.stats.post_parallel, self.stats.post_serial = len(parallel), len(serial)
        self.stats.foreign_keys_validated = len(validations)
        if serial:
            session = self._parallel_session("post-data")
            with contextlib.suppress(BrokenPipeError):  # finish() reports why psql stopped
                for entry in serial:
                    session.use(entry.settings)
                    session.stdin.write(bytes(entry.text))
            session.finish()
        self._run_parallel(validations)

    def _run_parallel(self, entries: list[Entry]) -> None:
        """Each session takes the next entry once it has executed its last one."""
        if not entries:
            return
        todo = _Todo(entries)
        width = min(self.width, len(entries))
        sessions = [self._parallel_session(f"post{i}", acks=True) for i in range(width)]
        stopped = threading.Event()

        def work(session: Session) -> None:
            try:
                while not stopped.is_set() and (entry := todo.take()) is not None:
                    session.use(entry.settings)
                    if not session.run_and_wait(bytes(entry.text)):
                        stopped.set()
                    todo.done(entry)
            except BrokenPipeError:
                stopped.set()

        threads = [threading.Thread(target=work, args=(s,), daemon=True) for s in sessions]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        for session in sessions:
            session.finish()
        if todo.left():
            raise TaskFailed("index and constraint builds stopped before all were done")


class _Todo:
    """Post-data entries, biggest table first; `take` prefers one whose table no session is
    working on (a PRIMARY KEY locks its table exclusively: the other session would only wait)."""

    def __init__(self, entries: list[Entry]) -> None:
        self._entries = list(entries)
        self._busy: dict[bytes | None, int] = {}
        self._lock = threading.Lock()

    def take(self) -> Entry | None:
        with self._lock:
            if not self._entries:
                return None
            free = (e for e in self._entries if not self._busy.get(e.table))
            entry = next(free, self._entries[0])
            self._entries.remove(entry)
            self._busy[entry.table] = self._busy.get(entry.table, 0) + 1
            return entry

    def done(self, entry: Entry) -> None:
        with self._lock:
            self._busy[entry.table] -= 1

    def left(self) -> int:
        return len(self._entries)


def _is_sql(line: bytes) -> bool:
    """Not blank and not a comment."""
    stripped = line.strip()
    return bool(stripped) and not stripped.startswith(b"--")
