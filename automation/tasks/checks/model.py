"""The `status` report model and its runner: checks grouped by dependency, run concurrently, each
group within one deadline; a group that has not answered is a FAIL "timed out after N s".

Task level (imports no stack and no console): the explicit form (`run_checks`), the cluster Job
and every stack-form caller share it. Nothing waits for a hung thread: the process may exit with
it still blocked.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

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


@dataclass
class StackReport:
    """`status --stack S` without `--app`: one `StatusReport` per app of the stack's `ops`, in
    its order; `failed` (any app FAILs) decides the exit code."""

    stack: str
    reports: list[StatusReport] = field(default_factory=list)
    seconds: float | None = None  # wall time of all the apps' reports

    @property
    def failed(self) -> bool:
        return any(r.failed for r in self.reports)

    @property
    def worst(self) -> Level:
        return max((r.worst for r in self.reports), key=LEVELS.index, default="pass")

    def counts(self) -> dict[str, int]:
        return {level: sum(r.counts()[level] for r in self.reports) for level in LEVELS}

    def to_json(self) -> dict[str, Any]:
        return {
            "stack": self.stack,
            "status": self.worst,
            "failed": self.failed,
            "counts": self.counts(),
            "seconds": self.seconds,
            "apps": [r.to_json() for r in self.reports],
        }


# --- what to check --------------------------------------------------------------------------------

DEFAULT_INTERVALS = {"db": 86_400.0, "redis": 21_600.0, "objects": 43_200.0}
DEFAULT_DRILL_INTERVAL = 7 * 86_400.0
DEFAULT_RTO_SECONDS = 3_600.0


@dataclass
class StatusTargets:
    """Where one app's dependencies are, and what "healthy" means for it (explicit form)."""

    app: str
    database_url: str | None = field(default=None, repr=False)  # may hold a password
    redis_url: str | None = field(default=None, repr=False)
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
