"""`backup…`: the newest complete run of each part against its schedule, and the newest restore
drill's verdict and restore time against the RTO target; `pitr…` where PITR is on.

Ages: WARN past 1.1x the schedule's interval, FAIL past 2x; no backup at all is at least a WARN
(a FAIL when the part is expected, i.e. the database). The drill's verdict is the `verified`
tag `verify-backup` puts on the database part (`verified-at`, and `verified-seconds` for the
restore time); see docs/backups.md.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from automation.tasks.checks.model import RUNBOOK, Check, Group, Level
from contract import backup_layout as bf

if TYPE_CHECKING:
    from automation.tasks.checks.model import StatusTargets

NEXT_MISSING = f"{RUNBOOK}#alert-backupmissing"
NEXT_DRILL = f"{RUNBOOK}#alert-restoredrillfailed"
NEXT_DRILL_MISSING = f"{RUNBOOK}#alert-restoredrillmissing"
NEXT_RTO = f"{RUNBOOK}#status-restore-time"
WARN_FACTOR, FAIL_FACTOR = 1.1, 2.0
DRILL_LOOKBACK = 12  # newest database parts searched for a drill verdict
PARTS = ("db", "redis", "objects")


def group(targets: StatusTargets, timeout: float) -> Group:
    return Group("backup", lambda: run(targets, timeout), NEXT_MISSING)


def part_of(name: str) -> str | None:
    """A run's file -> the part it belongs to (db, redis, objects), or None (manifest, others)."""
    if name in (bf.DB_PLAIN, bf.DB_CUSTOM):
        return "db"
    if name == bf.REDIS_PART:
        return "redis"
    if name.startswith(bf.OBJECTS_DIR):
        return "objects"
    return None


def complete_runs(keys: list[str]) -> dict[str, dict[str, str]]:
    """run id -> {part: key of the part} for every run that has its manifest (complete)."""
    runs: dict[str, dict[str, str]] = {}
    manifests: set[str] = set()
    for key in keys:
        parsed = bf.parse_run_key(key)
        if not parsed:
            continue
        run_id, name = parsed[2], parsed[3]
        if name == bf.MANIFEST:
            manifests.add(run_id)
        part = part_of(name)
        if part:
            runs.setdefault(run_id, {}).setdefault(part, key)
    return {run_id: parts for run_id, parts in runs.items() if run_id in manifests}


def age_seconds(run_id: str, now: datetime) -> float:
    started = bf.run_time(run_id)
    if started is None:
        raise ValueError(f"{run_id!r} is not a run id")
    return (now - started).total_seconds()


def judge_age(name: str, age: float, interval: float, what: str, next_step: str) -> Check:
    detail = f"{what} {_duration(age)} ago (schedule every {_duration(interval)})"
    if age > FAIL_FACTOR * interval:
        return Check(name, "fail", detail + f": past {FAIL_FACTOR:g}x the schedule", next_step)
    if age > WARN_FACTOR * interval:
        return Check(name, "warn", detail + f": past {WARN_FACTOR:g}x the schedule", next_step)
    return Check(name, "pass", detail)


def client_for(targets: StatusTargets, timeout: float) -> Any:
    """An S3 client that gives up within `timeout` (one attempt) instead of retrying for minutes."""
    import os

    import boto3
    from botocore.config import Config

    config = Config(
        connect_timeout=timeout,
        read_timeout=timeout,
        retries={"total_max_attempts": 1, "mode": "standard"},  # max_attempts: retries only
        s3={"addressing_style": os.environ.get("OPSPLANE_S3_ADDRESSING_STYLE", "path")},
    )
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
    return boto3.client("s3", region_name=region, endpoint_url=targets.s3_endpoint, config=config)


def run(targets: StatusTargets, timeout: float, now: datetime | None = None) -> list[Check]:
    """The backup checks; an S3 endpoint that does not answer within `timeout` (the client's own
    connect/read timeout, one attempt) is the same FAIL as the runner's deadline."""
    from botocore.exceptions import ConnectTimeoutError, ReadTimeoutError

    from automation.errors import OpsError

    try:
        return checks(targets, timeout, now)
    except OpsError as exc:  # s3io's one-line error; the botocore one is its context
        if not isinstance(exc.__context__, ConnectTimeoutError | ReadTimeoutError):
            raise
        detail = f"s3://{targets.bucket}/: timed out after {timeout:g} s"
        return [Check("backup", "fail", detail, NEXT_MISSING)]


