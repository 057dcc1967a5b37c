"""The Redis part of a backup run: an RDB snapshot taken over the replication protocol by
`redis-cli --rdb -`, gzip-compressed and streamed to S3 (replaces `redis-cli SAVE` + `docker cp`).

The password goes to redis-cli through `REDISCLI_AUTH`, never on its command line.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Callable, Iterable, Iterator
from typing import Any
from urllib.parse import unquote, urlsplit

from automation.errors import UserInputError
from automation.tasks.io import s3io
from automation.tasks.io.procs import process_chunks
from contract import backup_layout as bf

RDB_MAGIC = b"REDIS"
EOF_MARK_LEN = 40  # redis-cli < 7.2 writes the 40-byte diskless EOF mark after the RDB on stdout
_HEX_MARK = re.compile(rb"^[0-9a-f]{40}$")


def redis_cli_args(url: str) -> tuple[list[str], dict[str, str], str]:
    """redis-cli arguments and environment for a redis:// or rediss:// URL; plus a safe label."""
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
    return [*args, "--rdb", "-"], env, f"{parts.hostname}:{port}"


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
                from automation.errors import TaskFailed

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
) -> bf.Part:
    """Store the RDB snapshot as `redis.rdb.gz` in the run; returns the part."""
    args, env, label = redis_cli_args(url)
    key = bf.part_key(prefix, app, run_id, bf.REDIS_PART)
    report(f"redis: snapshot of {label} to {key}")
    rdb = check_rdb_header(
        strip_eof_mark(process_chunks(args, env, f"redis-cli --rdb ({label})")), label
    )
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
