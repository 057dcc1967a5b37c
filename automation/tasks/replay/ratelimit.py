"""A rate limiter shared by all delivery workers: never more than N sends in any rolling window.

Sends are paced evenly, one every `(window + margin) / N` seconds, rather than in bursts: then no
window of `window` seconds (measured anywhere, fixed or sliding, by the receiver) holds more than
N requests, and receivers that smooth their limit (leaky bucket) are not tripped either. A token
bucket would not do: it allows a full bucket plus a window's refill, up to 2N in one window.

The margin (2% of the window, at least 0.1 s) absorbs the jitter between the moment a send is
granted here and the moment the receiver sees it. A `429` pauses every worker until the
receiver's `Retry-After` has passed (`pause`).
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from automation.errors import UserInputError

_UNITS = {
    "second": 1.0,
    "sec": 1.0,
    "s": 1.0,
    "minute": 60.0,
    "min": 60.0,
    "m": 60.0,
    "hour": 3600.0,
    "h": 3600.0,
}
_RATE_RE = re.compile(r"^\s*(\d+)\s*/\s*(?:(\d+(?:\.\d+)?)\s*)?([a-z]+)\s*$")


@dataclass(frozen=True)
class Rate:
    """At most `limit` requests in any `window` seconds (None limit: unlimited)."""

    limit: int | None
    window: float = 60.0

    def __str__(self) -> str:
        if self.limit is None:
            return "unlimited"
        if self.window == 60.0:
            return f"{self.limit}/minute"
        return f"{self.limit}/{self.window:g}s"


def parse_rate(text: str) -> Rate:
    """`30/minute`, `600/min`, `5/second`, `10/2s` (10 per 2 seconds), or `unlimited`."""
    if text.strip().lower() in ("unlimited", "none", "0"):
        return Rate(None)
    match = _RATE_RE.match(text.lower())
    if not match or match.group(3) not in _UNITS or int(match.group(1)) < 1:
        raise UserInputError(
            f"--rate-limit {text!r}: not a rate; use N/minute, N/second, N/hour or N/<seconds>s "
            "(e.g. 30/minute, 10/2s) or 'unlimited'"
        )
    count = float(match.group(2) or 1)
    return Rate(int(match.group(1)), count * _UNITS[match.group(3)])


class RateLimiter:
    """Grant sends no closer than `(window + margin) / limit` apart; pause all on a 429."""

    def __init__(
        self,
        rate: Rate,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.rate = rate
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._next_slot = clock()
        self._paused_until = 0.0
        if rate.limit is None:
            self.interval = 0.0
        else:
            margin = max(0.02 * rate.window, 0.1)
            self.interval = (rate.window + margin) / rate.limit

    def acquire(self, stop: threading.Event | None = None) -> bool:
        """Block until this worker may send; False when `stop` was set while waiting."""
        while True:
            if stop is not None and stop.is_set():
                return False
            with self._lock:
                now = self._clock()
                start = max(self._next_slot, self._paused_until)
                if start <= now:
                    self._next_slot = max(now, self._next_slot) + self.interval
                    return True
                wait = start - now
            self._sleep(min(wait, 0.25))

    def pause(self, seconds: float) -> None:
        """Stop granting sends for `seconds` from now (a receiver's `Retry-After`)."""
        with self._lock:
            until = self._clock() + max(seconds, 0.0)
            self._paused_until = max(self._paused_until, until)
            # after a pause, restart pacing from the pause's end, not with a backlog of slots
            self._next_slot = max(self._next_slot, self._paused_until)
