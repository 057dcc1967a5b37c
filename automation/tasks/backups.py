"""Finding, listing and pinning backups; shared by `backups`, `verify-backup` and `restore`.

`find_backup` resolves what a user names (`--key KEY` or `--latest`) to one database dump, a
`BackupRef`, with everything recorded about it. It accepts both our layout (see
`contract/backup_layout.py`) and dumps made the runbook way (`pg_dump | gzip` uploaded by hand
under any key, no metadata): for those, the recorded facts are simply absent (`None`).
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import requests

from automation.errors import TaskFailed, UserInputError
from automation.tasks.io import s3io
from contract import backup_layout as bf

Advance = Callable[[float], None]
# `bar(description, total)` -> a context giving `advance(n)`: `automation.console.progress` in the
# commands (a bar on stderr), `no_bar` in tests and Jobs that want none
BarFactory = Callable[[str, "float | None"], AbstractContextManager[Advance]]


@contextlib.contextmanager
def no_bar(description: str, total: float | None = None) -> Iterator[Advance]:
    def advance(n: float = 1) -> None:
        pass

    yield advance


KILL_ENV = "OPSPLANE_TEST_KILL_AT"
KILL_SIGNAL_ENV = "OPSPLANE_TEST_KILL_SIGNAL"  # default SIGKILL; SIGSTOP pauses the process there


def kill_point(step: str) -> None:
    """Tests only: signal this process at `step` when OPSPLANE_TEST_KILL_AT names it (the crash
    tests of backup, verify-backup and restore; nothing sets it in production)."""
    if os.environ.get(KILL_ENV) == step:
        os.kill(os.getpid(), signal.Signals[os.environ.get(KILL_SIGNAL_ENV, "SIGKILL")])


def counted(chunks: Iterator[bytes], advance: Advance) -> Iterator[bytes]:
    """`chunks`, each counted into a progress bar as it passes."""
    for chunk in chunks:
        advance(len(chunk))
        yield chunk
        kill_point("uploading")


GZIP_MAGIC = b"\x1f\x8b"
CUSTOM_MAGIC = b"PGDMP"
DB_FORMATS = ("plain", "custom")


@dataclass
class BackupRef:
    """One database dump in the bucket, and what was recorded about it (None when nothing was)."""

    bucket: str
    key: str
    format: str  # plain (gzip SQL) | custom (pg_dump -Fc)
    size: int
    sha256: str | None = None
    app: str | None = None
    run_id: str | None = None
    manifest: bf.Manifest | None = None
    metadata: dict[str, str] = field(default_factory=dict)

    @property
    def database(self) -> bf.DatabaseFacts | None:
        return self.manifest.database if self.manifest else None

    @property
    def migration_head(self) -> str | None:
        if self.database and self.database.migration_head:
            return self.database.migration_head
        return self.metadata.get(bf.META_MIGRATION_HEAD)

    @property
    def managed(self) -> bool:
        """Made by `automation backup` (has our metadata), rather than by hand."""
        return self.sha256 is not None


@dataclass
class RunSummary:
    """One backup run (or one hand-made dump) as `backups list` shows it."""

    app: str
    run_id: str
    key: str  # the manifest key, or the object's key for a hand-made dump
    complete: bool  # manifest.json present (INCOMPLETE otherwise: killed, failed or running)
    managed: bool
    size: int
    parts: list[str]
    format: str | None
    last_modified: str
    verified: str | None = None
    verified_at: str | None = None
    retention: str | None = None
    open_uploads: list[str] = field(default_factory=list)  # parts still being (or never) uploaded
    latest: bool = False  # what `--latest` picks (restore, verify-backup)


# --- finding -------------------------------------------------------------------------------------


def find_backup(
    client: Any,
    bucket: str,
    prefix: str = bf.DEFAULT_PREFIX,
    app: str | None = None,
    key: str | None = None,
) -> BackupRef:
    """The dump named by `key`, or the newest complete run's dump (for `app`) when key is None."""
    s3io.check_bucket(client, bucket, key.lstrip("/") if key else _app_prefix(prefix, app))
    if key is not None:
        return ref_for_key(client, bucket, key)
    return latest_backup(client, bucket, prefix, app)


