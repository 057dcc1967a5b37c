"""Where point-in-time recovery keeps WAL and base backups (documented in docs/pitr.md).

barman-cloud owns the format; this module fixes only where it writes, and the one
`archive_command` both the Pulumi program and `pitr archive-command` use. For a bucket, a backup
prefix (`contract.backup_layout.DEFAULT_PREFIX`) and an app, barman-cloud is given the
destination `s3://{bucket}/{prefix}/pitr` and the server name `{app}`, so it writes:

    {prefix}/pitr/{app}/wals/{timeline+log}/{segment}.gz   every WAL segment, gzip
    {prefix}/pitr/{app}/base/{backup_id}/backup.info       a base backup's facts (written last)
    {prefix}/pitr/{app}/base/{backup_id}/data.tar.gz       the base backup itself

The logical backups live beside it under `{prefix}/{app}/{run_id}/`; `pitr` is therefore not a
valid app name. Nothing here is tagged `retention=standard`, so the bucket's lifecycle rule never
expires WAL: `barman-cloud-backup-delete --retention-policy` does, keeping the recovery window.
"""

from __future__ import annotations

import shlex

PITR_DIR = "pitr"
WALS_DIR = "wals"
BASE_DIR = "base"
COMPRESSION = "gzip"  # barman-cloud --gzip: in every barman-cli-cloud, no extra library
WAL_ARCHIVE_TOOL = "barman-cloud-wal-archive"
WAL_RESTORE_TOOL = "barman-cloud-wal-restore"
# seconds: the RPO bound. 55, not 60: the newest commit in S3 is at most archive_timeout plus the
# upload old, so 60 would miss "data loss <= 60 s" by the upload (docs/benchmarks.md)
DEFAULT_ARCHIVE_TIMEOUT = 55
RESERVED_APP_NAMES = (PITR_DIR,)

# The base-backup sidecar's liveness: its schedule loop keeps in this file the Unix time by which
# it promises to write again (automation writes it, the program's probe reads it). A loop that
# misses its promise is wedged, and the kubelet restarts the sidecar; PostgreSQL is not touched.
HEARTBEAT_FILE = "/tmp/opsplane-base-backup.deadline"  # noqa: S108 (the sidecar's own emptyDir)
HEARTBEAT_IDLE_SECONDS = 180  # waiting for the schedule, it writes again every minute
BASE_BACKUP_MAX_SECONDS = 12 * 3600  # a base backup plus retention that runs longer is stuck


def heartbeat_probe(path: str = HEARTBEAT_FILE) -> list[str]:
    """The liveness command: the loop's last promise has not run out (no file: not alive)."""
    return ["sh", "-c", f'test "$(date +%s)" -lt "$(cat {shlex.quote(path)})"']


def _clean(prefix: str) -> str:
    return prefix.strip("/")


def destination_url(bucket: str, prefix: str) -> str:
    """barman-cloud's SOURCE/DESTINATION URL argument for an app's bucket and prefix."""
    scope = _clean(prefix)
    return f"s3://{bucket}/{scope}/{PITR_DIR}" if scope else f"s3://{bucket}/{PITR_DIR}"


def server_root(prefix: str, app: str) -> str:
    """The key prefix barman-cloud writes everything of one app under (no leading slash)."""
    scope = _clean(prefix)
    return f"{scope}/{PITR_DIR}/{app}/" if scope else f"{PITR_DIR}/{app}/"


def wal_prefix(prefix: str, app: str) -> str:
    return server_root(prefix, app) + WALS_DIR + "/"


def base_prefix(prefix: str, app: str) -> str:
    return server_root(prefix, app) + BASE_DIR + "/"


def segment_name(key: str) -> str | None:
    """The WAL file name of a key under `wal_prefix` (`.gz` and other suffixes dropped), or
    None for anything that is not a 24-hex-digit segment (history files, backup labels)."""
    name = key.rsplit("/", 1)[-1].split(".", 1)[0]
    if len(name) == 24 and all(c in "0123456789ABCDEF" for c in name):
        return name
    return None


def archive_command(
    bucket: str, app: str, prefix: str, *, tool: str = WAL_ARCHIVE_TOOL, endpoint: str = ""
) -> str:
    """PostgreSQL's `archive_command`: upload `%p` with barman-cloud-wal-archive, which exits 0
    only once the object is stored (so PostgreSQL keeps the segment until then). Credentials
    and region come from the server's environment (IRSA in prod, AWS_* variables elsewhere)."""
    words = [tool, "--cloud-provider", "aws-s3", f"--{COMPRESSION}"]
    if endpoint:
        words += ["--endpoint-url", endpoint]
    words += [destination_url(bucket, prefix), app]
    return " ".join(shlex.quote(word) for word in words) + " %p"


def restore_command(
    bucket: str,
    app: str,
    prefix: str,
    *,
    tool: str = WAL_RESTORE_TOOL,
    endpoint: str = "",
    parallel: int = 0,
    spool_dir: str = "",
) -> str:
    """PostgreSQL's `restore_command` for a recovery from the same archive (`parallel` > 0:
    prefetch that many segments ahead into `spool_dir`)."""
    words = [tool, "--cloud-provider", "aws-s3"]
    if parallel > 0:
        words += ["--parallel", str(parallel), "--spool-dir", spool_dir]
    if endpoint:
        words += ["--endpoint-url", endpoint]
    words += [destination_url(bucket, prefix), app]
    return " ".join(shlex.quote(word) for word in words) + " %f %p"


def parse_base_key(key: str) -> tuple[str, str, str] | None:
    """(prefix, app, backup_id) of a key under a base backup (`.../pitr/{app}/base/{id}/...`,
    or the folder itself), or None when the key is not one."""
    pieces = [p for p in key.split("/") if p]
    for i in range(len(pieces) - 3, -1, -1):
        if pieces[i] == PITR_DIR and pieces[i + 2] == BASE_DIR and i + 3 < len(pieces):
            return "/".join(pieces[:i]), pieces[i + 1], pieces[i + 3]
    return None


def base_key(prefix: str, app: str, backup_id: str) -> str:
    """How `backups list` names a base backup (its folder)."""
    return f"{base_prefix(prefix, app)}{backup_id}/"


KEEP_ANNOTATION = "annotations/keep"  # barman-cloud-backup-keep's marker under a base backup
