"""The stack form of `status`: targets from the app's `ops` output, and the `stack…` checks
(maintenance on, a rotation pending, a cluster Job left requested, the update holding the lock).

Everything comes from the app's `ops` output (contract/ops.py): the health URLs the program
exports (`ops.health`: in-cluster Service names on a Kubernetes stack, reachable from inside the
cluster with `status --where cluster`; the ports the dev stack publishes on 127.0.0.1) and the
backup schedules as deployed (`ops.backup.schedules`).
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

from automation.stack.protocol import StackOps, app_ops, database_url
from automation.tasks.checks.model import (
    DEFAULT_DRILL_INTERVAL,
    DEFAULT_INTERVALS,
    DEFAULT_RTO_SECONDS,
    RUNBOOK,
    Check,
    Group,
    StatusTargets,
)

NEXT_STACK = f"{RUNBOOK}#status-stack"


def database_url_if_declared(ops: dict[str, Any]) -> str | None:
    """The app's database conninfo, or None when its ops output declares no database host."""
    return database_url(ops) if (ops.get("database") or {}).get("host") else None


def redis_url(ops: dict[str, Any]) -> str | None:
    cache = ops.get("cache") or {}
    if not cache.get("host"):
        return None
    auth = f":{quote(str(cache['password']), safe='')}@" if cache.get("password") else ""
    return f"redis://{auth}{cache['host']}:{cache.get('port') or 6379}"


def health_urls(ops: dict[str, Any]) -> dict[str, str]:
    """`ops.health`: {service: URL of its health endpoint, as reachable where status runs}."""
    exported = ops.get("health") or {}
    return {str(k): str(v) for k, v in exported.items() if v}


def schedules(ops: dict[str, Any]) -> tuple[dict[str, float], float, float]:
    """Backup intervals per part, drill interval and RTO (seconds) as the stack deployed them."""
    deployed = (ops.get("backup") or {}).get("schedules") or {}
    intervals = {**DEFAULT_INTERVALS, **(deployed.get("intervals") or {})}
    drill = float(deployed.get("drillSeconds") or DEFAULT_DRILL_INTERVAL)
    rto = float(deployed.get("rtoSeconds") or DEFAULT_RTO_SECONDS)
    return {k: float(v) for k, v in intervals.items()}, drill, rto


def pitr_enabled(stack: StackOps, app: str, ops: dict[str, Any]) -> bool:
    """PITR is on when the app's ops says so (`pitr.enabled`, provided by the PITR work)."""
    pitr = ops.get("pitr")
    return bool(pitr.get("enabled", True)) if isinstance(pitr, dict) else bool(pitr)


def targets_from_stack(stack: StackOps, app: str, *, deep: bool = False) -> StatusTargets:
    return targets_from_ops(stack, app, app_ops(stack, app), deep=deep)


def targets_from_ops(
    stack: StackOps, app: str, ops: dict[str, Any], *, deep: bool = False
) -> StatusTargets:
    """What to check for `app`, from its `ops` and the stack's backup config."""
    backup = ops.get("backup") or {}
    intervals, drill, rto = schedules(ops)
    parts = ("db", "redis") + (("objects",) if ops.get("objects") else ())
    pool = (ops.get("database") or {}).get("poolSize")
    return StatusTargets(
        app=app,
        database_url=database_url_if_declared(ops),
        redis_url=redis_url(ops),
        bucket=backup.get("bucket"),
        prefix=backup.get("prefix") or "backups",
        s3_endpoint=backup.get("endpoint"),
        health=health_urls(ops),
        pool_size=int(pool) if pool else None,
        intervals=intervals,
        drill_interval=drill,
        rto_seconds=rto,
        webhook_table=(ops.get("webhook") or {}).get("table"),
        expect_parts=parts,
        pitr=pitr_enabled(stack, app, ops),
        deep=deep,
    )


# --- the stack checks ----------------------------------------------------------------------------


def groups(stack: StackOps, app: str, ops: dict[str, Any]) -> list[Group]:
    """One group per stack check: each reads the stack at most once (a CLI call on a real one)."""
    return [
        Group("stack:maintenance", lambda: [maintenance(stack, app, ops)], NEXT_STACK),
        Group("stack:rotation", lambda: [rotation(stack, app, ops)], NEXT_STACK),
        Group("stack:cluster-job", lambda: [cluster_job(stack)], NEXT_STACK),
        Group("stack:lock", lambda: [lock(stack)], NEXT_STACK),
    ]


def maintenance(stack: StackOps, app: str, ops: dict[str, Any]) -> Check:
    from automation.operations import maintenance as mm

    configured, deployed = app in mm.apps_in_maintenance(stack), bool(ops.get("maintenance"))
    if configured or deployed:
        writers = ", ".join(ops.get("writers") or []) or "none"
        detail = f"in maintenance (writers stopped: {writers})"
        if configured != deployed:
            detail += "; config and the last `up` disagree"
        return Check("stack:maintenance", "warn", detail, mm.off_command(stack, app))
    return Check("stack:maintenance", "pass", "not in maintenance")


def rotation(stack: StackOps, app: str, ops: dict[str, Any]) -> Check:
    pending = sorted(n for n, s in (ops.get("secrets") or {}).items() if (s or {}).get("pending"))
    if not pending:
        return Check("stack:rotation", "pass", "no rotation pending")
    from automation.operations.rotation import resume_command

    detail = f"rotation pending for {', '.join(pending)}"
    return Check("stack:rotation", "warn", detail, resume_command(stack, app, pending[0]))


def cluster_job(stack: StackOps) -> Check:
    from automation.operations.cluster_job import cleanup_commands
    from contract.cluster_job import CLUSTER_JOB_KEY

    pending = stack.get_config(CLUSTER_JOB_KEY)
    if not pending:
        return Check("stack:cluster-job", "pass", "no cluster Job requested")
    try:
        request = json.loads(pending)
        what = f"{request.get('task')} {request.get('id')}"
    except (ValueError, AttributeError):
        what = "unreadable request"
    detail = f"cluster Job requested in config ({what}); if no one is running it, clear it"
    return Check("stack:cluster-job", "warn", detail, cleanup_commands(stack))


def lock(stack: StackOps) -> Check:
    """The update holding the stack, when the adapter can tell (`current_update()`)."""
    current = getattr(stack, "current_update", None)
    holder = current() if callable(current) else None
    if holder:
        detail = f"an update holds the stack: {holder}"
        return Check("stack:lock", "warn", detail, f"pulumi cancel --stack {stack.name}")
    return Check("stack:lock", "pass", "no update in progress")