def checks(targets: StatusTargets, timeout: float, now: datetime | None = None) -> list[Check]:
    from automation.tasks.io import s3io

    client = client_for(targets, timeout)
    assert targets.bucket is not None  # the group is declared only with a bucket
    prefix = bf.run_prefix(targets.prefix, targets.app, "x")[:-2]  # "{prefix}/{app}/"
    keys = [obj["Key"] for obj in s3io.list_keys(client, targets.bucket, prefix)]
    runs = complete_runs(keys)
    now = now or datetime.now(UTC)
    checks = [part_check(targets, part, runs, now) for part in expected(targets, runs)]
    checks.append(drill_check(client, targets, runs, now))
    return checks


def expected(targets: StatusTargets, runs: dict[str, dict[str, str]]) -> list[str]:
    """The database always; other parts when the app makes them or any run has them."""
    seen = {part for parts in runs.values() for part in parts}
    return [p for p in PARTS if p == "db" or p in targets.expect_parts or p in seen]


def part_check(
    targets: StatusTargets, part: str, runs: dict[str, dict[str, str]], now: datetime
) -> Check:
    name = f"backup:{part}"
    interval = targets.intervals.get(part, targets.intervals.get("db", 86_400.0))
    newest = max(
        (run_id for run_id, parts in runs.items() if part in parts),
        key=bf.run_sort_key,
        default=None,
    )
    if newest is None:
        where = f"s3://{targets.bucket}/{targets.prefix.strip('/')}/{targets.app}/"
        level: Level = "fail" if part == "db" else "warn"
        return Check(name, level, f"no complete backup of {part} under {where}", NEXT_MISSING)
    age = age_seconds(newest, now)
    return judge_age(name, age, interval, f"newest run {newest},", NEXT_MISSING)


def drill_check(
    client: Any, targets: StatusTargets, runs: dict[str, dict[str, str]], now: datetime
) -> Check:
    """The newest drill verdict among the newest database parts."""
    from automation.tasks.io import s3io

    assert targets.bucket is not None  # the group is declared only with a bucket
    newest_first = sorted(runs, key=bf.run_sort_key, reverse=True)
    db_keys = [runs[r]["db"] for r in newest_first if "db" in runs[r]]
    for key in db_keys[:DRILL_LOOKBACK]:
        tags = s3io.get_tags(client, targets.bucket, key)
        if tags.get(bf.TAG_VERIFIED):
            return judge_drill(targets, key, tags, now)
    return Check(
        "backup:drill",
        "warn",
        f"no restore drill recorded on the {min(len(db_keys), DRILL_LOOKBACK)} newest backups",
        NEXT_DRILL_MISSING,
    )


def judge_drill(targets: StatusTargets, key: str, tags: dict[str, str], now: datetime) -> Check:
    run_id = key.rsplit("/", 2)[-2]
    verdict, at = tags[bf.TAG_VERIFIED], tags.get(bf.TAG_VERIFIED_AT)
    if verdict != "ok":
        return Check(
            "backup:drill", "fail", f"drill of run {run_id} {verdict} (at {at})", NEXT_DRILL
        )
    seconds = _float(tags.get(bf.TAG_VERIFIED_SECONDS))
    known = seconds is not None  # a small database's drill restores in "0.0" s: still a time
    took = f", restored in {seconds:.1f} s (RTO {targets.rto_seconds:.0f} s)" if known else ""
    if seconds is not None and seconds > targets.rto_seconds:
        return Check("backup:drill", "warn", f"drill of run {run_id} ok{took}: over RTO", NEXT_RTO)
    if at and bf.RUN_ID_PATTERN.match(at):
        what = f"drill of run {run_id} ok{took}; drill ran"
        return judge_age(
            "backup:drill", age_seconds(at, now), targets.drill_interval, what, NEXT_DRILL_MISSING
        )
    return Check("backup:drill", "pass", f"drill of run {run_id} ok{took}")


def _float(text: str | None) -> float | None:
    try:
        return float(text) if text else None
    except ValueError:
        return None


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 172_800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86_400:.1f} d"
