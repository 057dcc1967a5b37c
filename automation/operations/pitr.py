"""The stack form of `restore --to-time`: everything from the app's `ops` output.

- local: the recovery instance runs here; the time is checked against the window first, the
  temporary instance is recovered while the app keeps running, and only bringing the database
  into live (dump -> shadow -> check -> swap) runs inside maintenance. `--inspect` needs no
  maintenance at all.
- cluster: TIME is parsed here and, when this machine can read the archive, checked against
  the window, both before maintenance; then the explicit form runs as the cluster Job
  (`operations/cluster_job.py`) inside maintenance; its work directory is the Job's /tmp.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from automation.errors import UserInputError
from automation.stack.protocol import StackOps, app_ops
from contract import backup_layout as bf

if TYPE_CHECKING:
    from automation.tasks.pitr.barman import Archive

Log = Callable[[str], None]
Confirm = Callable[[str], None]
CLUSTER_WORK_DIR = "/tmp/opsplane-pitr"  # noqa: S108 (the Job pod's own scratch volume)


def archive_of(ops: dict[str, Any], app: str) -> Archive:
    """The app's WAL archive, at the stack's S3 endpoint and region (`ops.backup`); refused
    when the app does not archive."""
    from automation.tasks.pitr.barman import Archive

    pitr = ops.get("pitr") or {}
    if not pitr.get("enabled"):
        raise UserInputError(
            f"{app} does not archive WAL on this stack: add it to opsplane:pitr.apps "
            "(docs/config.md) and `pulumi up`; until then restore --backup latest|KEY"
        )
    backup = ops.get("backup") or {}
    return Archive(
        str(backup.get("bucket")),
        app,
        str(backup.get("prefix") or bf.DEFAULT_PREFIX),
        endpoint=backup.get("endpoint") or None,
        region=backup.get("region") or None,
    )


def restore_to_time_local(
    stack: StackOps,
    app: str,
    when: str,
    *,
    database_url: str,
    inspect: bool,
    work_dir: Path | None,
    jobs: int,
    log: Log,
    confirm: Confirm,
) -> dict[str, Any]:
    """Check, recover, then (not inspecting) swap into live inside maintenance."""
    from automation.operations.maintenance import maintenance
    from automation.tasks.pitr.run import PitrRestore

    ops = app_ops(stack, app)
    job = PitrRestore(database_url, archive_of(ops, app), when, work_dir, jobs, log)
    plan = job.check()
    if inspect:
        return {"stack": stack.name, "app": app, **job.inspect()}
    job.guard()  # target checks and the restore claim, before anything changes
    try:
        confirm(
            f"Replace {app}'s database on stack {stack.name} with its state at "
            f"{plan.target_label}? ({app} goes into maintenance while it is swapped in)"
        )
        job.instance()  # recovered while the app still runs
        with maintenance(stack, app, log):
            document = job.into_live()
    finally:
        job.close()
    return {"stack": stack.name, "app": app, **document}


def restore_to_time_cluster(
    stack: StackOps, app: str, when: str, *, inspect: bool, jobs: int, log: Log, confirm: Confirm
) -> dict[str, Any]:
    """The explicit form as the cluster Job, inside maintenance."""
    from automation.operations.cluster_job import run_in_cluster
    from automation.operations.maintenance import maintenance

    if inspect:
        raise UserInputError(
            "--inspect keeps a copy running where the command runs: drop --where cluster "
            "(or run it in an ops-runner pod)"
        )
    ops = app_ops(stack, app)
    archive = archive_of(ops, app)
    target = check_time_here(archive, when, log)
    args = ["--bucket", archive.bucket, "--prefix", archive.prefix, "--app", app]
    args += ["--to-time", when]
    args += ["--jobs", str(jobs), "--work-dir", CLUSTER_WORK_DIR, "--yes", "--json"]
    confirm(
        f"Replace {app}'s database on stack {stack.name} with its state at {target}, in the "
        f"cluster? ({app} goes into maintenance meanwhile)"
    )
    with maintenance(stack, app, log):
        result = run_in_cluster(stack, app, "restore", args, log)
    return {"stack": stack.name, "app": app, "where": "cluster", **result}


def check_time_here(archive: Archive, when: str, log: Log) -> str:
    """Before maintenance stops the writers: TIME must parse (ISO 8601 with a zone, or
    latest), and, when this machine can read the archive (as the local form does), lie inside
    the recoverable window. Returns the target to name in the confirmation. An archive that
    cannot be read from here is left to the Job, which checks it before changing anything."""
    from automation.errors import OpsError
    from automation.tasks.pitr import barman, recover

    recover.parse_time(when)  # UserInputError (exit 2) before anything changes
    try:
        barman.list_base_backups(archive)
    except OpsError as exc:
        log(f"could not read the window from here ({exc}); the Job checks TIME against it")
        return when
    plan = recover.plan(archive, recover.parse_time(when))
    start, end = plan.window
    log(f"recoverable window {recover.fmt(start)} .. {recover.fmt(end)}: {when} is inside it")
    return plan.target_label
