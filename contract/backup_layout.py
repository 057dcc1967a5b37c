"""The one backup layout every system shares (documented in docs/backups.md).

A backup *run* is everything one `backup` invocation stored, under one run id:

    {prefix}/{app}/{run_id}/db.sql.gz        plain pg_dump, gzip            (format "plain")
    {prefix}/{app}/{run_id}/db.dump          pg_dump --format=custom        (format "custom")
    {prefix}/{app}/{run_id}/redis.rdb.gz     Redis RDB snapshot, gzip        (format "rdb")
    {prefix}/{app}/{run_id}/objects/<key>    mirror of the app's object bucket (format "object")
    {prefix}/{app}/{run_id}/manifest.json    written LAST: lists every part with its checksum

`run_id` is UTC time to the microsecond plus a random suffix, `YYYYMMDDTHHMMSS.ffffffZ-xxxxxx`,
so two runs of one app started in the same second (the db and Redis CronJobs) never share a key.
Runs are ordered by `run_sort_key` (time, then suffix) everywhere: `backups list`, `--latest`.
Run ids of the older form `YYYYMMDDTHHMMSSZ` are still read. A run without `manifest.json` is
incomplete and is never "latest". Each part carries S3 user metadata (`META_*`), and tags
(`TAG_*`): retention (lifecycle expires only `standard`) and the last verification result.

Throwaway databases: every database opsplane creates next to a live one is named
`<live>_<kind>_<stamp>` (`throwaway_name`), kind one of `THROWAWAY_KINDS`, stamp
`YYYYMMDD_HHMMSS_xxxx` (UTC, random suffix); `parse_throwaway` reads one back, so `restore
--cleanup` and `status` find every leftover by this one pattern.
"""

from __future__ import annotations

import json
import re
import secrets
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

DEFAULT_PREFIX = "backups"
MANIFEST = "manifest.json"
DB_PLAIN = "db.sql.gz"
DB_CUSTOM = "db.dump"
REDIS_PART = "redis.rdb.gz"
OBJECTS_DIR = "objects/"

RUN_ID_FORMAT = "%Y%m%dT%H%M%SZ"  # the older, one-second form; still the `verified-at` format
RUN_ID_PATTERN = re.compile(r"^(\d{8}T\d{6})(?:\.(\d{6}))?Z(?:-([0-9a-f]{4,12}))?$")

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
    """A unique, time-ordered run id: `20261201T024530.123456Z-3f9a1c`."""
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%S.%fZ")
    return f"{stamp}-{secrets.token_hex(3)}"


def timestamp(now: datetime | None = None) -> str:
    """A UTC time in the one-second run id form (`verified-at` tags)."""
    return (now or datetime.now(UTC)).strftime(RUN_ID_FORMAT)


def run_sort_key(run_id: str) -> tuple[str, str]:
    """How runs are ordered (oldest first): time to the microsecond, then the random suffix.
    An older one-second id counts as microsecond 0; anything else sorts by its text."""
    match = RUN_ID_PATTERN.match(run_id)
    if match is None:
        return run_id, ""
    return f"{match[1]}.{match[2] or '000000'}", match[3] or ""


def run_time(run_id: str) -> datetime | None:
    """When the run started (UTC), or None for something that is not a run id."""
    match = RUN_ID_PATTERN.match(run_id)
    if match is None:
        return None
    return datetime.strptime(f"{match[1]}{match[2] or '000000'}", "%Y%m%dT%H%M%S%f").replace(
        tzinfo=UTC
    )


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


# --- throwaway databases -------------------------------------------------------------------------

MAX_IDENTIFIER = 63  # PostgreSQL's NAMEDATALEN - 1: longer names are silently truncated
KIND_RESTORE = "restore"  # a restore builds the new database under this name, then swaps it in
KIND_PRE_RESTORE = "pre_restore"  # what the live database was before a restore (kept on purpose)
KIND_VERIFY = "verify"  # verify-backup's drill database, dropped when the drill ends
THROWAWAY_KINDS = (KIND_PRE_RESTORE, KIND_RESTORE, KIND_VERIFY)
THROWAWAY_STAMP = r"\d{8}_?\d{6}(?:_[0-9a-f]{4,8})?"  # older names have no suffix (or no `_`)
_THROWAWAY = re.compile(
    rf"^(?P<live>.+?)_(?P<kind>{'|'.join(THROWAWAY_KINDS)})_(?P<stamp>{THROWAWAY_STAMP})$"
)


def throwaway_stamp(now: datetime | None = None) -> str:
    """Lower-case, sortable, unique, valid unquoted: `20261201_024530_3f9a07c1`.

    32 random bits: a hundred names made in one second all differ but for about one time in 10^6.
    """
    return f"{(now or datetime.now(UTC)).strftime('%Y%m%d_%H%M%S')}_{secrets.token_hex(4)}"


def throwaway_name(live: str, kind: str, stamp: str) -> str:
    """`<live>_<kind>_<stamp>`; the live part is shortened when the name would pass 63 chars."""
    if kind not in THROWAWAY_KINDS:
        raise ValueError(f"unknown throwaway kind {kind!r}")
    suffix = f"_{kind}_{stamp}"
    return live[: MAX_IDENTIFIER - len(suffix)] + suffix


@dataclass(frozen=True)
class Throwaway:
    """A database name that follows the throwaway pattern, read back into its pieces."""

    name: str
    live: str  # possibly shortened (see `throwaway_name`)
    kind: str
    stamp: str

    def belongs_to(self, live: str) -> bool:
        """Made next to database `live` (allowing for a live name shortened to fit)."""
        if self.live == live:
            return True
        return len(self.name) == MAX_IDENTIFIER and live.startswith(self.live)


def parse_throwaway(name: str) -> Throwaway | None:
    """The pieces of a throwaway database name, or None when `name` is not one."""
    match = _THROWAWAY.match(name)
    if match is None:
        return None
    return Throwaway(name, match["live"], match["kind"], match["stamp"])