def latest_backup(client: Any, bucket: str, prefix: str, app: str | None) -> BackupRef:
    """The newest run with a manifest and a database part. Incomplete runs never count."""
    manifests = [
        k["Key"]
        for k in s3io.list_keys(client, bucket, _app_prefix(prefix, app))
        if _is_manifest(k["Key"])
    ]
    apps = {parsed[1] for m in manifests if (parsed := bf.parse_run_key(m))}
    if app is None and len(apps) > 1:
        raise UserInputError(
            f"--latest: bucket {bucket!r} holds backups of several apps "
            f"({', '.join(sorted(apps))}); pass --app"
        )
    for manifest_key in sorted(manifests, key=_run_sort_key, reverse=True):
        manifest = load_manifest(client, bucket, manifest_key)
        part = manifest.part("plain") or manifest.part("custom")
        if part is not None:
            return ref_for_key(client, bucket, part.key, manifest=manifest)
    where = f"s3://{bucket}/{_app_prefix(prefix, app)}"
    raise TaskFailed(
        f"no complete database backup under {where}: run `python -m automation backup` first "
        "or pass --key"
    )


def ref_for_key(
    client: Any, bucket: str, key: str, manifest: bf.Manifest | None = None
) -> BackupRef:
    """Resolve a key (a dump, a manifest, or a run prefix) to the dump and its recorded facts."""
    key = key.lstrip("/")
    if _is_manifest(key) or key.endswith("/"):
        manifest_key = key if _is_manifest(key) else key + bf.MANIFEST
        manifest = load_manifest(client, bucket, manifest_key)
        part = manifest.part("plain") or manifest.part("custom")
        if part is None:
            raise UserInputError(
                f"--key {key}: that run has no database part (parts: "
                f"{', '.join(sorted({p.format for p in manifest.parts})) or 'none'})"
            )
        key = part.key
    meta = s3io.head(client, bucket, key)
    metadata = {k.lower(): v for k, v in meta.get("Metadata", {}).items()}
    if manifest is None:
        manifest = _manifest_of_part(client, bucket, key)
    fmt = metadata.get(bf.META_FORMAT) or sniff_format(client, bucket, key)
    if fmt not in DB_FORMATS:
        raise UserInputError(f"--key {key}: format {fmt!r} is not a database dump; pass a db part")
    sha = metadata.get(bf.META_SHA256)
    parsed = bf.parse_run_key(key)
    return BackupRef(
        bucket=bucket,
        key=key,
        format=fmt,
        size=int(meta["ContentLength"]),
        sha256=sha,
        app=metadata.get(bf.META_APP) or (parsed[1] if parsed else None),
        run_id=metadata.get(bf.META_RUN) or (parsed[2] if parsed else None),
        manifest=manifest,
        metadata=metadata,
    )


def sniff_format(client: Any, bucket: str, key: str) -> str:
    """plain or custom, from the object's first bytes (hand-made dumps carry no metadata)."""
    with s3io.s3_errors(client, bucket, key):
        head = client.get_object(Bucket=bucket, Key=key, Range="bytes=0-15")["Body"].read()
    if head.startswith(GZIP_MAGIC):
        return "plain"
    if head.startswith(CUSTOM_MAGIC):
        return "custom"
    raise UserInputError(
        f"--key {key}: neither gzip nor a pg_dump custom archive (starts with {head[:5]!r}); "
        "pass a `pg_dump | gzip` or `pg_dump -Fc` backup"
    )


def load_manifest(client: Any, bucket: str, key: str) -> bf.Manifest:
    raw = s3io.get_bytes(client, bucket, key)
    try:
        return bf.Manifest.from_json(raw)
    except (ValueError, KeyError, TypeError) as exc:
        raise TaskFailed(f"s3://{bucket}/{key} is not a valid backup manifest: {exc}") from None


