"""The stack form of `status`: targets from the app's `ops` output, and the `stack…` checks
(maintenance on, a rotation pending, a cluster Job left requested, the update holding the lock).

Health URLs come from the catalog (each service's health path and port): in-cluster DNS names on
a Kubernetes stack (reachable from inside the cluster: `status --where cluster`), and the ports the
dev stack publishes on 127.0.0.1.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from automation.operations.status import (
    DEFAULT_DRILL_INTERVAL,
    DEFAULT_INTERVALS,
    DEFAULT_RTO_SECONDS,
    RUNBOOK,
    Check,
    Group,
    StatusTargets,
)
from automation.stack.protocol import StackOps, app_ops

if TYPE_CHECKING:
    from components.catalog.spec import ServiceSpec

BACKUP_KEY = "opsplane:backup"
NEXT_STACK = f"{RUNBOOK}#status-stack"


def database_url(ops: dict[str, Any]) -> str | None:
    """A libpq conninfo for the app's database (a host name, an address or a socket directory)."""
    from psycopg.conninfo import make_conninfo

    db = ops.get("database") or {}
    if not db.get("host"):
        return None
    return make_conninfo(
        host=str(db["host"]),
        port=str(db.get("port") or 5432),
        dbname=str(db.get("name") or ""),
        user=str(db.get("user") or ""),
        password=str(db.get("password") or ""),
    )


def redis_url(ops: dict[str, Any]) -> str | None:
    cache = ops.get("cache") or {}
    if not cache.get("host"):
        return None
    auth = f":{quote(str(cache['password']), safe='')}@" if cache.get("password") else ""
    return f"redis://{auth}{cache['host']}:{cache.get('port') or 6379}"


def health_url(ops: dict[str, Any], service: ServiceSpec) -> str | None:
    """Where `service`'s health endpoint answers from where status runs (None: not reachable)."""
    if ops.get("target") == "kubernetes":
        port = service.service_port or service.port
        return f"http://{service.name}.{ops.get('namespace')}.svc:{port}{service.health_path}"
    if service.dev_publish:
        return f"http://127.0.0.1:{service.dev_publish[0]}{service.health_path}"
    return None


def health_urls(app: str, ops: dict[str, Any]) -> dict[str, str]:
    """`ops.health` ({service: URL}) when the program exports it, else from the catalog."""
    exported = ops.get("health")
    if isinstance(exported, dict):
        return {str(k): str(v) for k, v in exported.items() if v}
    from components.catalog import CATALOG

    spec = CATALOG.get(app)
    if spec is None:
        return {}
    urls = {s.name: health_url(ops, s) for s in spec.services if not s.dev_only}
    return {name: url for name, url in urls.items() if url}


def schedules(stack: StackOps) -> tuple[dict[str, float], float, float]:
    """Backup intervals per part, drill interval and RTO (seconds) from `opsplane:backup`."""
    from components.config import BackupSettings, cron_interval_seconds

    raw = stack.get_config(BACKUP_KEY)
    try:
        settings = BackupSettings.model_validate(json.loads(raw) if raw else {})
    except ValueError:
        return dict(DEFAULT_INTERVALS), DEFAULT_DRILL_INTERVAL, DEFAULT_RTO_SECONDS
    intervals = {
        "db": float(cron_interval_seconds(settings.schedule)),
        "redis": float(cron_interval_seconds(settings.redis_schedule)),
        "objects": float(cron_interval_seconds(settings.objects_schedule)),
    }
    rto = float(getattr(settings, "rto_minutes", DEFAULT_RTO_SECONDS / 60)) * 60
    return intervals, float(cron_interval_seconds(settings.drill_schedule)), rto


def pitr_enabled(stack: StackOps, app: str, ops: dict[str, Any]) -> bool:
    """PITR is on when the app's ops says so (`pitr.enabled`, provided by the PITR work)."""
    pitr = ops.get("pitr")
    return bool(pitr.get("enabled", True)) if isinstance(pitr, dict) else bool(pitr)


def targets_from_stack(stack: StackOps, app: str, *, deep: bool = False) -> StatusTargets:
    ops = app_ops(stack, app)
    backup = ops.get("backup") or {}
    intervals, drill, rto = schedules(stack)
    parts = ("db", "redis") + (("objects",) if ops.get("objects") else ())
    return StatusTargets(
        app=app,
        database_url=database_url(ops),
        redis_url=redis_url(ops),
        bucket=backup.get("bucket"),
        prefix=backup.get("prefix") or "backups",
        s3_endpoint=backup.get("endpoint"),
        health=health_urls(app, ops),
        intervals=intervals,
        drill_interval=drill,
        rto_seconds=rto,
        webhook_table=(ops.get("webhook") or {}).get("table"),
        expect_parts=parts,
        pitr=pitr_enabled(stack, app, ops),
        deep=deep,
    )


# --- the stack checks ----------------------------------------------------------------------------


def groups(stack: StackOps, app: str, targets: StatusTargets, timeout: float) -> list[Group]:
    return [Group("stack", lambda: run(stack, app), NEXT_STACK)]


def run(stack: StackOps, app: str) -> list[Check]:
    ops = app_ops(stack, app)
    return [
        maintenance(stack, app, ops),
        rotation(stack, app, ops),
        cluster_job(stack),
        lock(stack),
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
    from automation.operations.cluster_job import CLUSTER_JOB_KEY, cleanup_commands

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
