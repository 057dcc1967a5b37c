"""The backup task: one run stores the database (and optionally Redis and the app's object bucket)
under one run id, then writes `manifest.json` last. This is what the backup CronJobs run.

Database: `pg_dump` (tools of the server's major) streams into gzip (plain) or as-is (custom,
already compressed) into an S3 multipart upload: no temporary file, memory bounded by a few
8 MiB parts. The dump and the row counts recorded next to it come from one exported snapshot,
so the counts `verify-backup` checks are exactly what the dump holds, even under writes.

Every target (database, Redis, the object bucket, the backup bucket) is checked before the
first byte is dumped, so an unreachable one fails in seconds, not after the dump.

Failure anywhere aborts the upload in progress, deletes the parts this run stored, writes no
manifest (a run without one is never "latest") and raises one clear line. A run that is killed
cannot clean up: its parts and open multipart uploads stay, `backups list` shows the run as
INCOMPLETE, and the next run of the app that stores the same part aborts those uploads once
they have been idle for `stale_upload_seconds`. The manifest is written only if no object has
its key (`If-None-Match`), on top of run ids that are unique to the microsecond plus a random
suffix: two runs never overwrite each other.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
from botocore.exceptions import BotoCoreError, ClientError
from psycopg import sql

from automation.errors import TaskFailed, UserInputError
from automation.tasks.backups import (
    Advance,
    BarFactory,
    counted,
    no_bar,
    prometheus_text,
    push_metrics,
)
from automation.tasks.io import pgtools, s3io
from automation.tasks.io.gz import DEFAULT_GZIP_LEVEL
from automation.tasks.io.lifecycle import apply_lifecycle
from automation.tasks.io.procs import process_chunks
from automation.tasks.objects_backup import mirror_bucket
from automation.tasks.redis_backup import backup_redis
from contract import backup_layout as bf
from contract.backup_lifecycle import lifecycle_rules

APP_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
LAST_SUCCESS = "opsplane_backup_last_success_timestamp_seconds"
# an open multipart upload of another run idle this long belongs to a killed run: a live one sends
# an 8 MiB part every few seconds (pg_dump waiting on a lock is the slow case, hence an hour)
STALE_UPLOAD_SECONDS = 3600

Reporter = Callable[[str], None]


@dataclass
class BackupOptions:
    bucket: str
    database_url: str | None = None
    prefix: str = bf.DEFAULT_PREFIX
    app: str | None = None
    format: str = "plain"
    redis_url: str | None = None
    objects_bucket: str | None = None
    gzip_level: int = DEFAULT_GZIP_LEVEL
    apply_lifecycle: bool = False
    retention_days: int = 30
    pushgateway: str | None = None
    stale_upload_seconds: float = STALE_UPLOAD_SECONDS


@dataclass
class BackupResult:
    app: str
    run_id: str
    bucket: str
    manifest_key: str
    parts: list[bf.Part] = field(default_factory=list)
    database: bf.DatabaseFacts | None = None
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# --- database facts ------------------------------------------------------------------------------


def table_row_counts(conn: psycopg.Connection) -> dict[str, int]:
    """Exact row counts of every user table ("schema.table" -> rows)."""
    tables = conn.execute(
        """SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
           WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema')
             AND n.nspname NOT LIKE 'pg_toast%' AND n.nspname NOT LIKE 'pg_temp%'
           ORDER BY 1, 2"""
    ).fetchall()
    counts: dict[str, int] = {}
    for schema, table in tables:
        query = sql.SQL("SELECT count(*) FROM {}.{}").format(
            sql.Identifier(schema), sql.Identifier(table)
        )
        row = conn.execute(query).fetchone()
        counts[f"{schema}.{table}"] = int(row[0]) if row else 0
    return counts


def migration_head(conn: psycopg.Connection) -> str | None:
    """Alembic's `version_num` or Flyway's highest successful version; None when neither exists."""
    if _exists(conn, "alembic_version"):
        rows = conn.execute("SELECT version_num FROM alembic_version ORDER BY 1").fetchall()
        return ",".join(str(r[0]) for r in rows) or None
    if _exists(conn, "flyway_schema_history"):
        rows = conn.execute(
            "SELECT version FROM flyway_schema_history WHERE success AND version IS NOT NULL"
        ).fetchall()
        versions = [str(r[0]) for r in rows]
        return max(versions, key=_flyway_order) if versions else None
    return None


def _flyway_order(version: str) -> tuple[int, ...]:
    """Flyway compares versions part by part numerically (`1.10` > `1.9`)."""
    return tuple(int(p) if p.isdigit() else 0 for p in re.split(r"[._]", version))


def _exists(conn: psycopg.Connection, table: str) -> bool:
    row = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (table,)).fetchone()
    return bool(row and row[0])


def collect_facts(conn: psycopg.Connection, name: str) -> bf.DatabaseFacts:
    version = conn.execute("SHOW server_version").fetchone()
    return bf.DatabaseFacts(
        name=name,
        server_version=str(version[0]).split()[0] if version else "",
        migration_head=migration_head(conn),
        tables=table_row_counts(conn),
    )


# --- database part -------------------------------------------------------------------------------


def pg_dump_chunks(
    pg_dump: Path, url: str, fmt: str, snapshot: str | None = None
) -> Iterator[bytes]:
    """pg_dump's output in 1 MiB chunks; a failing pg_dump raises its last stderr line."""
    args = [str(pg_dump), "--no-password"]
    if fmt == "custom":
        args.append("--format=custom")
    if snapshot:
        args.append(f"--snapshot={snapshot}")
    yield from process_chunks(args, pgtools.libpq_env(url), f"pg_dump of {pgtools.describe(url)}")