def _manifest_of_part(client: Any, bucket: str, key: str) -> bf.Manifest | None:
    parsed = bf.parse_run_key(key)
    if parsed is None:
        return None
    prefix, app, run_id, _ = parsed
    manifest_key = bf.part_key(prefix, app, run_id, bf.MANIFEST)
    keys = [k["Key"] for k in s3io.list_keys(client, bucket, manifest_key)]
    return load_manifest(client, bucket, manifest_key) if manifest_key in keys else None


def _is_manifest(key: str) -> bool:
    parsed = bf.parse_run_key(key)
    return parsed is not None and parsed[3] == bf.MANIFEST


def _run_sort_key(key: str) -> tuple[str, str]:
    parsed = bf.parse_run_key(key)
    return bf.run_sort_key(parsed[2]) if parsed else ("", "")


def _app_prefix(prefix: str, app: str | None) -> str:
    base = prefix.strip("/") + "/" if prefix.strip("/") else ""
    return f"{base}{app}/" if app else base


# --- listing -------------------------------------------------------------------------------------


def list_backups(
    client: Any, bucket: str, prefix: str = bf.DEFAULT_PREFIX, app: str | None = None
) -> list[RunSummary]:
    """Every run under the prefix (newest first, in `bf.run_sort_key` order, the order `--latest`
    uses), plus hand-made dumps found under it. A run a killed backup left (no manifest, perhaps
    only multipart uploads never completed) is listed too, `complete=False`."""
    where = _app_prefix(prefix, app)
    s3io.check_bucket(client, bucket, where)
    runs: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    uploads: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    loose: list[dict[str, Any]] = []
    for obj in s3io.list_keys(client, bucket, where):
        parsed = bf.parse_run_key(obj["Key"])
        if parsed:
            runs[(parsed[1], parsed[2])].append(obj)
        elif _looks_like_dump(obj["Key"]):
            loose.append(obj)
    for upload in s3io.in_progress_uploads(client, bucket, where):
        if parsed := bf.parse_run_key(upload["Key"]):
            uploads[(parsed[1], parsed[2])].append(upload)
    summaries = [
        _summarize_run(client, bucket, runs.get(run, []), uploads.get(run, []))
        for run in runs.keys() | uploads.keys()
    ]
    summaries += [_summarize_loose(client, bucket, obj) for obj in loose]
    summaries.sort(key=lambda s: (bf.run_sort_key(s.run_id), s.last_modified), reverse=True)
    newest = next((s for s in summaries if s.complete and s.managed and s.format), None)
    if newest is not None:
        newest.latest = True
    return summaries


def _summarize_run(
    client: Any, bucket: str, objects: list[dict[str, Any]], uploads: list[dict[str, Any]]
) -> RunSummary:
    first = bf.parse_run_key((objects or uploads)[0]["Key"])
    assert first is not None
    prefix, app, run_id, _ = first
    manifest_key = bf.part_key(prefix, app, run_id, bf.MANIFEST)
    by_part = {bf.parse_run_key(o["Key"])[3]: o for o in objects}  # type: ignore[index]
    complete = bf.MANIFEST in by_part
    db_name = next((p for p in (bf.DB_PLAIN, bf.DB_CUSTOM) if p in by_part), None)
    tags = s3io.get_tags(client, bucket, by_part[db_name]["Key"]) if db_name else {}
    if not tags and complete:
        tags = s3io.get_tags(client, bucket, manifest_key)
    parts = sorted(
        {"objects" if name.startswith(bf.OBJECTS_DIR) else name for name in by_part} - {bf.MANIFEST}
    )
    times = [o["LastModified"] for o in objects] + [u["Initiated"] for u in uploads]
    return RunSummary(
        app=app,
        run_id=run_id,
        key=manifest_key if complete else bf.run_prefix(prefix, app, run_id),
        complete=complete,
        managed=True,
        size=sum(int(o["Size"]) for o in objects),
        parts=parts,
        format={bf.DB_PLAIN: "plain", bf.DB_CUSTOM: "custom"}.get(db_name or ""),
        last_modified=max(times).isoformat(),
        open_uploads=sorted({bf.parse_run_key(u["Key"])[3] for u in uploads}),  # type: ignore[index]
        verified=tags.get(bf.TAG_VERIFIED),
        verified_at=tags.get(bf.TAG_VERIFIED_AT),
        retention=tags.get(bf.TAG_RETENTION),
    )


