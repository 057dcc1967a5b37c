"""The checks of `status`, and `run_checks`, the explicit form that runs them.

One module per dependency: database, redis, backups, health, webhooks, alerts, stack. Each exposes
`group(targets, timeout)` (or several) returning a `Group` whose `run()` gives that dependency's
checks; a module imports its client library (psycopg, redis, boto3) only inside `run`.
"""

from __future__ import annotations

from automation.tasks.checks.model import Group, StatusReport, StatusTargets, run_groups


def groups(targets: StatusTargets, timeout: float) -> list[Group]:
    """Every group `targets` asks for, in report order."""
    from automation.tasks.checks import alerts, backups, database, health, pitr, redis, webhooks

    found: list[Group] = [health.group(name, url, timeout) for name, url in targets.health.items()]
    if targets.database_url:
        found.append(database.group(targets, timeout))
    if targets.redis_url:
        found.append(redis.group(targets, timeout))
    if targets.bucket:
        found.append(backups.group(targets, timeout))
    if targets.pitr:
        found.append(pitr.group(targets, timeout))
    if targets.database_url and targets.webhook_table:
        found.append(webhooks.group(targets, timeout))
    if targets.alertmanager_url or targets.prometheus_url:
        found.append(alerts.group(targets, timeout))
    return found


def run_checks(targets: StatusTargets, *, timeout: float = 5.0) -> StatusReport:
    """The explicit form: every check `targets` names, concurrently, each within `timeout`."""
    return run_groups(groups(targets, timeout), timeout, app=targets.app)
