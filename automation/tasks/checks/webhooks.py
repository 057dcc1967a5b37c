"""`webhooks`: failed events in the app's webhook log (`webhook_logs`) that the replay ledger
(table `opsplane_webhook_replay_ledger`, automation/tasks/replay/ledger.py) has not recorded as
delivered: what `replay` would still send.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from automation.operations.status import RUNBOOK, Check, Group

if TYPE_CHECKING:
    from automation.operations.status import StatusTargets

NEXT = f"{RUNBOOK}#webhook-replay"
LEDGER_TABLE = "opsplane_webhook_replay_ledger"  # = automation.tasks.replay.ledger.LEDGER_TABLE
FAILED_STATUS = "failed"  # = the replay command's default --status


def group(targets: StatusTargets, timeout: float, next_step: str = NEXT) -> Group:
    return Group("webhooks", lambda: [run(targets, timeout, next_step)], next_step)


def run(targets: StatusTargets, timeout: float, next_step: str = NEXT) -> Check:
    from psycopg import sql

    from automation.tasks.checks.database import connect

    assert targets.database_url and targets.webhook_table
    schema, _, name = targets.webhook_table.rpartition(".")
    table = sql.Identifier(schema, name) if schema else sql.Identifier(name)
    with connect(targets.database_url, timeout) as conn:
        if conn.execute("SELECT to_regclass(%s)", (targets.webhook_table,)).fetchone()[0] is None:
            return Check("webhooks", "pass", f"no table {targets.webhook_table} in this database")
        has_ledger = conn.execute("SELECT to_regclass(%s)", (LEDGER_TABLE,)).fetchone()[0]
        query = sql.SQL(
            "SELECT count(*), min(w.created_at)::text FROM {table} w WHERE w.status = %s"
        ).format(table=table)
        if has_ledger:
            query += sql.SQL(
                " AND NOT EXISTS (SELECT 1 FROM {ledger} l WHERE l.event_id = w.event_id::text "
                "AND l.state = 'delivered')"
            ).format(ledger=sql.Identifier(LEDGER_TABLE))
        count, oldest = conn.execute(query, (FAILED_STATUS,)).fetchone()
    if count:
        detail = f"{count} failed event(s) not yet delivered (oldest {oldest})"
        return Check("webhooks", "warn", detail, next_step)
    return Check("webhooks", "pass", "no failed event waiting for delivery")
