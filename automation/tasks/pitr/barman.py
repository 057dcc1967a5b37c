"""barman-cloud, run as a tool: base backups, their list, keep (pin) and retention, WAL fetch.

Nothing here reads or writes barman's format itself: each function runs one barman-cloud
command against the app's archive (`contract/wal_layout.py`) and turns a failure into one line.
S3 comes from the standard AWS environment (AWS_ENDPOINT_URL, credentials, region); an
`Archive` read from a stack's `ops` carries that stack's endpoint and region, which each tool's
own environment takes (the process environment is never edited).
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from automation.errors import TaskFailed, UserInputError
from automation.tasks.io import pgtools
from automation.tasks.pitr.instance import RunAs, tool_path
from contract import wal_layout as wl

PROVIDER = ("--cloud-provider", "aws-s3")


@dataclass(frozen=True)
class Archive:
    """One app's WAL archive and base backups: bucket, backup prefix, app."""

    bucket: str
    app: str
    prefix: str
    endpoint: str | None = None  # `ops.backup.endpoint`/`region`; None: the AWS environment's
    region: str | None = None

    def __post_init__(self) -> None:
        if self.app in wl.RESERVED_APP_NAMES or not self.app or "/" in self.app:
            raise UserInputError(f"--app {self.app!r}: not a valid app name (e.g. --app qr)")

    @property
    def url(self) -> str:
        return wl.destination_url(self.bucket, self.prefix)

    def where(self) -> str:
        return f"s3://{self.bucket}/{wl.server_root(self.prefix, self.app)}"

    def aws_env(self) -> dict[str, str]:
        """What this archive sets over the AWS environment, for barman-cloud and for the
        recovery instance's restore_command."""
        env = {"AWS_ENDPOINT_URL": self.endpoint or "", "AWS_DEFAULT_REGION": self.region or ""}
        return {name: value for name, value in env.items() if value}

    def client(self) -> Any:
        """An S3 client for this archive (boto3, for listing WAL segments)."""
        from automation.tasks.io import s3io

        return s3io.s3_client(self.endpoint, self.region)


@dataclass(frozen=True)
class BaseBackup:
    backup_id: str
    begin: datetime
    end: datetime
    status: str
    size: int  # the cluster's size when backed up
    pg_major: int
    begin_wal: str
    end_wal: str

    @classmethod
    def from_barman(cls, item: Mapping[str, Any]) -> BaseBackup:
        return cls(
            backup_id=str(item["backup_id"]),
            begin=datetime.fromisoformat(str(item["begin_time_iso"])),
            end=datetime.fromisoformat(str(item["end_time_iso"])),
            status=str(item.get("status") or ""),
            size=int(item.get("cluster_size") or 0),
            pg_major=int(item.get("version") or 0) // 10000,
            begin_wal=str(item.get("begin_wal") or ""),
            end_wal=str(item.get("end_wal") or ""),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "backup_id": self.backup_id,
            "begin": self.begin.isoformat(),
            "end": self.end.isoformat(),
            "status": self.status,
            "size": self.size,
            "pg_major": self.pg_major,
        }


def tool_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment barman-cloud runs in: ours (AWS_*), HOME somewhere harmless."""
    env = dict(os.environ)
    env.setdefault("HOME", tempfile.gettempdir())
    env.update(extra or {})
    return env


def run(
    name: str,
    args: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    owner: RunAs | None = None,
    archive: Archive | None = None,
    what: str = "",
    timeout: float | None = None,
) -> str:
    """Run `barman-cloud-<name>`; its stdout, or TaskFailed with its last error line."""
    tool = tool_path(f"barman-cloud-{name}")
    try:
        done = subprocess.run(
            [str(tool), *PROVIDER, *args],
            capture_output=True,
            text=True,
            check=False,
            env=dict(env) if env is not None else tool_env(archive.aws_env() if archive else None),
            cwd="/",
            timeout=timeout,
            user=owner.uid if owner else None,
            group=owner.gid if owner else None,
            extra_groups=owner.extra_groups if owner else None,
        )
    except subprocess.TimeoutExpired:
        raise TaskFailed(f"{what or tool.name}: timed out after {timeout:.0f}s") from None
    if done.returncode != 0:
        lines = [ln.strip() for ln in (done.stderr or done.stdout).splitlines() if ln.strip()]
        errors = (
            [ln for ln in lines if "error" in ln.lower()] or lines or [f"exit {done.returncode}"]
        )
        raise TaskFailed(f"{what or tool.name} failed: {errors[-1][:300]}")
    return done.stdout


def list_base_backups(archive: Archive) -> list[BaseBackup]:
    """The app's base backups, oldest first (every status; `DONE` ones are usable)."""
    out = run(
        "backup-list",
        ["--format", "json", archive.url, archive.app],
        archive=archive,
        what=f"listing base backups in {archive.where()}",
        timeout=120,
    )
    items = json.loads(out or "{}").get("backups_list", [])
    return sorted((BaseBackup.from_barman(i) for i in items), key=lambda b: b.begin)


def take_base_backup(url: str, archive: Archive, *, jobs: int = 2, name: str = "") -> str:
    """barman-cloud-backup of the server behind `url` (gzip, immediate checkpoint); returns
    the new backup's id. Connection settings go through libpq variables (no password in argv)."""
    params = pgtools.parse_url(url)
    args = ["--gzip", "--immediate-checkpoint", "--jobs", str(jobs)]
    if name:
        args += ["--name", name]
    args += [archive.url, archive.app]
    env = pgtools.libpq_env(url, tool_env(archive.aws_env()))
    env.setdefault("PGDATABASE", params.get("dbname", "postgres"))
    before = {b.backup_id for b in list_base_backups(archive)}
    run("backup", args, env=env, what=f"base backup of {pgtools.describe(url)}")
    new = [b for b in list_base_backups(archive) if b.backup_id not in before]
    if not new:
        raise TaskFailed(f"base backup finished but none appeared in {archive.where()}")
    return new[-1].backup_id


def keep(archive: Archive, backup_id: str, *, release: bool = False) -> None:
    """Pin a base backup past retention (`--target full`), or release the pin."""
    args = ["--release"] if release else ["--target", "full"]
    run(
        "backup-keep",
        [*args, archive.url, archive.app, backup_id],
        archive=archive,
        what="barman-cloud-backup-keep",
    )


def keep_status(archive: Archive, backup_id: str) -> str:
    out = run("backup-keep", ["--status", archive.url, archive.app, backup_id], archive=archive)
    return out.strip().rsplit(":", 1)[-1].strip() or "nokeep"


def apply_retention(archive: Archive, days: int) -> str:
    """Delete base backups and WAL no longer needed for a recovery window of `days` days."""
    if days < 1:
        raise UserInputError(f"--retention-days {days}: use at least 1")
    policy = f"RECOVERY WINDOW OF {days} DAYS"
    return run(
        "backup-delete",
        ["--retention-policy", policy, archive.url, archive.app],
        archive=archive,
        what=f"retention ({policy})",
    )


def fetch_wal(archive: Archive, segment: str, dest: Path) -> bool:
    """Download one WAL segment (decompressed) to `dest`; False when the archive lacks it."""
    tool = tool_path("barman-cloud-wal-restore")
    done = subprocess.run(
        [str(tool), *PROVIDER, archive.url, archive.app, segment, str(dest)],
        capture_output=True,
        text=True,
        check=False,
        env=tool_env(archive.aws_env()),
        timeout=300,
    )
    return done.returncode == 0 and dest.exists()
