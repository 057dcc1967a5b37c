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

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from automation.stack.protocol import StackOps

Level = Literal["pass", "warn", "fail"]
LEVELS: tuple[Level, ...] = ("pass", "warn", "fail")
RUNBOOK = "docs/runbook.md"


@dataclass(frozen=True)
class Check:
    """One line of the report: what was checked, the verdict, what was measured, what to do."""

    name: str  # "database", "database:connections", "redis", "backup:db", "health:api", ...
    status: Level
    detail: str  # what was measured, one line, no secrets
    next: str | None = None  # the single next step for warn/fail (a command or a runbook anchor)

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "status": self.status, "detail": self.detail, "next": self.next}


@dataclass
class StatusReport:
    """Every check of one app; `failed` decides the exit code (WARNs alone exit 0)."""

    app: str
    checks: list[Check] = field(default_factory=list)
    stack: str | None = None
    seconds: float | None = None  # wall time of the whole report

    @property
    def failed(self) -> bool:
        return any(c.status == "fail" for c in self.checks)

    @property
    def worst(self) -> Level:
        return max((c.status for c in self.checks), key=LEVELS.index, default="pass")

    def counts(self) -> dict[str, int]:
        return {level: sum(c.status == level for c in self.checks) for level in LEVELS}

    def to_json(self) -> dict[str, Any]:
        return {
            "app": self.app,
            "stack": self.stack,
            "status": self.worst,
            "failed": self.failed,
            "counts": self.counts(),
            "seconds": self.seconds,
            "checks": [c.to_json() for c in self.checks],
        }

    @classmethod
    def from_json(cls, document: dict[str, Any]) -> StatusReport:
        """The inverse of `to_json` (a report read back from a cluster Job)."""
        checks = [
            Check(str(c["name"]), c["status"], str(c.get("detail") or ""), c.get("next"))
            for c in document.get("checks") or []
        ]
        return cls(
            app=str(document.get("app") or ""),
            checks=checks,
            stack=document.get("stack"),
            seconds=document.get("seconds"),
        )


# --- what to check --------------------------------------------------------------------------------

DEFAULT_INTERVALS = {"db": 86_400.0, "redis": 21_600.0, "objects": 43_200.0}
DEFAULT_DRILL_INTERVAL = 7 * 86_400.0
DEFAULT_RTO_SECONDS = 3_600.0


@dataclass
class StatusTargets:
    """Where one app's dependencies are, and what "healthy" means for it (explicit form)."""

    app: str
    database_url: str | None = None
    redis_url: str | None = None
    bucket: str | None = None
    prefix: str = "backups"
    s3_endpoint: str | None = None  # None: the standard AWS environment (AWS_ENDPOINT_URL)
    health: dict[str, str] = field(default_factory=dict)  # service name -> URL
    prometheus_url: str | None = None
    alertmanager_url: str | None = None
    pool_size: int | None = None  # the app's configured connection pool (per replica x replicas)
    intervals: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_INTERVALS))
    drill_interval: float = DEFAULT_DRILL_INTERVAL
    rto_seconds: float = DEFAULT_RTO_SECONDS
    webhook_table: str | None = None  # e.g. "webhook_logs"; None: no webhook check
    expect_parts: tuple[str, ...] = ("db",)  # backup parts the app's schedules make
    pitr: bool = False  # PITR is on: the pitr checks run (data from automation.tasks.pitr)
    deep: bool = False


CheckGroup = Callable[[], list[Check]]


@dataclass(frozen=True)
class Group:
    """A set of checks run in one thread; `name` and `next` are used if it fails or times out."""

    name: str
    run: CheckGroup
    next: str


def groups_for(targets: StatusTargets, timeout: float) -> list[Group]:
    """The check groups `targets` asks for (a dependency not given is not checked)."""
    from automation.tasks import checks

    return checks.groups(targets, timeout)


