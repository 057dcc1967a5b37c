"""The object-store part of a backup run: the app's bucket (QR `qr-exports`) mirrored under
`{run}/objects/`, each object streamed through with its sha256 recorded in the manifest
(replaces `mc mirror local/qr-exports backups/minio/...`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from automation.tasks.io import s3io
from contract import backup_layout as bf


def mirror_bucket(
    client: Any,
    source_bucket: str,
    bucket: str,
    prefix: str,
    app: str,
    run_id: str,
    parts: list[bf.Part],
    report: Callable[[str], None],
) -> None:
    """Copy every object of `source_bucket` into the run, appending a Part per object as it is
    stored (so a failure halfway lets the caller delete exactly what this run wrote)."""
    s3io.check_bucket(client, source_bucket, option="--objects-bucket")
    base = bf.part_key(prefix, app, run_id, bf.OBJECTS_DIR)
    count = total = 0
    for obj in s3io.list_keys(client, source_bucket, ""):
        key = base + obj["Key"]
        stored = s3io.upload_stream(
            client,
            bucket,
            key,
            s3io.iter_object(client, source_bucket, obj["Key"]),
            metadata={
                bf.META_FORMAT: "object",
                bf.META_APP: app,
                bf.META_RUN: run_id,
                "source": f"{source_bucket}/{obj['Key']}"[:1024],
            },
            tags={bf.TAG_RETENTION: bf.RETENTION_STANDARD},
        )
        parts.append(bf.Part(key=key, format="object", sha256=stored.sha256, size=stored.size))
        count, total = count + 1, total + stored.size
    report(f"objects: mirrored {count} objects ({total:,} bytes) from {source_bucket} to {base}")
