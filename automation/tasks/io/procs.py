"""A child process's output as a stream of chunks: what backups pipe from `pg_dump` and
`redis-cli --rdb` into compression and the S3 upload."""

from __future__ import annotations

import queue
import signal
import subprocess
import threading
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import IO, Any

from automation.errors import TaskFailed

READ_CHUNK = 1024 * 1024
READ_AHEAD = 8  # chunks


INTERRUPTS = (signal.SIGINT, signal.SIGTERM)


@contextmanager
def signals_held() -> Iterator[None]:
    """Ctrl-C and SIGTERM wait for the end of the block, then act as they would have.

    Wrap a child's start and the line that records it for cleanup: a signal arriving while
    `Popen` runs would otherwise raise before the caller holds the process, leaving it orphaned.
    Only the main thread handles signals; elsewhere this holds nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    arrived: list[int] = []

    def hold(signum: int, frame: FrameType | None) -> None:
        arrived.append(signum)

    previous = {sig: signal.signal(sig, hold) for sig in INTERRUPTS}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if arrived:  # the handler it would have met runs now (it raises, or ends the process)
            signal.raise_signal(arrived[0])


def process_chunks(args: list[str], env: dict[str, str], what: str) -> Iterator[bytes]:
    """A child process's stdout in chunks; killed if the consumer stops; errors are one line."""
    proc: subprocess.Popen[bytes] | None = None
    try:
        with signals_held():
            proc = _start_reading(args, env, what)
        tail: deque[str] = deque(maxlen=20)
        reader = threading.Thread(target=_drain, args=(proc.stderr, tail), daemon=True)
        reader.start()
        assert proc.stdout is not None
        yield from read_ahead(proc.stdout)
        code = proc.wait()
        reader.join(timeout=5)
        if code != 0:
            errors = [line for line in tail if "error" in line.lower()] or list(tail) or ["?"]
            raise TaskFailed(f"{what} failed (exit {code}): {errors[-1]}")
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()


def _start_reading(args: list[str], env: dict[str, str], what: str) -> subprocess.Popen[bytes]:
    try:
        return subprocess.Popen(
            args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, env=env
        )
    except OSError as exc:
        raise TaskFailed(f"{what}: cannot start {args[0]}: {exc.strerror}") from None


def read_ahead(stream: IO[bytes], depth: int = READ_AHEAD) -> Iterator[bytes]:
    """Chunks of `stream`, read by a thread up to `depth` chunks ahead of the consumer.

    Without it the pipeline is serial: while this process compresses a chunk, pg_dump blocks on
    the full 64 KiB pipe. With it, pg_dump and compression overlap (bounded: depth x 1 MiB).
    """
    chunks: queue.Queue[bytes | BaseException | None] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def pump() -> None:
        try:
            while not stop.is_set():
                item: bytes | BaseException | None = stream.read(READ_CHUNK) or None
                while not stop.is_set():
                    try:
                        chunks.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if item is None:
                    return
        except (OSError, ValueError) as exc:
            chunks.put(exc)

    thread = threading.Thread(target=pump, name="read-ahead", daemon=True)
    thread.start()
    try:
        while (item := chunks.get()) is not None:
            if isinstance(item, BaseException):
                raise TaskFailed(f"reading the dump failed: {item}")
            yield item
    finally:
        stop.set()
        thread.join(timeout=5)


def _drain(stream: Any, tail: deque[str]) -> None:
    for raw in iter(stream.readline, b""):
        line = raw.decode(errors="replace").strip()
        if line:
            tail.append(line)
