"""The object-store part of a backup run, restored into the app's bucket."""

from __future__ import annotations

from typing import Any

from automation.errors import TaskFailed
from automation.tasks.io.s3io import MultipartUpload, iter_object
from automation.tasks.restore.report import Log
from automation.tasks.restore.source import (
    READ_CHUNK,
    Checksummed,
    run_part,
)
from contract import backup_layout as bf


class ObjectsRestore:
    """Mirror the run's `objects/` back into the app's bucket (the runbook's `mc mirror`): every
    object is checksummed before anything is written, and again while it is copied. Objects the
    bucket holds that the backup does not are left alone (as `mc mirror` does)."""

    def __init__(
        self,
        client: Any,
        bucket: str,
        manifest: bf.Manifest | None,
        target_client: Any,
        target_bucket: str,
        log: Log,
    ) -> None:
        self.client, self.bucket, self.log = client, bucket, log
        self.target_client, self.target_bucket = target_client, target_bucket
        self.parts = run_part(manifest, "object", "objects")

    def target_key(self, part: bf.Part) -> str:
        parsed = bf.parse_run_key(part.key)
        assert parsed is not None and parsed[3].startswith(bf.OBJECTS_DIR)
        return parsed[3][len(bf.OBJECTS_DIR) :]

    def verify(self) -> None:
        for part in self.parts:
            stream = Checksummed(iter_object(self.client, self.bucket, part.key, READ_CHUNK))
            for _ in stream:
                pass
            problem = stream.mismatch(part.sha256)
            if problem:
                raise TaskFailed(f"object {part.key} refused, nothing was changed: {problem}")

    def apply(self) -> int:
        for part in self.parts:
            with MultipartUpload(
                self.target_client, self.target_bucket, self.target_key(part)
            ) as upload:
                for chunk in iter_object(self.client, self.bucket, part.key, READ_CHUNK):
                    upload.write(chunk)
                stored = upload.complete()
            if stored.sha256 != part.sha256:
                raise TaskFailed(f"object {part.key} changed while being restored")
        self.log(f"objects: restored {len(self.parts)} objects into {self.target_bucket}")
        return len(self.parts)
