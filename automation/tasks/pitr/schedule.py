"""The base-backup sidecar's schedule: the next time a five-field cron expression fires (UTC).

Kubernetes CronJobs cannot run base backups (they need the database pod's ReadWriteOnce data
volume), so the sidecar sleeps until the next matching minute itself."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from automation.errors import UserInputError

_RANGES = ((0, 59), (0, 23), (1, 31), (1, 12), (0, 7))


def _values(field: str, low: int, high: int) -> set[int]:
    out: set[int] = set()
    for item in field.split(","):
        base, _, step_text = item.partition("/")
        step = int(step_text) if step_text else 1
        if base == "*":
            start, end = low, high
        elif "-" in base:
            start, end = (int(x) for x in base.split("-", 1))
        else:
            start = end = int(base)
        if step < 1 or not low <= start <= end <= high:
            raise ValueError(item)
        out.update(range(start, end + 1, step))
    return out


def parse(cron: str) -> list[set[int]]:
    fields = cron.split()
    try:
        if len(fields) != 5:
            raise ValueError(cron)
        sets = [_values(f, lo, hi) for f, (lo, hi) in zip(fields, _RANGES, strict=True)]
    except ValueError:
        raise UserInputError(
            f"--schedule {cron!r}: not a five-field cron schedule like '30 1 * * *'"
        ) from None
    if 7 in sets[4]:
        sets[4].add(0)  # Sunday is 0 or 7
    return sets


def next_fire(cron: str, after: datetime) -> datetime:
    """The first whole minute strictly after `after` that `cron` matches (within 4 years)."""
    minutes, hours, days, months, weekdays = parse(cron)
    restricted_day = len(days) < 31
    restricted_weekday = len(weekdays - {7}) < 7
    moment = after.astimezone(UTC).replace(second=0, microsecond=0) + timedelta(minutes=1)
    limit = moment + timedelta(days=4 * 366)
    while moment < limit:
        day_ok = moment.day in days
        weekday_ok = (moment.isoweekday() % 7) in weekdays
        # cron: when both day fields are restricted, either matching is enough
        if restricted_day and restricted_weekday:
            date_ok = day_ok or weekday_ok
        else:
            date_ok = day_ok and weekday_ok
        if not (moment.month in months and date_ok):
            moment = (moment + timedelta(days=1)).replace(hour=0, minute=0)
        elif moment.hour not in hours:
            moment = (moment + timedelta(hours=1)).replace(minute=0)
        elif moment.minute in minutes:
            return moment
        else:
            moment += timedelta(minutes=1)
    raise UserInputError(f"--schedule {cron!r} never fires")
