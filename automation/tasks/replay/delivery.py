"""Sending events: bounded concurrency, the shared rate limit, retries, and the ledger.

Each worker takes one event at a time: wait for a rate-limit slot, sign (a fresh Stripe timestamp
per attempt), POST the exact payload bytes, then classify the answer:
- 2xx: delivered;
- 429: every worker pauses for the receiver's `Retry-After` (seconds or an HTTP date), then the
  event is sent again (up to THROTTLED_RETRIES times; a 429 is not a failed attempt);
- 5xx, timeouts, connection errors: retried after exponential backoff with full jitter, up to
  `max_attempts` attempts in all;
- anything else (400, 401, 404, 3xx...): a failure, reported and not retried.
The outcome is written to the ledger before the worker moves on.
"""

from __future__ import annotations

import queue
import random
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import urllib3

from automation.tasks.replay.ledger import Ledger, Outcome
from automation.tasks.replay.options import DEFAULT_CONCURRENCY
from automation.tasks.replay.ratelimit import RateLimiter
from automation.tasks.replay.signing import Signer
from automation.tasks.replay.sources import Event

THROTTLED_RETRIES = 20
EVENT_ID_HEADER = "X-Opsplane-Event-Id"
# 16, not 8: eight workers can at best be 8x one, and the goal is >= 8x (docs/replay.md)


@dataclass(frozen=True)
class DeliveryConfig:
    url: str
    signer: Signer
    concurrency: int = DEFAULT_CONCURRENCY
    timeout: float = 10.0
    max_attempts: int = 5
    backoff: float = 0.5  # first retry waits up to this long; doubles per attempt
    max_backoff: float = 30.0


def retry_after_seconds(value: str | None, default: float) -> float:
    """`Retry-After` as seconds: a (possibly fractional) number or an HTTP date."""
    if not value:
        return default
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return default
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max((when - datetime.now(UTC)).total_seconds(), 0.0)


def backoff_delay(config: DeliveryConfig, failures: int) -> float:
    """Full jitter: uniform in [0, min(max_backoff, backoff * 2**(failures-1))]."""
    return random.uniform(0, min(config.max_backoff, config.backoff * 2 ** (failures - 1)))


class Worker:
    """Delivers events one at a time over its own keep-alive HTTP session."""

    def __init__(
        self, config: DeliveryConfig, limiter: RateLimiter, ledger: Ledger, stop: threading.Event
    ) -> None:
        self.config, self.limiter, self.ledger, self.stop = config, limiter, ledger, stop
        # urllib3 directly: a third of the CPU per request that `requests` costs
        self.http = urllib3.PoolManager(num_pools=1, maxsize=1, retries=False)
        self.timeout = urllib3.Timeout(connect=config.timeout, read=config.timeout)

    def post(self, event: Event) -> urllib3.BaseHTTPResponse:
        headers = {"Content-Type": "application/json", EVENT_ID_HEADER: event.id}
        headers.update(self.config.signer(event.payload))
        response = self.http.request(
            "POST",
            self.config.url,
            body=event.payload,
            headers=headers,
            timeout=self.timeout,
            redirect=False,
            preload_content=False,
        )
        response.drain_conn()  # read the (ignored) body so the connection is reused
        response.release_conn()
        return response

    def deliver(self, event: Event) -> Outcome | None:
        """Deliver one event and record the outcome; None if stopped before anything was sent."""
        attempts = failures = throttled = 0
        status: int | None = None
        error: str | None = None
        while True:
            if not self.limiter.acquire(self.stop):
                if attempts == 0:
                    return None
                return self._finish(event, attempts, None, f"interrupted: after {error}")
            if attempts == 0:
                self.ledger.begin(event.id)
            attempts += 1
            response, error = self._post_once(event)
            status = None
            if response is not None:
                status = response.status
                if 200 <= status < 300:
                    return self._finish(event, attempts, status, None, delivered=True)
                error = f"HTTP {status}"
                if status == 429 and throttled < THROTTLED_RETRIES:
                    throttled += 1
                    pause = retry_after_seconds(
                        response.headers.get("Retry-After"), backoff_delay(self.config, throttled)
                    )
                    self.limiter.pause(pause)
                    continue
                if status < 500:
                    return self._finish(event, attempts, status, error)
            failures += 1
            if failures >= self.config.max_attempts:
                return self._finish(event, attempts, status, error)
            if self.stop.wait(backoff_delay(self.config, failures)):
                return self._finish(event, attempts, None, f"interrupted: after {error}")

    def _post_once(self, event: Event) -> tuple[urllib3.BaseHTTPResponse | None, str | None]:
        """One POST: (response, None), or (None, what went wrong) when no answer came."""
        try:
            return self.post(event), None
        except urllib3.exceptions.NewConnectionError as exc:  # (a ConnectTimeoutError subclass)
            return None, f"connection error: {_short(exc)}"
        except urllib3.exceptions.TimeoutError:
            return None, f"timeout: no answer within {self.config.timeout:g}s"
        except urllib3.exceptions.HTTPError as exc:
            return None, f"connection error: {_short(exc)}"

    def _finish(
        self,
        event: Event,
        attempts: int,
        status: int | None,
        error: str | None,
        *,
        delivered: bool = False,
    ) -> Outcome:
        outcome = Outcome(event.id, delivered, attempts, status, error)
        self.ledger.finish(outcome)
        return outcome


