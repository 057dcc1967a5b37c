"""`redis…`: PING, used memory against `maxmemory`, evictions, the age of the last save; with
`--deep` the memory breakdown (`MEMORY STATS`). A tiny RESP client over one socket: no client
library to import, and every read is bounded by the socket timeout.
"""

from __future__ import annotations

import socket
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

from automation.operations.status import RUNBOOK, Check, Group

if TYPE_CHECKING:
    from automation.operations.status import StatusTargets

NEXT_DOWN = f"{RUNBOOK}#alert-redisdown"
NEXT_MEMORY = f"{RUNBOOK}#status-redis-memory"
NEXT_SAVE = f"{RUNBOOK}#status-redis-save"
WARN_USED, FAIL_USED = 0.8, 0.95
SAVE_WARN_SECONDS = 86_400


class RedisError(Exception):
    """An error reply (`-ERR ...`) or a broken connection."""


class Resp:
    """One connection speaking RESP2: `call("INFO", "memory")` -> the decoded reply."""

    def __init__(self, url: str, timeout: float) -> None:
        parts = urlsplit(url)
        if parts.scheme != "redis" or not parts.hostname:
            raise RedisError(f"--redis-url: expected redis://[:password@]host:port, got {url[:8]}…")
        self.sock = socket.create_connection((parts.hostname, parts.port or 6379), timeout=timeout)
        self.reader = self.sock.makefile("rb")
        if parts.password:
            user = [unquote(parts.username)] if parts.username else []
            self.call("AUTH", *user, unquote(parts.password))
        database = parts.path.strip("/")
        if database:
            self.call("SELECT", database)

    def close(self) -> None:
        self.reader.close()
        self.sock.close()

    def call(self, *args: str) -> Any:
        payload = f"*{len(args)}\r\n".encode()
        for arg in args:
            data = arg.encode()
            payload += b"$%d\r\n%s\r\n" % (len(data), data)
        self.sock.sendall(payload)
        return self._read()

    def _read(self) -> Any:
        line = self.reader.readline()
        if not line.endswith(b"\r\n"):
            raise RedisError("connection closed by the server")
        kind, rest = line[:1], line[1:-2]
        if kind == b"+":
            return rest.decode()
        if kind == b"-":
            raise RedisError(rest.decode())
        if kind == b":":
            return int(rest)
        if kind == b"$":
            size = int(rest)
            return None if size < 0 else self.reader.read(size + 2)[:-2].decode(errors="replace")
        if kind == b"*":
            size = int(rest)
            return None if size < 0 else [self._read() for _ in range(size)]
        raise RedisError(f"unexpected reply {line[:20]!r}")


def info(text: str) -> dict[str, str]:
    """`INFO` text -> {field: value}."""
    fields = (line.split(":", 1) for line in text.splitlines() if ":" in line)
    return {k: v.strip() for k, v in fields}


def group(targets: StatusTargets, timeout: float) -> Group:
    assert targets.redis_url
    url = targets.redis_url
    return Group("redis", lambda: run(url, timeout, deep=targets.deep), NEXT_DOWN)


def run(url: str, timeout: float, *, deep: bool = False) -> list[Check]:
    started = time.monotonic()
    try:
        conn = Resp(url, timeout)
    except TimeoutError:
        return [Check("redis", "fail", f"timed out after {timeout:g} s", NEXT_DOWN)]
    except (OSError, RedisError) as exc:
        return [Check("redis", "fail", f"unreachable: {_one_line(exc)}", NEXT_DOWN)]
    try:
        return measure(conn, started, deep)
    except TimeoutError:
        return [Check("redis", "fail", f"no answer: timed out after {timeout:g} s", NEXT_DOWN)]
    except (OSError, RedisError) as exc:
        return [Check("redis", "fail", _one_line(exc), NEXT_DOWN)]
    finally:
        conn.close()


def measure(conn: Resp, started: float, deep: bool) -> list[Check]:
    pong = conn.call("PING")
    elapsed = (time.monotonic() - started) * 1000
    fields = info(conn.call("INFO"))
    version = fields.get("redis_version", "?")
    checks = [Check("redis", "pass", f"{pong} in {elapsed:.0f} ms, Redis {version}")]
    checks.append(memory(fields))
    checks.append(evictions(fields))
    checks.append(last_save(fields))
    if deep:
        checks.append(breakdown(conn))
    return checks


def memory(fields: dict[str, str]) -> Check:
    used, limit = int(fields.get("used_memory", 0)), int(fields.get("maxmemory", 0))
    policy = fields.get("maxmemory_policy", "?")
    if not limit:
        return Check("redis:memory", "pass", f"{used / 1e6:.1f} MB used, no maxmemory set")
    share = used / limit
    detail = f"{used / 1e6:.1f} MB of {limit / 1e6:.1f} MB maxmemory ({share:.0%}, {policy})"
    if share >= FAIL_USED:
        return Check("redis:memory", "fail", detail, NEXT_MEMORY)
    if share >= WARN_USED:
        return Check("redis:memory", "warn", detail, NEXT_MEMORY)
    return Check("redis:memory", "pass", detail)


def evictions(fields: dict[str, str]) -> Check:
    evicted = int(fields.get("evicted_keys", 0))
    if evicted:
        detail = f"{evicted} keys evicted since start (memory pressure)"
        return Check("redis:evictions", "warn", detail, NEXT_MEMORY)
    return Check("redis:evictions", "pass", "no keys evicted")


def last_save(fields: dict[str, str]) -> Check:
    status = fields.get("rdb_last_bgsave_status", "ok")
    saved = int(fields.get("rdb_last_save_time", 0) or 0)
    changes = int(fields.get("rdb_changes_since_last_save", 0) or 0)
    age = max(0.0, time.time() - saved) if saved else None
    when = f"{age / 3600:.1f} h ago" if age is not None else "never"
    detail = f"last save {when}, {changes} changes since, last bgsave {status}"
    if status != "ok":
        return Check("redis:save", "warn", detail, NEXT_SAVE)
    if changes and age is not None and age > SAVE_WARN_SECONDS:
        return Check("redis:save", "warn", detail, NEXT_SAVE)
    return Check("redis:save", "pass", detail)


def breakdown(conn: Resp) -> Check:
    """--deep: where the memory goes (`MEMORY STATS`), in MB."""
    try:
        raw = conn.call("MEMORY", "STATS")
    except RedisError as exc:
        return Check("redis:memory-breakdown", "pass", f"not available: {_one_line(exc)}")
    stats = dict(zip(raw[::2], raw[1::2], strict=False))
    wanted = ("dataset.bytes", "overhead.total", "clients.normal", "replication.backlog")
    parts = [f"{k} {int(stats[k]) / 1e6:.1f} MB" for k in wanted if isinstance(stats.get(k), int)]
    keys = stats.get("keys.count")
    if keys is not None:
        parts.append(f"{keys} keys")
    return Check("redis:memory-breakdown", "pass", ", ".join(parts) or "nothing reported")


def _one_line(value: object) -> str:
    return " ".join(str(value).split())[:200] or type(value).__name__
