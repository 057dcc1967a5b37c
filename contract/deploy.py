"""Deploy history: the config key `opsplane:deployHistory` that `deploy`/`rollback` write and the
program accepts (it declares nothing from it). Parsed by this one model on both sides.

    {"qr": [{"n": 1, "kind": "deploy", "at": "2026-12-01T02:00:00Z", "result": "succeeded",
             "images": {"api": "ghcr.io/o/qr-api:1.1.0", ...}, "previous": {...},
             "schemaBefore": "a1", "schemaHead": "b2", "rollbackPoint": "backups/qr/2026.../"}]}

`images` is the full image set the record ended with when it succeeded (what `rollback --to N`
goes back to); `previous` the set before it. The newest `KEEP` records per app are kept.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic.alias_generators import to_camel

HISTORY_KEY = "opsplane:deployHistory"
KEEP = 20

Kind = Literal["deploy", "rollback"]
# succeeded: new images serving; rolled-back: failed, previous images restored automatically;
# refused: failed, left on the new images because the schema moved (see docs/deploy.md);
# restored: failed, data restored to the rollback point and previous images back;
# failed: failed before any image changed (preflight, rollback point) or the rollback failed;
# interrupted: Ctrl-C/SIGTERM after the images changed (next: `rollback`, docs/deploy.md).
Result = Literal["succeeded", "rolled-back", "refused", "restored", "failed", "interrupted"]


class DeployRecord(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True
    )

    n: int = Field(ge=1)
    kind: Kind = "deploy"
    at: str
    result: Result
    images: dict[str, str]
    previous: dict[str, str] = Field(default_factory=dict)
    schema_before: str | None = None
    schema_head: str | None = None
    rollback_point: str | None = None
    detail: str = ""


History = dict[str, list[DeployRecord]]


class HistoryError(ValueError):
    """The stored history does not parse; the message names the key path and the problem."""

    def __init__(self, where: str, problem: str) -> None:
        super().__init__(f"{HISTORY_KEY}{where}: {problem}")
        self.where, self.problem = where, problem


def parse_history(raw: str | dict[str, Any] | None) -> History:
    """The stored value (JSON text or the decoded object) as records, oldest first per app."""
    if raw is None or raw == "":
        return {}
    try:
        data = json.loads(raw) if isinstance(raw, str) else raw
    except json.JSONDecodeError as exc:
        raise HistoryError("", f"not JSON ({exc.msg})") from None
    if not isinstance(data, dict):
        raise HistoryError("", "must be an object of apps, each a list of records")
    out: History = {}
    for app, records in data.items():
        if not isinstance(records, list):
            raise HistoryError(f".{app}", "must be a list of records")
        out[app] = [_record(app, i, r) for i, r in enumerate(records)]
    return out


def _record(app: str, index: int, raw: object) -> DeployRecord:
    try:
        return DeployRecord.model_validate(raw)
    except ValidationError as exc:
        error = exc.errors(include_url=False)[0]
        field = "".join(f".{p}" for p in error["loc"])
        raise HistoryError(f".{app}[{index}]{field}", error["msg"]) from None


def dump_history(history: History) -> str:
    """JSON text for config, keeping the newest `KEEP` records of each app."""
    return json.dumps(
        {
            app: [r.model_dump(by_alias=True, exclude_none=True) for r in records[-KEEP:]]
            for app, records in sorted(history.items())
        },
        sort_keys=True,
    )


def next_number(records: list[DeployRecord]) -> int:
    return max((r.n for r in records), default=0) + 1


def find(records: list[DeployRecord], n: int) -> DeployRecord | None:
    return next((r for r in records if r.n == n), None)
