"""Base backups beside the logical ones in `backups list`, and `backups pin` of a base backup
(barman-cloud-backup-keep)."""

from __future__ import annotations

from typing import Any

from automation.tasks.backups import RunSummary
from automation.tasks.io import s3io
from automation.tasks.pitr.barman import Archive, keep, list_base_backups
from contract import backup_layout as bf
from contract import wal_layout as wl


def apps_with_archives(client: Any, bucket: str, prefix: str) -> list[str]:
    root = wl.destination_url(bucket, prefix).split(f"s3://{bucket}/", 1)[1] + "/"
    with s3io.s3_errors(client, bucket):
        pages = client.get_paginator("list_objects_v2").paginate(
            Bucket=bucket, Prefix=root, Delimiter="/"
        )
        found = [p["Prefix"] for page in pages for p in page.get("CommonPrefixes", [])]
    return sorted(name[len(root) :].strip("/") for name in found)


def kept_ids(client: Any, bucket: str, prefix: str, app: str) -> set[str]:
    """Base backups carrying barman's keep annotation."""
    base = wl.base_prefix(prefix, app)
    return {
        obj["Key"][len(base) :].split("/", 1)[0]
        for obj in s3io.list_keys(client, bucket, base)
        if obj["Key"].endswith("/" + wl.KEEP_ANNOTATION)
    }


def base_backup_summaries(
    client: Any, bucket: str, prefix: str = bf.DEFAULT_PREFIX, app: str | None = None
) -> list[RunSummary]:
    """Every base backup under the prefix (one app or all), newest first, as `backups list`
    rows: format `base`, retention `pinned` when kept by barman-cloud-backup-keep."""
    rows: list[RunSummary] = []
    for name in [app] if app else apps_with_archives(client, bucket, prefix):
        if name in wl.RESERVED_APP_NAMES:
            continue
        kept = kept_ids(client, bucket, prefix, name)
        archive = Archive(bucket, name, prefix)
        for backup in list_base_backups(archive) if _has_base(client, bucket, prefix, name) else []:
            rows.append(
                RunSummary(
                    app=name,
                    run_id=backup.backup_id,
                    key=wl.base_key(prefix, name, backup.backup_id),
                    complete=backup.status == "DONE",
                    managed=True,
                    size=backup.size,
                    parts=["base"],
                    format="base",
                    last_modified=backup.end.isoformat(),
                    retention=bf.RETENTION_PINNED if backup.backup_id in kept else "window",
                )
            )
    return sorted(rows, key=lambda r: r.run_id, reverse=True)


def _has_base(client: Any, bucket: str, prefix: str, app: str) -> bool:
    with s3io.s3_errors(client, bucket):
        listed = client.list_objects_v2(
            Bucket=bucket, Prefix=wl.base_prefix(prefix, app), MaxKeys=1
        )
    return bool(listed.get("KeyCount"))


def pin_base(bucket: str, key: str, *, pinned: bool) -> tuple[str, str, str] | None:
    """Keep (or release) the base backup `key` names; None when `key` is not a base backup."""
    parsed = wl.parse_base_key(key)
    if parsed is None:
        return None
    prefix, app, backup_id = parsed
    keep(Archive(bucket, app, prefix), backup_id, release=not pinned)
    return parsed