def run_groups(
    groups: Sequence[Group], timeout: float, *, app: str, stack: str | None = None
) -> StatusReport:
    """Run every group concurrently; at the deadline, report what answered and FAIL the rest."""
    started = time.monotonic()
    results: dict[int, list[Check]] = {}
    done = threading.Event()
    lock = threading.Lock()

    def worker(index: int, group: Group) -> None:
        checks = _guarded(group)
        with lock:
            results[index] = checks
            if len(results) == len(groups):
                done.set()

    for index, group in enumerate(groups):
        thread = threading.Thread(
            target=worker, args=(index, group), name=f"status:{group.name}", daemon=True
        )
        thread.start()
    if groups:
        done.wait(timeout)
    with lock:
        answered = dict(results)
    checks: list[Check] = []
    for index, group in enumerate(groups):
        checks.extend(
            answered.get(index)
            or [Check(group.name, "fail", f"timed out after {timeout:g} s", group.next)]
        )
    return StatusReport(
        app=app, checks=checks, stack=stack, seconds=round(time.monotonic() - started, 3)
    )


def _guarded(group: Group) -> list[Check]:
    """A group's checks; an unexpected error is that group's FAIL, never the whole report's."""
    try:
        checks = group.run()
    except Exception as exc:
        message = " ".join(str(exc).split()) or type(exc).__name__
        return [Check(group.name, "fail", message[:300], group.next)]
    return checks or [Check(group.name, "pass", "nothing to check", None)]


def run_checks(targets: StatusTargets, *, timeout: float = 5.0) -> StatusReport:
    """The explicit form: every check `targets` names, concurrently, each within `timeout`."""
    return run_groups(groups_for(targets, timeout), timeout, app=targets.app)


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
) -> StatusReport:
    """The stack form: targets from the app's `ops` output, plus the stack's own checks.

    `database_url` / `redis_url` replace what `ops` says (e.g. a `kubectl port-forward`); the
    monitoring URLs are not part of `ops`."""
    from automation.tasks.checks import stack as stack_checks

    targets = stack_checks.targets_from_stack(stack, app, deep=deep)
    targets.database_url = database_url or targets.database_url
    targets.redis_url = redis_url or targets.redis_url
    targets.alertmanager_url, targets.prometheus_url = alertmanager_url, prometheus_url
    groups = [*groups_for(targets, timeout), *stack_checks.groups(stack, app, targets, timeout)]
    return run_groups(groups, timeout, app=app, stack=stack.name)


def status_command(stack: StackOps, app: str) -> str:
    """The command that reruns these checks."""
    return f"python -m automation status --stack {stack.name} --app {app}"


def cluster_status(
    stack: StackOps, app: str, *, timeout: float = 5.0, deep: bool = False
) -> StatusReport:
    """`--where cluster`: the same checks run inside the cluster as a Job; its JSON report back.

    The Job runs the explicit form (`cluster_args`) and always exits 0 (`--exit-zero`), so that a
    FAIL check still brings back its complete report.
    """
    from automation.console import stderr
    from automation.operations.cluster_job import run_in_cluster

    def say(line: str) -> None:
        stderr.print(line, markup=False, highlight=False, style="dim", soft_wrap=True)

    args = cluster_args(stack, app, timeout=timeout, deep=deep)
    report = StatusReport.from_json(run_in_cluster(stack, app, "status", args, say))
    report.stack = stack.name
    return report


def cluster_args(stack: StackOps, app: str, *, timeout: float, deep: bool) -> list[str]:
    """Arguments of the in-cluster `status` run: the explicit form, without secrets.

    Credentials never go on the command line (they would land in the Job spec): the ops-runner
    Job has `OPSPLANE_DATABASE_URL` / `OPSPLANE_REDIS_URL` from the app's Secret, which
    `--database-url` / `--redis-url` read when not given.
    """
    from automation.tasks.checks import stack as stack_checks

    targets = stack_checks.targets_from_stack(stack, app, deep=deep)
    args = ["--app", app, "--timeout", f"{timeout:g}", "--exit-zero"]
    if targets.bucket:
        args += ["--bucket", targets.bucket, "--prefix", targets.prefix]
    for name, url in targets.health.items():
        args += ["--health-url", f"{name}={url}"]
    if targets.webhook_table:
        args += ["--webhook-table", targets.webhook_table]
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


def verify_operation(
    stack: StackOps, app: str, *, where: str = "local", timeout: float = 5.0
) -> StatusReport:
    """The app's status right after an operation; a status that cannot run is itself a FAIL."""
    from automation.errors import OpsError

    try:
        if where == "cluster":
            return cluster_status(stack, app, timeout=timeout)
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