def _summarize_loose(client: Any, bucket: str, obj: dict[str, Any]) -> RunSummary:
    tags = s3io.get_tags(client, bucket, obj["Key"])
    modified = obj["LastModified"]
    return RunSummary(
        app="-",
        run_id=modified.strftime(bf.RUN_ID_FORMAT),
        key=obj["Key"],
        complete=True,
        managed=False,
        size=int(obj["Size"]),
        parts=[obj["Key"].rsplit("/", 1)[-1]],
        format="custom" if obj["Key"].endswith((".dump", ".backup")) else "plain",
        last_modified=modified.isoformat(),
        verified=tags.get(bf.TAG_VERIFIED),
        verified_at=tags.get(bf.TAG_VERIFIED_AT),
        retention=tags.get(bf.TAG_RETENTION),
    )


def _looks_like_dump(key: str) -> bool:
    return key.endswith((".sql.gz", ".dump", ".backup"))


# --- pinning -------------------------------------------------------------------------------------


def pin(client: Any, bucket: str, key: str, *, pinned: bool = True) -> list[str]:
    """Retag every object of the run `key` belongs to (or the one hand-made object) so that the
    lifecycle rule, which expires only `retention=standard`, keeps (or again expires) it."""
    key = key.lstrip("/")
    s3io.check_bucket(client, bucket, key)
    parsed = bf.parse_run_key(key if not key.endswith("/") else key + bf.MANIFEST)
    if parsed:
        prefix, app, run_id, _ = parsed
        keys = [
            o["Key"] for o in s3io.list_keys(client, bucket, bf.run_prefix(prefix, app, run_id))
        ]
    else:
        keys = [o["Key"] for o in s3io.list_keys(client, bucket, key) if o["Key"] == key]
    if not keys:
        raise UserInputError(
            f"backups pin {key}: no such backup in bucket {bucket!r}; see `backups list`"
        )
    value = bf.RETENTION_PINNED if pinned else bf.RETENTION_STANDARD
    for k in keys:
        s3io.merge_tags(client, bucket, k, {bf.TAG_RETENTION: value})
    return keys


# --- metrics -------------------------------------------------------------------------------------


def prometheus_text(metrics: list[tuple[str, dict[str, str], float]], help_: dict[str, str]) -> str:
    """Prometheus text exposition of (name, labels, value) samples."""
    lines: list[str] = []
    seen: set[str] = set()
    for name, labels, value in metrics:
        if name not in seen:
            seen.add(name)
            lines += [f"# HELP {name} {help_.get(name, name)}", f"# TYPE {name} gauge"]
        rendered = ",".join(f'{k}="{_escape(v)}"' for k, v in sorted(labels.items()))
        sample = f"{name}{{{rendered}}}" if rendered else name
        lines.append(f"{sample} {_number(value)}")
    return "\n".join(lines) + "\n"


def push_metrics(gateway: str, job: str, grouping: dict[str, str], body: str) -> None:
    """POST metrics to a Prometheus Pushgateway under job + grouping labels.

    A push that fails is an error: an alert that watches the metric would otherwise stay silent.
    """
    path = "/".join(f"{quote(k, safe='')}/{quote(v, safe='')}" for k, v in grouping.items())
    url = f"{gateway.rstrip('/')}/metrics/job/{quote(job, safe='')}" + (f"/{path}" if path else "")
    try:
        response = requests.post(
            url,
            data=body.encode(),
            headers={"Content-Type": "text/plain; version=0.0.4"},
            timeout=10,
        )
    except requests.RequestException as exc:
        raise TaskFailed(
            f"--pushgateway {gateway}: unreachable ({type(exc).__name__}); check the URL"
        ) from None
    if response.status_code >= 300:
        raise TaskFailed(
            f"--pushgateway {gateway}: push refused with HTTP {response.status_code}: "
            f"{response.text.strip()[:200]}"
        )


def _number(value: float) -> str:
    """Full precision (a Unix timestamp must not be rounded to 6 digits)."""
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
