"""Timed steps and the report a database restore returns."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

Log = Callable[[str], None]


# --- report ---------------------------------------------------------------------------------------


@dataclass
class Step:
    name: str
    seconds: float
    detail: str = ""


@dataclass
class RestoreReport:
    database: str
    source: str
    format: str
    dry_run: bool
    steps: list[Step] = field(default_factory=list)
    leftovers: list[str] = field(default_factory=list)
    restored_from: str | None = None  # the temporary name the restored database was built under
    pre_restore: str | None = None
    tables: dict[str, int] = field(default_factory=dict)
    migration_head: str | None = None
    sessions_ended: int = 0
    bytes_restored: int = 0
    repaired: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @contextlib.contextmanager
    def step(self, name: str, log: Log) -> Iterator[Step]:
        log(f"{name} ...")
        started = time.monotonic()
        entry = Step(name, 0.0)
        try:
            yield entry
        finally:
            entry.seconds = round(time.monotonic() - started, 3)
            self.steps.append(entry)
        detail = f" ({entry.detail})" if entry.detail else ""
        log(f"{name}: done in {entry.seconds:.1f}s{detail}")
