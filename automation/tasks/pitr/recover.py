"""Recover a temporary PostgreSQL instance to exactly TIME from the newest base backup before it.

Work directory (`--work-dir`, default /var/tmp/opsplane-pitr/<app>), kept between runs so that
looking at another time is cheap:

    base/<backup_id>/   the restored base backup, pristine (never started); reused
    run/data/           the instance's data: a copy of a base, recovering or paused at a target
    run/target.json     which base and target `run/data` holds
    run/sock/           its unix socket (0700: only the run user and root can connect)

The instance replays WAL with `restore_command` = barman-cloud-wal-restore (parallel prefetch),
`recovery_target_action = pause` and `hot_standby = on`: at the target it stops, paused and
read-only, so it can be queried (`--inspect`) and dumped (`--to-time`), and a later target on
the same base continues from where it is (a restart with the new target), while an earlier
target starts again from the pristine base (a local copy, no download). It never archives:
`archive_mode = off` keeps the recovered timeline out of the live archive.
"""

from __future__ import annotations

import json
import shlex
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import psycopg

from automation.errors import TaskFailed, UserInputError
from automation.tasks.io import pgtools
from automation.tasks.pitr import barman
from automation.tasks.pitr.barman import Archive, BaseBackup
from automation.tasks.pitr.instance import Instance, RunAs, make_traversable, run_as, tool_path
from automation.tasks.pitr.state import wal_segments, window
from contract import wal_layout as wl

Log = Callable[[str], None]
DEFAULT_WORK_ROOT = Path("/var/tmp/opsplane-pitr")  # noqa: S108 (kept across runs: --inspect reuses it)
INSTANCE_PORT = 5439
PREFETCH = 8


def parse_time(text: str) -> datetime | None:
    """`latest` -> None; otherwise ISO 8601 with a zone, as UTC."""
    if text.strip().lower() == "latest":
        return None
    try:
        moment = datetime.fromisoformat(text.strip().replace(" ", "T"))
    except ValueError:
        raise UserInputError(
            f"--to-time {text!r}: not a time; use ISO 8601 with a zone "
            "(2026-11-21T16:59:00Z, 2026-11-21T17:59:00+01:00) or latest"
        ) from None
    if moment.tzinfo is None:
        raise UserInputError(
            f"--to-time {text!r} has no zone: add one (Z for UTC, or +01:00) so it is not guessed"
        )
    return moment.astimezone(UTC)


@dataclass(frozen=True)
class Plan:
    """Which base backup, and where to stop: at `lsn` (right after the newest archived commit,
    for a time at or after it), before the first commit after `target`, or (both None) right
    after the base backup (no commit follows it in the archive)."""

    backup: BaseBackup
    target: datetime | None
    lsn: str | None
    asked: datetime
    window: tuple[datetime, datetime]

    @property
    def target_label(self) -> str:
        if self.target is None:
            return f"end of base backup {self.backup.backup_id}"
        return fmt(self.target) + (" (the newest archived commit)" if self.lsn else "")

    def key(self) -> dict[str, str | None]:
        return {
            "backup_id": self.backup.backup_id,
            "target": self.target.isoformat() if self.target else None,
            "lsn": self.lsn,
        }


