"""`status`: "what is wrong right now?" for one app, as PASS/WARN/FAIL checks with the next step.

The report model (`Check`, `StatusReport`) is shared with `deploy`, `demo` and every operation that
verifies itself (restore, rotate, maintenance off). Two entry points:

- `run_checks(targets)`: the explicit form (URLs given; what the tests and the cluster Job use);
- `app_status(stack, app)`: the stack form; everything comes from the app's `ops` output plus the
  stack checks (maintenance, rotation pending, leftover restore databases, lock holder).

Every check group runs in its own daemon thread; the report is taken at the deadline
(`timeout`), and a group that has not answered by then is a FAIL "timed out after N s". Nothing
waits for a hung thread: the process may exit with it still blocked. Imports stay lazy so
`python -m automation status` starts fast (psycopg, redis, boto3 load inside the checks).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from automation.stack.protocol import StackOps
from automation.tasks.checks import groups as groups_for
from automation.tasks.checks import run_checks
from automation.tasks.checks.model import (
    DEFAULT_DRILL_INTERVAL,
    DEFAULT_INTERVALS,
    DEFAULT_RTO_SECONDS,
    LEVELS,
    RUNBOOK,
    Check,
    Group,
    Level,
    StackReport,
    StatusReport,
    StatusTargets,
    run_groups,
)

# The report model lives with the checks (task level); deploy, demo and the commands take it here.
__all__ = [
    "DEFAULT_DRILL_INTERVAL",
    "DEFAULT_INTERVALS",
    "DEFAULT_RTO_SECONDS",
    "LEVELS",
    "RUNBOOK",
    "Check",
    "Group",
    "Level",
    "StackReport",
    "StatusReport",
    "StatusTargets",
    "alerts_not_checked",
    "app_status",
    "cluster_args",
    "cluster_status",
    "failure_message",
    "run_checks",
    "run_groups",
    "status_command",
    "verify_operation",
    "where_checks_run",
]


def app_status(
    stack: StackOps,
    app: str,
    *,
    timeout: float = 5.0,
    deep: bool = False,
    database_url: str | None = None,
    redis_url: str | None = None,
    alertmanager_url: str | None = None,
    prometheus_url: str | None = None,
    pool_size: int | None = None,
    rto_minutes: float | None = None,
) -> StatusReport:
    """The stack form: targets from the app's `ops` output, plus the stack's own checks.

    `database_url` / `redis_url` replace what `ops` says (e.g. a `kubectl port-forward`);
    `pool_size` / `rto_minutes` replace `ops.database.poolSize` / `ops.backup.schedules.rtoSeconds`;
    the monitoring URLs are not part of `ops`."""
    from automation.operations import status_stack as stack_checks
    from automation.stack.protocol import app_ops

    ops = app_ops(stack, app)  # read once: on a real stack every read is a Pulumi CLI call
    targets = stack_checks.targets_from_ops(stack, app, ops, deep=deep)
    targets.database_url = database_url or targets.database_url
    targets.redis_url = redis_url or targets.redis_url
    targets.alertmanager_url, targets.prometheus_url = alertmanager_url, prometheus_url
    override(targets, pool_size, rto_minutes)
    groups = [*groups_for(targets, timeout), *stack_checks.groups(stack, app, ops)]
    return run_groups(groups, timeout, app=app, stack=stack.name)


def override(targets: StatusTargets, pool_size: int | None, rto_minutes: float | None) -> None:
    """`--pool-size` / `--rto-minutes` given with `--stack`: they win over what `ops` says."""
    if pool_size is not None:
        targets.pool_size = pool_size
    if rto_minutes is not None:
        targets.rto_seconds = rto_minutes * 60


def alerts_not_checked() -> Check:
    """The stack form's line when no monitoring URL is given: Alertmanager and Prometheus are not
    in `ops`, so firing alerts were not looked at. A WARN (exit 0): the report is incomplete."""
    return Check(
        "alerts",
        "warn",
        "not checked: Alertmanager and Prometheus are not in the stack's ops",
        "rerun with --alertmanager-url URL (or --prometheus-url URL), "
        "as the checks reach it (the cluster's Service with --where cluster)",
    )


def status_command(stack: StackOps, app: str) -> str:
    """The command that reruns these checks."""
    return f"python -m automation status --stack {stack.name} --app {app}"


def cluster_status(
    stack: StackOps,
    app: str,
    *,
    timeout: float = 5.0,
    deep: bool = False,
    monitoring: Sequence[str] = (),
    on_output: Callable[[str], None] | None = None,
    pool_size: int | None = None,
    rto_minutes: float | None = None,
) -> StatusReport:
    """`--where cluster`: the app's checks run inside the cluster as a Job, its JSON report back,
    joined by the `stack…` checks, which run here (they read the stack); the same report as
    `app_status`.

    The Job runs the explicit form (`cluster_args`) and always exits 0 (`--exit-zero`), so that a
    FAIL check still brings back its complete report. `monitoring`: extra arguments for it
    (`--alertmanager-url URL`, `--prometheus-url URL`, as the cluster sees them). `pool_size` /
    `rto_minutes`: as in `app_status`.
    """
    import time

    from automation.operations import status_stack as stack_checks
    from automation.operations.cluster_job import run_in_cluster
    from automation.stack.protocol import app_ops

    started = time.monotonic()
    ops = app_ops(stack, app)  # read once: the stack checks and the Job's arguments
    # The stack checks read the stack, not the cluster: they run here, and before the Job, whose
    # own request (`opsplane:clusterJob`) and `up` would otherwise show in them.
    here = run_groups(stack_checks.groups(stack, app, ops), timeout, app=app, stack=stack.name)
    targets = stack_checks.targets_from_ops(stack, app, ops, deep=deep)
    override(targets, pool_size, rto_minutes)
    args = [*job_args(targets, timeout=timeout, deep=deep), *monitoring]
    report = StatusReport.from_json(
        run_in_cluster(stack, app, "status", args, on_output or (lambda line: None))
    )
    report.stack = stack.name
    report.checks.extend(here.checks)  # in the order of the local form: the app's, then stack:*
    report.seconds = round(time.monotonic() - started, 3)
    return report


def cluster_args(
    stack: StackOps,
    app: str,
    *,
    timeout: float,
    deep: bool,
    pool_size: int | None = None,
    rto_minutes: float | None = None,
) -> list[str]:
    """Arguments of the in-cluster `status` run: the explicit form, without secrets.

    Credentials never go on the command line (they would land in the Job spec): the ops-runner
    Job has `OPSPLANE_DATABASE_URL` / `OPSPLANE_REDIS_URL` from the app's Secret, which
    `--database-url` / `--redis-url` read when not given.
    """
    from automation.operations import status_stack as stack_checks

    targets = stack_checks.targets_from_stack(stack, app, deep=deep)
    override(targets, pool_size, rto_minutes)
    return job_args(targets, timeout=timeout, deep=deep)


def job_args(targets: StatusTargets, *, timeout: float, deep: bool) -> list[str]:
    """`cluster_args` from targets already read (overrides applied)."""
    args = ["--app", targets.app, "--timeout", f"{timeout:g}", "--exit-zero"]
    if targets.bucket:
        args += ["--bucket", targets.bucket, "--prefix", targets.prefix]
    for name, url in targets.health.items():
        args += ["--health-url", f"{name}={url}"]
    if targets.webhook_table:
        args += ["--webhook-table", targets.webhook_table]
    if targets.pitr:
        args.append("--pitr")
    if targets.pool_size:
        args += ["--pool-size", str(targets.pool_size)]
    args += ["--rto-minutes", f"{targets.rto_seconds / 60:g}"]
    if deep:
        args.append("--deep")
    return args


# --- operations verify themselves ----------------------------------------------------------------

SAFE = {
    "restore": "the restored database is live and the previous one is kept as "
    "<db>_pre_restore_<time>",
    "rotate": "the rotation is complete: the database and the pods use the new secret",
    "maintenance off": "the app's data was not touched; its writers were restarted",
    "deploy": "the migration finished and the database is as the new release expects",
}


def where_checks_run(ops: dict[str, Any]) -> str:
    """Where an app's checks run when not told, from its `ops`: `cluster` (a Job) on a Kubernetes
    stack, whose addresses are in-cluster Service names; `local` on the Docker stack."""
    return "cluster" if ops.get("target") == "kubernetes" else "local"


def verify_operation(
    stack: StackOps,
    app: str,
    *,
    where: str | None = None,
    timeout: float = 5.0,
    on_output: Callable[[str], None] | None = None,
) -> StatusReport:
    """The app's status right after an operation; a status that cannot run is itself a FAIL.
    `where` None: `where_checks_run`."""
    from automation.errors import OpsError
    from automation.stack.protocol import app_ops

    try:
        if (where or where_checks_run(app_ops(stack, app))) == "cluster":
            return cluster_status(stack, app, timeout=timeout, on_output=on_output)
        return app_status(stack, app, timeout=timeout)
    except OpsError as exc:
        check = Check(
            "status", "fail", f"could not run the checks: {exc}", status_command(stack, app)
        )
        return StatusReport(app=app, checks=[check], stack=stack.name)


def failure_message(report: StatusReport, operation: str, stack: StackOps) -> str:
    """One line for an operation that finished but left a FAIL: what fails, that the data parts
    are safe, and the single next step."""
    failing = [c for c in report.checks if c.status == "fail"]
    names = ", ".join(c.name for c in failing)
    next_step = (
        failing[0].next if failing and failing[0].next else status_command(stack, report.app)
    )
    safe = SAFE.get(operation, "the operation itself completed")
    return (
        f"{operation} finished, but status FAILs after it ({names}); the database parts are "
        f"already safe ({safe}); next: {next_step}, then rerun "
        f"`{status_command(stack, report.app)}`"
    )
