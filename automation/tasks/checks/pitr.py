"""`pitr:window` and `pitr:archiving`: point-in-time recovery as status sees it, where it is on.

The data is `automation.tasks.pitr.state.pitr_state` (what `pitr status` prints): the recoverable
window from the base backups and the archived WAL, the newest archived segment's age, and, with
the database URL, the server's own archiver (`pg_stat_archiver`, segments still waiting).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from automation.tasks.checks.model import RUNBOOK, Check, Group

if TYPE_CHECKING:
    from automation.tasks.checks.model import StatusTargets
    from automation.tasks.pitr.state import PitrState

NEXT = f"{RUNBOOK}#status-pitr"


def group(targets: StatusTargets, timeout: float) -> Group:
    return Group("pitr", lambda: run(targets, timeout), NEXT)


def run(targets: StatusTargets, timeout: float) -> list[Check]:
    from automation.tasks.checks.backups import client_for
    from automation.tasks.pitr.state import pitr_state

    if not targets.bucket:
        return [Check("pitr", "fail", "PITR is on but no --bucket was given", NEXT)]
    state = pitr_state(
        targets.bucket,
        targets.app,
        targets.prefix,
        database_url=targets.database_url,
        client=client_for(targets, timeout),
        endpoint=targets.s3_endpoint,  # barman-cloud lists base backups at the same S3
    )
    return judge(state, targets.app)


def judge(state: PitrState, app: str) -> list[Check]:
    """The two checks from one `pitr_state` reading."""
    return [window_check(state, app), archiving_check(state)]


def window_check(state: PitrState, app: str) -> Check:
    if state.window_start is None or state.window_end is None:
        why = "; ".join(state.problems) or "no base backup with its WAL"
        next_step = f"python -m automation pitr status --app {app} (then take a base-backup)"
        return Check("pitr:window", "fail", f"nothing recoverable: {why}", next_step)
    start, end = state.window_start.isoformat(), state.window_end.isoformat()
    count = len(state.base_backups)
    return Check("pitr:window", "pass", f"recoverable {start} .. {end} ({count} base backups)")


def archiving_check(state: PitrState) -> Check:
    from automation.tasks.pitr.state import LAG_LIMIT, lagging

    stats, age = state.archiver, state.newest_wal_age
    newest = (
        f"newest WAL {state.newest_wal.segment} archived {age:.0f} s ago"
        if state.newest_wal is not None and age is not None
        else "no WAL archived yet"
    )
    if state.archiving_failing and stats is not None:
        detail = f"archiving FAILING: {stats.failed_count} failed, last {stats.last_failed_wal}"
        return Check("pitr:archiving", "fail", f"{detail}; {newest}", NEXT)
    if lagging(state) and stats is not None:
        detail = (
            f"{stats.waiting} segments waiting on the server; {newest} (over {LAG_LIMIT:.0f} s)"
        )
        return Check("pitr:archiving", "fail", detail, NEXT)
    if stats is None:
        return Check("pitr:archiving", "pass", f"{newest} (server not asked: no database URL)")
    return Check("pitr:archiving", "pass", f"{newest}; server: {stats.waiting} waiting")
