"""The base-backup sidecar's cron: the next firing minute, in UTC."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from automation.errors import UserInputError
from automation.tasks.pitr.schedule import next_fire

NOW = datetime(2026, 12, 1, 3, 0, 30, tzinfo=UTC)  # a Tuesday


@pytest.mark.parametrize(
    ("cron", "expected"),
    [
        ("30 1 * * *", datetime(2026, 12, 2, 1, 30, tzinfo=UTC)),
        ("*/15 * * * *", datetime(2026, 12, 1, 3, 15, tzinfo=UTC)),
        ("0 4 * * 0", datetime(2026, 12, 6, 4, 0, tzinfo=UTC)),
        ("0 4 * * 7", datetime(2026, 12, 6, 4, 0, tzinfo=UTC)),
        ("0 2 1 * *", datetime(2027, 1, 1, 2, 0, tzinfo=UTC)),
        ("0 2 1 * 3", datetime(2026, 12, 2, 2, 0, tzinfo=UTC)),  # day OR weekday
        ("5,10 3-4 * * *", datetime(2026, 12, 1, 3, 5, tzinfo=UTC)),
        ("1 3 * * *", datetime(2026, 12, 1, 3, 1, tzinfo=UTC)),
    ],
)
def test_next_fire(cron: str, expected: datetime) -> None:
    assert next_fire(cron, NOW) == expected


@pytest.mark.parametrize("cron", ["* * *", "61 * * * *", "0 0 30 2 *", "*/0 * * * *"])
def test_bad_or_never_firing_schedule_is_refused(cron: str) -> None:
    with pytest.raises(UserInputError, match="--schedule"):
        next_fire(cron, NOW)
