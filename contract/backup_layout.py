"""The one backup layout every system shares (documented in docs/backups.md).

A backup *run* is everything one `backup` invocation stored, under one run id:

    {prefix}/{app}/{run_id}/db.sql.gz        plain pg_dump, gzip            (format "plain")
    {prefix}/{app}/{run_id}/db.dump          pg_dump --format=custom        (format "custom")
    {prefix}/{app}/{run_id}/redis.rdb.gz     Redis RDB snapshot, gzip        (format "rdb")
    {prefix}/{app}/{run_id}/objects/<key>    mirror of the app's object bucket (format "object")
    {prefix}/{app}/{run_id}/manifest.json    written LAST: lists every part with its checksum

`run_id` is UTC `YYYYMMDDTHHMMSSZ`, so keys sort by time. A run without `manifest.json` is
incomplete and is never "latest". Each part carries S3 user metadata (`META_*`), and tags
(`TAG_*`): retention (lifecycle expires only `standard`) and the last verification result.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

DEFAULT_PREFIX = "backups"
MANIFEST = "manifest.json"
DB_PLAIN = "db.sql.gz"
DB_CUSTOM = "db.dump"
REDIS_PART = "redis.rdb.gz"
OBJECTS_DIR = "objects/"

RUN_ID_FORMAT = "%Y%m%dT%H%M%SZ"
RUN_ID_PATTERN = re.compile(r"^\d{8}T\d{6}Z$")

# S3 user metadata keys (sent as x-amz-meta-<key>)
META_SHA256 = "sha256"
META_SIZE = "size"
META_FORMAT = "format"
META_SERVER_VERSION = "server-version"
META_APP = "app"
META_MIGRATION_HEAD = "migration-head"
META_RUN = "run"

# S3 object tags
TAG_RETENTION = "retention"  # "standard" (lifecycle may expire it) or "pinned"
RETENTION_STANDARD = "standard"
RETENTION_PINNED = "pinned"
TAG_VERIFIED = "verified"  # "ok" | "failed"
TAG_VERIFIED_AT = "verified-at"  # run id format, UTC
TAG_VERIFIED_SECONDS = "verified-seconds"  # the drill's restore time (status holds it to the RTO)


def new_run_id(now: datetime | None = None) -> str:
    return (now or datetime.now(UTC)).strftime(RUN_ID_FORMAT)


def run_prefix(prefix: str, app: str, run_id: str) -> str:
    return f"{prefix.strip('/')}/{app}/{run_id}/"


def part_key(prefix: str, app: str, run_id: str, part: str) -> str:
    return run_prefix(prefix, app, run_id) + part


def parse_run_key(key: str) -> tuple[str, str, str, str] | None:
    """Split `{prefix}/{app}/{run_id}/{part}` into its four pieces, or None if not our layout."""
    pieces = key.split("/")
    for i in range(len(pieces) - 2, 0, -1):
        if RUN_ID_PATTERN.match(pieces[i]):
            prefix = "/".join(pieces[: i - 1])
            return prefix, pieces[i - 1], pieces[i], "/".join(pieces[i + 1 :])
    return None


@dataclass
class Part:
    key: str
    format: str  # plain | custom | rdb | object
    sha256: str
    size: int


@dataclass
class DatabaseFacts:
    """What restore and verify-backup check the restored database against."""

    name: str
    server_version: str
    migration_head: str | None = None
    tables: dict[str, int] = field(default_factory=dict)  # "schema.table" -> row count


@dataclass
class Manifest:
    app: str
    run_id: str
    created_at: str
    parts: list[Part] = field(default_factory=list)
    database: DatabaseFacts | None = None

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), indent=2, sort_keys=True).encode()

    @classmethod
    def from_json(cls, raw: bytes | str) -> Manifest:
        data: dict[str, Any] = json.loads(raw)
        database = data.get("database")
        return cls(
            app=data["app"],
            run_id=data["run_id"],
            created_at=data["created_at"],
            parts=[Part(**p) for p in data.get("parts", [])],
            database=DatabaseFacts(**database) if database else None,
        )

    def part(self, fmt: str) -> Part | None:
        return next((p for p in self.parts if p.format == fmt), None)
