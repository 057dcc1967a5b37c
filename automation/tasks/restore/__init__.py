"""Restore a database backup without ever leaving the live database partial.

Steps (each timed in the report):
1. verify, before anything changes. Plain `.sql.gz`: streamed from S3, sha256 compared with the
   manifest/metadata, gzip decompressed to its end (a truncated or corrupt stream is refused),
   and a dump that would `\\connect` elsewhere is refused. Custom format: streamed to a temp file
   (sha256 as it arrives) because `pg_restore --jobs` needs a seekable file, and its table of
   contents listed. Its data blocks are read here too for a dry run or when no sha256 was
   recorded; otherwise the matching sha256 says the file is what pg_dump wrote, and the load
   (step 3) is what inflates every block, once.
0. refuse a target that is a template or the maintenance database, or that does not exist
   (unless `create`), and a second restore of the same database while one runs (`pgswap.Claim`).
2. create `<db>_restore_<ts>` (owner, encoding and locale of the live database); names follow
   `contract.backup_layout.throwaway_name`, unique even for two restores in the same second.
3. load, `--jobs N` sessions. Plain (`pgload.ScriptLoader`): streamed again S3 -> gunzip -> psql
   with no temp file (and checksummed again, so a backup replaced in between is caught); COPY
   rows and index builds go N-wide. Custom: `pg_restore --jobs N` up to the first foreign key,
   then the loader, which validates foreign keys N-wide (see `CustomLoad`).
4. check: every table the manifest recorded exists with its row count, and the migration head
   matches.
5. swap (see `pgswap.swap`): live -> `<db>_pre_restore_<ts>`, new -> live, in one transaction.
A failure before the swap drops the new database and leaves the live one untouched; when the drop
itself fails (the server stopped), the error says so, names the leftover and `restore --cleanup`.

Verification checks what `verify.check_backup_integrity` checks (sha256, size, the archive read
to its end; for a checksummed custom archive the load does the reading), done here so that a
custom archive is downloaded once and the file verified is the file `pg_restore` loads, and so
that a `\\connect` in a plain dump is refused.

`OPSPLANE_TEST_KILL_AT=<step>` makes the process SIGKILL itself at that step. It exists for the
crash tests only (tests/tasks/test_restore_kill.py); nothing sets it in production.
"""

from automation.tasks.backups import BackupRef
from automation.tasks.restore.cleanup import CleanupReport, cleanup, cleanup_candidates
from automation.tasks.restore.database import DatabaseRestore, interrupted, restore_database
from automation.tasks.restore.objects import ObjectsRestore
from automation.tasks.restore.redis import RedisRestore
from automation.tasks.restore.report import RestoreReport, Step
from automation.tasks.restore.source import resolve_source

__all__ = [
    "BackupRef",
    "CleanupReport",
    "DatabaseRestore",
    "ObjectsRestore",
    "RedisRestore",
    "RestoreReport",
    "Step",
    "cleanup",
    "cleanup_candidates",
    "interrupted",
    "resolve_source",
    "restore_database",
]