def backup_database(
    client: Any,
    opts: BackupOptions,
    result: BackupResult,
    report: Reporter,
    bar: BarFactory = no_bar,
) -> tuple[bf.Part, bf.DatabaseFacts]:
    """Dump the database into the run; returns the stored part and the facts recorded with it."""
    assert opts.database_url is not None
    url, app, run_id = opts.database_url, result.app, result.run_id
    pg_dump = pgtools.tools_for(url, "pg_dump")["pg_dump"]
    part_name = bf.DB_CUSTOM if opts.format == "custom" else bf.DB_PLAIN
    key = bf.part_key(opts.prefix, app, run_id, part_name)
    with pgtools.connect(url) as conn:
        conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        conn.read_only = True
        with pgtools.db_errors(
            f"reading {pgtools.describe(url)}", "check the role can read every table"
        ):
            snapshot_row = conn.execute("SELECT pg_export_snapshot()").fetchone()
            snapshot = str(snapshot_row[0]) if snapshot_row else None
            facts = collect_facts(conn, pgtools.database_name(url))
        report(f"db: dumping {pgtools.describe(url)} ({len(facts.tables)} tables) to {key}")
        with bar("db: pg_dump -> S3 (bytes dumped)", None) as advance:
            stored = _upload_dump(client, opts, key, pg_dump, snapshot, facts, result, advance)
    report(f"db: stored {stored.size:,} bytes, sha256 {stored.sha256[:12]}…")
    return bf.Part(key=key, format=opts.format, sha256=stored.sha256, size=stored.size), facts


def _upload_dump(
    client: Any,
    opts: BackupOptions,
    key: str,
    pg_dump: Path,
    snapshot: str | None,
    facts: bf.DatabaseFacts,
    result: BackupResult,
    advance: Advance,
) -> s3io.Stored:
    """pg_dump (of the exported snapshot) -> gzip (plain) -> one S3 object with our metadata."""
    assert opts.database_url is not None
    app, run_id = result.app, result.run_id
    chunks = counted(pg_dump_chunks(pg_dump, opts.database_url, opts.format, snapshot), advance)
    if opts.format == "plain":
        chunks = s3io.gzip_chunks(chunks, opts.gzip_level)
    metadata = {
        bf.META_FORMAT: opts.format,
        bf.META_SERVER_VERSION: facts.server_version,
        bf.META_APP: app,
        bf.META_RUN: run_id,
    }
    if facts.migration_head:
        metadata[bf.META_MIGRATION_HEAD] = facts.migration_head
    return s3io.upload_stream(
        client,
        opts.bucket,
        key,
        chunks,
        metadata=metadata,
        tags={bf.TAG_RETENTION: bf.RETENTION_STANDARD},
        content_type="application/gzip" if opts.format == "plain" else "application/octet-stream",
    )


# --- the run -------------------------------------------------------------------------------------


