"""The Redis part of a backup run: an RDB snapshot taken over the replication protocol by
`redis-cli --rdb -`, gzip-compressed and streamed to S3 (replaces `redis-cli SAVE` + `docker cp`).

The password goes to redis-cli through `REDISCLI_AUTH`, never on its command line.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Callable, Iterable, Iterator
from typing import Any
from urllib.parse import unquote, urlsplit

from automation.errors import TaskFailed, UserInputError
from automation.tasks.backups import BarFactory, counted, no_bar
from automation.tasks.io import s3io
from automation.tasks.io.procs import process_chunks
from contract import backup_layout as bf

RDB_MAGIC = b"REDIS"
EOF_MARK_LEN = 40  # redis-cli < 7.2 writes the 40-byte diskless EOF mark after the RDB on stdout
_HEX_MARK = re.compile(rb"^[0-9a-f]{40}$")


def redis_cli_args(url: str) -> tuple[list[str], dict[str, str], str]:
    """`redis-cli --rdb -` arguments and environment for a redis:// URL; plus a safe label."""
    args, env, label = redis_cli_base(url)
    return [*args, "--rdb", "-"], env, label


def check_redis(url: str, timeout: float = 10.0) -> None:
    """Redis answers PING with these credentials, or one line saying why not (before any work)."""
    args, env, label = redis_cli_base(url)
    try:
        result = subprocess.run(
            [*args, "PING"],
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise TaskFailed(
            f"--redis-url: Redis at {label} did not answer within {timeout:.0f}s; "
            "check the host, port and network"
        ) from None
    if result.returncode == 0 and result.stdout.strip() == "PONG":
        return
    lines = [line for line in (result.stderr + result.stdout).splitlines() if line.strip()]
    reason = lines[0].strip() if lines else f"redis-cli exit {result.returncode}"
    raise TaskFailed(
        f"--redis-url: Redis at {label} is not usable ({reason}); check the URL, its "
        "password and that Redis is up"
    )


def redis_cli_base(url: str) -> tuple[list[str], dict[str, str], str]:
    """redis-cli connection arguments and environment for a redis:// or rediss:// URL; plus a
    safe label (host:port, never the password)."""
    parts = urlsplit(url)
    if parts.scheme not in ("redis", "rediss") or not parts.hostname:
        raise UserInputError(
            f"--redis-url: expected redis://[:password@]host:port, got scheme {parts.scheme!r}"
        )
    cli = shutil.which("redis-cli")
    if cli is None:
        raise UserInputError(
            "redis-cli not found: install redis-tools (it is in the ops-runner image)"
        )
    port = parts.port or 6379
    args = [cli, "-h", parts.hostname, "-p", str(port)]
    if parts.scheme == "rediss":
        args.append("--tls")
    if parts.username:
        args += ["--user", unquote(parts.username)]
    env = dict(os.environ)
    env.pop("REDISCLI_AUTH", None)
    if parts.password:
        env["REDISCLI_AUTH"] = unquote(parts.password)
    return args, env, f"{parts.hostname}:{port}"


def strip_eof_mark(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """Drop the trailing diskless-sync EOF mark some redis-cli versions emit after the RDB.

    An RDB ends with the EOF opcode 0xFF and an 8-byte checksum; 40 lowercase hex characters after
    that are the mark, not data. Holds back only the last 49 bytes, so memory stays bounded.
    """
    hold = EOF_MARK_LEN + 9
    pending = b""
    for chunk in chunks:
        pending += chunk
        if len(pending) > hold:
            yield pending[:-hold]
            pending = pending[-hold:]
    tail = pending[-EOF_MARK_LEN:]
    if len(pending) == hold and pending[0] == 0xFF and _HEX_MARK.match(tail):
        pending = pending[:-EOF_MARK_LEN]
    yield pending


def check_rdb_header(chunks: Iterable[bytes], label: str) -> Iterator[bytes]:
    """Refuse to store something that is not an RDB (e.g. an error text on stdout)."""
    first = True
    for chunk in chunks:
        if first and chunk:
            first = False
            if not chunk.startswith(RDB_MAGIC):
                raise TaskFailed(f"Redis at {label} did not send an RDB snapshot")
        yield chunk


def backup_redis(
    client: Any,
    bucket: str,
    prefix: str,
    app: str,
    run_id: str,
    url: str,
    gzip_level: int,
    report: Callable[[str], None],
    bar: BarFactory = no_bar,
) -> bf.Part:
    """Store the RDB snapshot as `redis.rdb.gz` in the run; returns the part."""
    args, env, label = redis_cli_args(url)
    key = bf.part_key(prefix, app, run_id, bf.REDIS_PART)
    report(f"redis: snapshot of {label} to {key}")
    chunks = process_chunks(args, env, f"redis-cli --rdb ({label})")
    with bar("redis: snapshot -> gzip -> S3 (bytes read)", None) as advance:
        rdb = check_rdb_header(strip_eof_mark(counted(chunks, advance)), label)
        stored = s3io.upload_stream(
            client,
            bucket,
            key,
            s3io.gzip_chunks(rdb, gzip_level),
            metadata={bf.META_FORMAT: "rdb", bf.META_APP: app, bf.META_RUN: run_id},
            tags={bf.TAG_RETENTION: bf.RETENTION_STANDARD},
            content_type="application/gzip",
        )
    report(f"redis: stored {stored.size:,} bytes")
    return bf.Part(key=key, format="rdb", sha256=stored.sha256, size=stored.size)