def fmt(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ").replace(".000000Z", "Z")


def plan(archive: Archive, when: datetime | None, client: object = None) -> Plan:
    """Pick the base backup and target for `when` (None: latest); a time outside the
    recoverable window is refused here, before anything is changed."""
    backups = barman.list_base_backups(archive)
    done = [b for b in backups if b.status == "DONE"]
    floor = done[-1].end_wal if done else ""
    segments = wal_segments(client or archive.client(), archive, floor)
    found = window(archive, backups, segments)
    if found is None:
        raise TaskFailed(
            f"nothing to recover from in {archive.where()}: no complete base backup "
            "(take one with `base-backup`); nothing was changed"
        )
    start, end = found.start, found.end
    asked = end if when is None else when
    if not start <= asked <= end:
        side = (
            "before the first base backup" if asked < start else "after the newest archived commit"
        )
        raise UserInputError(
            f"--to-time {fmt(asked)} is {side}: the recoverable window is {fmt(start)} .. "
            f"{fmt(end)}; pick a time inside it (or latest); nothing was changed"
        )
    backup = [b for b in backups if b.status == "DONE" and b.end <= asked][-1]
    last = found.last_commit
    if last is None:  # no commit after the newest base backup: its end is every later state
        return Plan(backup, None, None, asked, (start, end))
    if asked >= last.time:  # a time target stops only before a later commit: stop at its LSN
        return Plan(backup, last.time, last.lsn, asked, (start, end))
    return Plan(backup, asked, None, asked, (start, end))


@dataclass
class Workspace:
    """The work directory of one app (see the module doc)."""

    root: Path
    archive: Archive
    owner: RunAs

    @classmethod
    def open(cls, root: Path | None, archive: Archive) -> Workspace:
        path = (root or DEFAULT_WORK_ROOT / archive.app).resolve()
        if len(str(path)) > 70:
            raise UserInputError(
                f"--work-dir {path}: too long for a PostgreSQL socket path "
                "(keep it under 70 characters)"
            )
        path.mkdir(parents=True, exist_ok=True)
        owner = run_as()
        for sub in ("base", "run"):
            (path / sub).mkdir(exist_ok=True)
            owner.own(path / sub)
        make_traversable(path)
        return cls(path, archive, owner)

    def base_dir(self, backup_id: str) -> Path:
        return self.root / "base" / backup_id

    @property
    def run_dir(self) -> Path:
        return self.root / "run"

    @property
    def state_file(self) -> Path:
        return self.run_dir / "target.json"

    def instance(self, pg_major: int) -> Instance:
        bin_dir = pgtools.find_pg_tool("postgres", pg_major).parent
        return Instance(self.run_dir / "data", bin_dir, INSTANCE_PORT, self.owner)

    def current(self) -> dict[str, str | None] | None:
        try:
            return json.loads(self.state_file.read_text())  # type: ignore[no-any-return]
        except (OSError, ValueError):
            return None


def ensure_base(ws: Workspace, backup: BaseBackup, log: Log) -> Path:
    """The pristine restored base backup, downloaded once (into a temp name, then renamed, so
    an interrupted download is never taken for a complete one)."""
    final = ws.base_dir(backup.backup_id)
    if (final / "PG_VERSION").exists():
        log(f"base backup {backup.backup_id}: reusing {final}")
        return final
    partial = final.with_name(final.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(mode=0o700)
    ws.owner.own(partial)
    log(f"base backup {backup.backup_id}: downloading into {final}")
    barman.run(
        "restore",
        [ws.archive.url, ws.archive.app, backup.backup_id, str(partial)],
        env=barman.tool_env({**ws.archive.aws_env(), "HOME": str(ws.root)}),
        owner=ws.owner,
        what=f"restoring base backup {backup.backup_id}",
    )
    partial.rename(final)
    return final


def restore_command(ws: Workspace) -> str:
    """barman-cloud-wal-restore, prefetching PREFETCH segments into the spool; a segment it
    already prefetched is moved into place by the shell (what barman itself would do first),
    so most segments cost no Python start. PostgreSQL asks for one file at a time, after the
    previous command (and its download threads) finished, so a spooled file is complete."""
    spool = ws.run_dir / "spool"
    fetch = wl.restore_command(
        ws.archive.bucket,
        ws.archive.app,
        ws.archive.prefix,
        tool=str(tool_path("barman-cloud-wal-restore")),
        parallel=PREFETCH,
        spool_dir=str(spool),
    )
    spooled = shlex.quote(str(spool)) + "/%f"
    return f'if [ -f {spooled} ]; then mv {spooled} "%p"; else {fetch}; fi'


def recovery_settings(ws: Workspace, target: Plan) -> dict[str, str | int]:
    restore = restore_command(ws)
    settings: dict[str, str | int] = {
        "archive_mode": "off",
        "archive_command": "",
        "restore_command": restore,
        "recovery_target_action": "pause",
        "recovery_target_timeline": "latest",
        "hot_standby": "on",
    }
    if target.target is None:
        settings["recovery_target"] = "immediate"
    elif target.lsn is not None:
        settings["recovery_target_lsn"] = target.lsn
        settings["recovery_target_inclusive"] = "on"
    else:
        settings["recovery_target_time"] = target.target.isoformat()
        settings["recovery_target_inclusive"] = "on"
    return settings


def continues(current: dict[str, str | None] | None, target: Plan, running: bool) -> bool:
    """Can the instance in run/ reach `target` by replaying further (same base, later time)?"""
    if not running or current is None or current.get("backup_id") != target.backup.backup_id:
        return False
    was = current.get("target")
    if target.target is None or was is None:
        return was is None and target.target is None
    return datetime.fromisoformat(was) <= target.target


def recovered_instance(
    ws: Workspace, target: Plan, log: Log, env: dict[str, str], user: str = "postgres"
) -> Instance:
    """An instance paused at `target`: reused, continued, or recovered from the base."""
    inst = ws.instance(target.backup.pg_major)
    current = ws.current()
    running = inst.running()
    if running and current == target.key():
        log(f"reusing the instance already paused at {target.target_label}")
        return inst
    if continues(current, target, running):
        log(
            f"continuing the instance from {current and current.get('target')} "
            f"to {target.target_label}"
        )
        inst.stop()
        inst.configure(recovery_settings(ws, target))
    else:
        inst.stop()
        base = ensure_base(ws, target.backup, log)
        ws.state_file.unlink(missing_ok=True)
        shutil.rmtree(inst.pgdata, ignore_errors=True)
        log(f"copying base backup {target.backup.backup_id} to {inst.pgdata}")
        shutil.copytree(base, inst.pgdata, symlinks=True)
        inst.pgdata.chmod(0o700)
        ws.owner.own(inst.pgdata)
        (inst.pgdata / "recovery.signal").touch()
        ws.owner.own(inst.pgdata / "recovery.signal")
        inst.configure(recovery_settings(ws, target))
    shutil.rmtree(ws.run_dir / "spool", ignore_errors=True)  # never a half-written leftover
    (ws.run_dir / "spool").mkdir()
    ws.owner.own(ws.run_dir / "spool")
    ws.state_file.write_text(json.dumps(target.key()))
    inst.start(env)
    wait_paused(inst, log, user)
    return inst


def wait_paused(inst: Instance, log: Log, user: str = "postgres", timeout: float = 3600.0) -> None:
    """Until recovery has reached its target and paused (or the server stops with a reason)."""
    log("replaying WAL to the target ...")
    inst.wait_ready(timeout, user)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        row = replay_state(inst, user)
        if row is None:
            continue
        if not row[0]:
            raise TaskFailed(
                f"the recovery instance left recovery instead of pausing: {inst.last_error()}"
            )
        if row[1] == "paused":
            log(
                "paused at the target (last replayed commit "
                f"{row[2] or 'none after the base backup'})"
            )
            return
        if not inst.running():
            raise TaskFailed(f"recovery stopped: {inst.last_error()}")
        time.sleep(0.2)
    raise TaskFailed(f"recovery did not reach its target within {timeout:.0f}s")


def replay_state(inst: Instance, user: str) -> tuple[bool, str, object] | None:
    """(in recovery, pause state, last replayed commit time); None while it cannot be asked
    (a server going down says why)."""
    try:
        with psycopg.connect(inst.url(user=user), connect_timeout=5) as conn:
            row = conn.execute(
                "SELECT pg_is_in_recovery(), pg_get_wal_replay_pause_state(), "
                "pg_last_xact_replay_timestamp()"
            ).fetchone()
    except psycopg.OperationalError:
        if not inst.running():
            raise TaskFailed(f"recovery stopped: {inst.last_error()}") from None
        time.sleep(0.5)
        return None
    assert row is not None
    return bool(row[0]), str(row[1]), row[2]