def _short(exc: Exception) -> str:
    text = str(exc)
    for marker in ("Connection refused", "Connection reset", "Remote end closed", "timed out"):
        if marker in text:
            return marker
    return text.splitlines()[0][:120] if text else type(exc).__name__


class _Finished:
    """A worker's last message: it ran out of events (or hit `error`)."""

    def __init__(self, error: BaseException | None = None) -> None:
        self.error = error


def _work(
    worker: Worker,
    todo: queue.SimpleQueue[Event],
    results: queue.SimpleQueue[Any],
    done: list[Outcome],
) -> None:
    try:
        while not worker.stop.is_set():
            try:
                event = todo.get_nowait()
            except queue.Empty:
                break
            outcome = worker.deliver(event)
            if outcome is not None:
                done.append(outcome)  # here, not in the main thread a signal may interrupt
                results.put(outcome)
    except BaseException as exc:  # e.g. the ledger's database went away: stop everyone
        worker.stop.set()
        results.put(_Finished(exc))
    else:
        results.put(_Finished())
    finally:
        worker.http.clear()


def deliver_all(
    events: Iterable[Event],
    config: DeliveryConfig,
    limiter: RateLimiter,
    ledger: Ledger,
    on_outcome: Callable[[Outcome], None] = lambda _: None,
    done: list[Outcome] | None = None,
) -> list[Outcome]:
    """Deliver with `config.concurrency` workers; Ctrl-C lets in-flight events finish and record.
    Every finished outcome is appended to `done` by the worker itself, so after an interrupt
    `done` holds exactly what this run recorded (`on_outcome` is for progress only)."""
    done = [] if done is None else done
    todo: queue.SimpleQueue[Event] = queue.SimpleQueue()
    for event in events:
        todo.put(event)
    results: queue.SimpleQueue[Any] = queue.SimpleQueue()
    stop = threading.Event()
    threads = [
        threading.Thread(
            target=_work,
            args=(Worker(config, limiter, ledger, stop), todo, results, done),
            name=f"replay-{n}",
            daemon=True,
        )
        for n in range(max(1, min(config.concurrency, todo.qsize())))
    ]
    for thread in threads:
        thread.start()
    errors: list[BaseException] = []
    running = len(threads)
    try:
        while running:
            try:
                item = results.get(timeout=0.5)
            except queue.Empty:
                continue
            if isinstance(item, _Finished):
                running -= 1
                errors.extend([item.error] if item.error else [])
            else:
                on_outcome(item)
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    if errors:
        raise errors[0]
    return done
