"""Replay throughput: the runbook's one-at-a-time loop against bounded concurrency, and the rate
limit against a receiver that enforces 600/minute.

    .venv/bin/python bench/replay_bench.py            # both parts (~2 minutes)
    .venv/bin/python bench/replay_bench.py --part concurrency

Receivers are real threaded HTTP servers on 127.0.0.1 that verify every Stripe signature with the
`stripe` library and take `--latency` seconds per request (default 20 ms, like an app handler
that writes to its database). Both sides run in this one process run; ledgers are real (a JSON
Lines file, fsynced per write). Prints events/s and the ratios the issue sets as goals.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from automation.tasks.replay import run as rr
from automation.tasks.replay.delivery import DEFAULT_CONCURRENCY, DeliveryConfig
from automation.tasks.replay.ratelimit import Rate, parse_rate
from automation.tasks.replay.signing import make_signer
from automation.tasks.replay.sources import Filters
from tests.receivers import Receiver, stripe_verifier

SECRET = "whsec_bench_secret"


@dataclass
class ReceiverStats:
    url: str
    times: list[float]
    statuses: Counter[int]
    duplicates: int
    acked: int


def _serve(conn: Connection, options: dict[str, Any]) -> None:
    receiver = Receiver(verify=stripe_verifier(SECRET), **options).start()
    conn.send(receiver.url)
    conn.recv()  # "stop"
    receiver.stop()
    conn.send(
        (
            receiver.arrival_times(),
            dict(receiver.status_counts()),
            len(receiver.duplicates()),
            len(receiver.acked_ids()),
        )
    )


@contextmanager
def receiver_process(**options: Any) -> Iterator[ReceiverStats]:
    """The receiver in its own process, as an app server is (no GIL shared with the sender)."""
    ours, theirs = multiprocessing.Pipe()
    process = multiprocessing.get_context("fork").Process(target=_serve, args=(theirs, options))
    process.start()
    stats = ReceiverStats(ours.recv(), [], Counter(), 0, 0)
    try:
        yield stats
    finally:
        ours.send("stop")
        times, statuses, stats.duplicates, stats.acked = ours.recv()
        stats.times, stats.statuses = times, Counter(statuses)
        process.join()


def max_in_window(times: list[float], window: float) -> int:
    best, start = 0, 0
    for end, at in enumerate(times):
        while at - times[start] >= window:
            start += 1
        best = max(best, end - start + 1)
    return best


def write_export(directory: Path, count: int) -> Path:
    path = directory / f"events-{time.monotonic_ns()}.jsonl"
    lines = [
        json.dumps(
            {
                "id": f"evt_bench_{n:05d}",
                "object": "event",
                "type": "invoice.paid",
                "created": 1_714_000_000 + n,
                "data": {"object": {"amount": n, "pad": "x" * 600}},
            }
        )
        for n in range(count)
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


def replay_file(
    receiver: ReceiverStats, path: Path, concurrency: int, rate: Rate
) -> tuple[int, float]:
    """One replay of the export, as the command runs it; returns (delivered, seconds)."""
    source = rr.Source(file=path)
    events = rr.load_events(source, Filters(status=None))
    ledger = rr.open_ledger(source, rr.new_run_id(), writable=True)
    config = DeliveryConfig(
        url=receiver.url, signer=make_signer("stripe", SECRET), concurrency=concurrency
    )
    started = time.perf_counter()
    try:
        plan = rr.make_plan(events, ledger.states(), force=False, limit=None)
        outcomes = rr.deliver_plan(plan, config, rate, ledger)
    finally:
        ledger.close()
    return sum(o.delivered for o in outcomes), time.perf_counter() - started


def bench_concurrency(workdir: Path, events: int, latency: float, concurrency: int) -> None:
    print(f"## concurrency: {events} events, receiver latency {latency * 1000:.0f} ms, no limit")
    rates = {}
    for workers in (1, concurrency):
        with Receiver(verify=stripe_verifier(SECRET), latency=latency) as receiver:
            delivered, seconds = replay_file(
                receiver, write_export(workdir, events), workers, Rate(None)
            )
            assert delivered == events and not receiver.duplicates()
        rates[workers] = events / seconds
        print(f"concurrency {workers:>2}: {seconds:7.2f} s  {rates[workers]:8.1f} events/s")
    print(f"speedup: {rates[concurrency] / rates[1]:.2f}x (goal >= 8x)\n")


def bench_rate_limit(
    workdir: Path, events: int, latency: float, concurrency: int, rate: str
) -> None:
    limit = parse_rate(rate)
    assert limit.limit is not None
    per_minute = limit.limit * 60.0 / limit.window
    print(f"## rate limit: {events} events against a receiver enforcing {rate}")
    with Receiver(
        verify=stripe_verifier(SECRET), latency=latency, limit=(limit.limit, limit.window)
    ) as receiver:
        delivered, seconds = replay_file(
            receiver, write_export(workdir, events), concurrency, limit
        )
        times = receiver.arrival_times()
        statuses = receiver.status_counts()
        worst = receiver.max_in_window(limit.window)
    achieved = (len(times) - 1) / (times[-1] - times[0]) * 60.0
    share_429 = statuses.get(429, 0) / len(times)
    print(
        f"delivered {delivered}/{events} in {seconds:.1f} s; requests {len(times)}, "
        f"429 answers {statuses.get(429, 0)} ({share_429:.2%}, goal < 1%)"
    )
    print(
        f"achieved {achieved:.1f}/minute = {achieved / per_minute:.1%} of the allowed "
        f"{per_minute:.0f}/minute (goal >= 95%); most in any {limit.window:g} s window: "
        f"{worst} (limit {limit.limit})\n"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=["all", "concurrency", "rate"], default="all")
    parser.add_argument("--events", type=int, default=1000)
    parser.add_argument("--latency", type=float, default=0.020)
    parser.add_argument("--concurrency", type=int, default=DEFAULT_CONCURRENCY)
    parser.add_argument("--rate", default="600/minute")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="replay-bench-") as tmp:
        if args.part in ("all", "concurrency"):
            bench_concurrency(Path(tmp), args.events, args.latency, args.concurrency)
        if args.part in ("all", "rate"):
            bench_rate_limit(Path(tmp), args.events, args.latency, args.concurrency, args.rate)


if __name__ == "__main__":
    main()
