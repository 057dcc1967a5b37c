"""`restore --cleanup`: pre-restore copies and the leftovers of interrupted restores and drills."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from automation.errors import UserInputError
from automation.tasks import pgswap
from automation.tasks.io.pgtools import (
    database_name,
)
from automation.tasks.restore.report import Log
from contract import backup_layout as bf

# --- cleanup --------------------------------------------------------------------------------------


@dataclass
class CleanupReport:
    database: str
    found: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    repaired: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def cleanup_candidates(url: str) -> list[str]:
    """Pre-restore copies, then the `_restore_`/`_verify_` databases of restores and drills (one
    in use, e.g. a restore running now, is listed and then skipped by `cleanup`)."""
    found = pgswap.leftovers(url, database_name(url))
    return [x.name for x in found if x.kind == bf.KIND_PRE_RESTORE] + [
        x.name for x in found if x.kind != bf.KIND_PRE_RESTORE
    ]


def cleanup(url: str, names: list[str], log: Log = lambda line: None) -> CleanupReport:
    """Drop the given pre-restore copies and leftovers; a database in use is skipped, not forced
    (it may be a restore running right now)."""
    live = database_name(url)
    report = CleanupReport(live, found=list(names))
    if pgswap.blocked_live(url, live):
        pgswap.set_allow_connections(url, live, True)
        report.repaired.append(f"re-allowed connections to {live}")
    for name in names:
        parsed = bf.parse_throwaway(name)
        if parsed is None or not parsed.belongs_to(live):
            raise UserInputError(f"{name} is not a restore or verify-backup leftover of {live}")
    busy = {x.name for x in pgswap.leftovers(url, live) if x.in_use}
    for name in names:
        why = "in use (a restore or verify-backup running now?)" if name in busy else None
        why = why or pgswap.drop_database(url, name, force=False)
        if why is None:
            report.dropped.append(name)
            log(f"dropped {name}")
        else:
            report.skipped[name] = why
            log(f"skipped {name}: {why}")
    return report