def validate(opts: BackupOptions) -> str:
    """Check the options before touching anything; returns the app name."""
    if opts.format not in ("plain", "custom"):
        raise UserInputError(f"--format {opts.format!r}: use plain or custom")
    if not (opts.database_url or opts.redis_url or opts.objects_bucket):
        raise UserInputError(
            "nothing to back up: pass --database-url, --redis-url and/or --objects-bucket"
        )
    if not 1 <= opts.gzip_level <= 9:
        raise UserInputError(f"--gzip-level {opts.gzip_level}: use 1 (fastest) to 9 (smallest)")
    if opts.retention_days < 1:
        raise UserInputError(f"--retention-days {opts.retention_days}: use at least 1")
    app = opts.app or (pgtools.database_name(opts.database_url) if opts.database_url else None)
    if app is None:
        raise UserInputError("--app is required when there is no --database-url to name the app")
    if not APP_NAME.match(app):
        raise UserInputError(f"--app {app!r}: use lowercase letters, digits, '-' and '_'")
    if not opts.prefix.strip("/"):
        raise UserInputError("--prefix must not be empty (backups need their own prefix)")
    return app


def preflight(client: Any, opts: BackupOptions) -> None:
    """Check every target before the long work: the backup bucket, the database (and a pg_dump
    of its major), Redis (PING with the credentials) and the object bucket. One line on failure,
    nothing stored."""
    from automation.tasks.redis_backup import check_redis

    s3io.check_bucket(client, opts.bucket, opts.prefix.strip("/") + "/")
    if opts.database_url:
        pgtools.tools_for(opts.database_url, "pg_dump")
    if opts.redis_url:
        check_redis(opts.redis_url)
    if opts.objects_bucket:
        s3io.check_bucket(client, opts.objects_bucket, option="--objects-bucket")


def parts_written(opts: BackupOptions) -> tuple[str, ...]:
    """The part names (or name prefixes) this run stores."""
    names: list[str] = []
    if opts.database_url:
        names.append(bf.DB_CUSTOM if opts.format == "custom" else bf.DB_PLAIN)
    if opts.redis_url:
        names.append(bf.REDIS_PART)
    if opts.objects_bucket:
        names.append(bf.OBJECTS_DIR)
    return tuple(names)


def abort_stale_uploads(
    client: Any, opts: BackupOptions, app: str, run_id: str, report: Reporter
) -> list[str]:
    """Abort the multipart uploads killed runs of `app` left for the parts this run stores (idle
    for `stale_upload_seconds`: not a run still going). Returns their keys."""
    own = parts_written(opts)
    now = datetime.now(UTC)
    aborted = []
    where = f"{opts.prefix.strip('/')}/{app}/"
    for upload in s3io.in_progress_uploads(client, opts.bucket, where):
        parsed = bf.parse_run_key(upload["Key"])
        if parsed is None or parsed[1] != app or parsed[2] == run_id:
            continue
        if not parsed[3].startswith(own):
            continue
        idle = (now - upload_activity(client, opts.bucket, upload, parsed[2])).total_seconds()
        if idle < opts.stale_upload_seconds:
            continue
        with s3io.s3_errors(client, opts.bucket, upload["Key"]):
            client.abort_multipart_upload(
                Bucket=opts.bucket, Key=upload["Key"], UploadId=upload["UploadId"]
            )
        aborted.append(upload["Key"])
        report(f"aborted the open upload of interrupted run {parsed[2]}: {upload['Key']}")
    return aborted


def upload_activity(client: Any, bucket: str, upload: dict[str, Any], run_id: str) -> datetime:
    """When an open multipart upload last made progress: its newest part, else its start (the
    later of S3's `Initiated` and the run id's time: some stores report no useful `Initiated`)."""
    with s3io.s3_errors(client, bucket, upload["Key"]):
        parts = client.list_parts(
            Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"]
        ).get("Parts", [])
    times = [upload["Initiated"], *(p["LastModified"] for p in parts)]
    started = bf.run_time(run_id)
    newest: datetime = max(times + ([started] if started else []))
    return newest


