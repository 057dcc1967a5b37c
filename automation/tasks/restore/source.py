"""The backup to restore (`resolve_source`), read and verified before anything changes."""

from __future__ import annotations

import hashlib
import os
import queue
import re
import subprocess
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

from automation.errors import TaskFailed, UserInputError
from automation.tasks import pgload
from automation.tasks.backups import (
    Advance,
    BackupRef,
    BarFactory,
    find_backup,
)
from automation.tasks.io.gz import gunzip_stream
from automation.tasks.io.s3io import iter_object
from automation.tasks.verify import ToolFailed, drain, run_with_stdin
from contract import backup_layout as bf

READ_CHUNK = 256 * 1024


# --- what to restore ------------------------------------------------------------------------------
# `backups.find_backup` resolves --key/--latest to a `BackupRef` (managed or hand-made dump).


def resolve_source(
    client: Any, bucket: str, *, prefix: str, app: str | None, key: str | None
) -> BackupRef:
    """The database dump named by `key` (a dump, a run folder or a manifest) or the latest run."""
    return find_backup(client, bucket, prefix=prefix, app=app, key=key)


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


TOC_ENTRY = re.compile(r"^\d+; \d+ \d+ (?P<what>.+)$")  # a `pg_restore --list` entry line


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
    return [line for line in result.stdout.splitlines() if TOC_ENTRY.match(line)]


def refused(source: BackupRef, reason: str) -> TaskFailed:
    return TaskFailed(
        f"backup s3://{source.bucket}/{source.key} refused, nothing was changed: {reason}"
    )


def run_part(manifest: bf.Manifest | None, fmt: str, what: str) -> list[bf.Part]:
    parts = [p for p in (manifest.parts if manifest else []) if p.format == fmt]
    if manifest is None:
        raise UserInputError(
            f"restoring {what} needs a backup run with a manifest; this backup has none "
            "(a hand-made dump holds only the database)"
        )
    if not parts and fmt == "rdb":
        raise UserInputError(f"backup run {manifest.run_id} of {manifest.app} has no {what} part")
    return parts
