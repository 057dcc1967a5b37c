"""Redis' part of a backup run, restored into a stopped Redis' data directory."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from automation.errors import TaskFailed, UserInputError
from automation.tasks.io.gz import gunzip_stream
from automation.tasks.io.s3io import iter_object
from automation.tasks.restore.database import (
    restore_stamp,
)
from automation.tasks.restore.report import Log
from automation.tasks.restore.source import (
    READ_CHUNK,
    Checksummed,
    run_part,
)
from contract import backup_layout as bf

RDB_MAGIC = b"REDIS"


AOF_DIR = "appendonlydir"  # Redis 7's multi-part AOF directory (default `appenddirname`)
AOF_BASE = "appendonly.aof.1.base.rdb"
AOF_MANIFEST = "appendonly.aof.manifest"


class RedisRestore:
    """The run's `redis.rdb.gz`, verified whole into a temp file, then moved into Redis' data
    directory by renames. Redis must be stopped: a running one overwrites what it finds.

    Both persistence modes are covered. `dump.rdb` is what Redis loads with `appendonly no`; with
    `appendonly yes` (how opsplane runs Redis) Redis 7 loads only its AOF directory and ignores
    `dump.rdb`, so a fresh `appendonlydir` is staged too whose base file *is* the restored RDB
    (a manifest naming only that base). The previous `dump.rdb` and `appendonlydir` are kept as
    `*.pre_restore_<ts>`."""

    def __init__(
        self, client: Any, bucket: str, manifest: bf.Manifest | None, data_dir: Path, log: Log
    ) -> None:
        self.client, self.bucket, self.data_dir, self.log = client, bucket, data_dir, log
        self.part = run_part(manifest, "rdb", "Redis")[0]
        self._staged: Path | None = None
        self._staged_aof: Path | None = None

    def verify(self) -> None:
        if not self.data_dir.is_dir():
            raise UserInputError(
                f"--redis-data-dir {self.data_dir}: no such directory (Redis' data directory)"
            )
        staged = self.data_dir / ".dump.rdb.restoring"  # same filesystem: the rename is atomic
        stream = Checksummed(iter_object(self.client, self.bucket, self.part.key, READ_CHUNK))
        try:
            with staged.open("wb") as out:
                for chunk in gunzip_stream(stream):
                    out.write(chunk)
        except ValueError as exc:
            staged.unlink(missing_ok=True)
            raise TaskFailed(f"Redis part {self.part.key} refused: {exc}") from None
        problem = stream.mismatch(self.part.sha256)
        with staged.open("rb") as check:
            magic = check.read(len(RDB_MAGIC))
        if problem or magic != RDB_MAGIC:
            staged.unlink(missing_ok=True)
            raise TaskFailed(f"Redis part {self.part.key} refused: {problem or 'not an RDB file'}")
        self._staged = staged
        self._staged_aof = self._stage_aof(staged)

    def _stage_aof(self, rdb: Path) -> Path:
        """An AOF directory whose only file is the restored RDB as its base."""
        aof = self.data_dir / f".{AOF_DIR}.restoring"
        shutil.rmtree(aof, ignore_errors=True)
        aof.mkdir()
        shutil.copyfile(rdb, aof / AOF_BASE)
        (aof / AOF_MANIFEST).write_text(f"file {AOF_BASE} seq 1 type b\n")
        return aof

    def apply(self) -> str:
        assert self._staged is not None and self._staged_aof is not None, "verify() first"
        stamp = restore_stamp()
        for name, staged in ((AOF_DIR, self._staged_aof), ("dump.rdb", self._staged)):
            target = self.data_dir / name
            if target.exists():
                os.replace(target, self.data_dir / f"{name}.pre_restore_{stamp}")
            os.replace(staged, target)
        target = self.data_dir / "dump.rdb"
        self.log(f"redis: wrote {target} and {AOF_DIR}/ from {self.part.key}")
        return str(target)

    def discard(self) -> None:
        if self._staged is not None:
            self._staged.unlink(missing_ok=True)
        if self._staged_aof is not None:
            shutil.rmtree(self._staged_aof, ignore_errors=True)