def run_backup(
    opts: BackupOptions,
    report: Reporter = lambda _: None,
    bar: BarFactory = no_bar,
    *,
    client: Any = None,
) -> BackupResult:
    """One backup run. Returns what was stored; raises TaskFailed having stored nothing.
    `client`: S3 for the bucket (default: from the standard AWS environment)."""
    app = validate(opts)
    started = time.monotonic()
    client = client if client is not None else s3io.s3_client()
    preflight(client, opts)
    if opts.apply_lifecycle:
        rules = lifecycle_rules(opts.retention_days, prefix=opts.prefix)
        with s3io.s3_errors(client, opts.bucket):
            changed = apply_lifecycle(client, opts.bucket, rules)
        report(f"lifecycle: {'updated' if changed else 'unchanged'} ({opts.retention_days} days)")
    run_id = bf.new_run_id()
    result = BackupResult(
        app=app,
        run_id=run_id,
        bucket=opts.bucket,
        manifest_key=bf.part_key(opts.prefix, app, run_id, bf.MANIFEST),
    )
    abort_stale_uploads(client, opts, app, run_id, report)
    try:
        store_parts(client, opts, result, report, bar)
        write_manifest(client, opts, result)
    except BaseException:
        s3io.delete_quietly(client, opts.bucket, [p.key for p in result.parts])
        raise
    result.seconds = round(time.monotonic() - started, 3)
    report(f"manifest: {result.manifest_key}")
    if opts.pushgateway:
        push_success(opts.pushgateway, result, report)
    return result


def store_parts(
    client: Any,
    opts: BackupOptions,
    result: BackupResult,
    report: Reporter,
    bar: BarFactory = no_bar,
) -> None:
    """Store each requested part, appending it to `result` as soon as it is stored."""
    if opts.database_url:
        part, facts = backup_database(client, opts, result, report, bar)
        result.parts.append(part)
        result.database = facts
    if opts.redis_url:
        result.parts.append(
            backup_redis(client, opts.bucket, opts.prefix, result.app, result.run_id,
                         opts.redis_url, opts.gzip_level, report, bar)
        )  # fmt: skip
    if opts.objects_bucket:
        mirror_bucket(
            client, opts.objects_bucket, opts.bucket, opts.prefix, result.app, result.run_id,
            result.parts, report,
        )  # fmt: skip


def write_manifest(client: Any, opts: BackupOptions, result: BackupResult) -> None:
    """The manifest, last: its presence is what makes the run complete."""
    manifest = bf.Manifest(
        app=result.app,
        run_id=result.run_id,
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        parts=result.parts,
        database=result.database,
    )
    extra = {
        "ContentType": "application/json",
        "Metadata": {bf.META_APP: result.app, bf.META_RUN: result.run_id},
        "Tagging": f"{bf.TAG_RETENTION}={bf.RETENTION_STANDARD}",
    }
    key, body = result.manifest_key, manifest.to_json()
    try:
        client.put_object(Bucket=opts.bucket, Key=key, Body=body, IfNoneMatch="*", **extra)
    except ClientError as exc:
        code = s3io.error_code(exc)
        if code in ("PreconditionFailed", "412", "ConditionalRequestConflict"):
            raise TaskFailed(
                f"s3://{opts.bucket}/{key} already exists: another backup run has the same run "
                "id; nothing was overwritten, run the backup again"
            ) from None
        if code not in ("NotImplemented", "501"):
            raise s3io.explain(exc, client, opts.bucket, key) from None
        # a store without conditional writes: the unique run id alone keeps runs apart
        s3io.put_bytes(client, opts.bucket, key, body, **extra)
    except BotoCoreError as exc:
        raise s3io.explain(exc, client, opts.bucket, key) from None


def part_kind(part: bf.Part) -> str:
    """The `part` label of the success metric: db, redis or objects."""
    return {"plain": "db", "custom": "db", "rdb": "redis"}.get(part.format, "objects")


def push_success(gateway: str, result: BackupResult, report: Reporter) -> None:
    """`opsplane_backup_last_success_timestamp_seconds{app,part}`, one group per part kind
    (so the db, redis and objects CronJobs never overwrite each other's sample)."""
    now = time.time()
    for kind in sorted({part_kind(p) for p in result.parts}):
        body = prometheus_text(
            [(LAST_SUCCESS, {"app": result.app, "part": kind}, now)],
            {LAST_SUCCESS: "Unix time of the last backup run that stored this part."},
        )
        try:
            push_metrics(gateway, "opsplane_backup", {"app": result.app, "part": kind}, body)
        except TaskFailed as exc:
            # the backup is stored; a missing sample makes the staleness alert fire, which is right
            report(f"warning: {exc}")
