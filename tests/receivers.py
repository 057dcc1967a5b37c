"""Real local webhook receivers for replay tests and benchmarks (127.0.0.1, threaded HTTP/1.1).

One `Receiver` class, configured per test:
- `verify`: `stripe_verifier(secret)` checks `Stripe-Signature` with
  `stripe.Webhook.construct_event`;
  `hmac_verifier(secret, header)` checks a hex HMAC-SHA256 of the raw body. A bad signature is 400.
- `limit=(N, window)`: a sliding-window limiter answering `429` with `Retry-After` (seconds, may be
  fractional) once N requests were accepted in the last `window` seconds.
- `script={event_id: [503, "hang", 400, ...]}`: what the next requests for that event get, in
  order ("hang" sleeps `hang_seconds` past the client's timeout, then answers 503); afterwards 200.
- `latency`: seconds each accepted request takes (a realistic handler for benchmarks).
It records every arrival (monotonic time, event id, status) and counts acknowledgements (2xx
answers) per event id, with the bytes received.
"""

from __future__ import annotations

import hashlib
import hmac
import sys
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import stripe

EVENT_ID_HEADER = "X-Opsplane-Event-Id"
Verifier = Callable[[Mapping[str, str], bytes], str]  # -> event id; raises ValueError when bad


def stripe_verifier(secret: str) -> Verifier:
    """Verify like a Stripe SDK receiver does; the event id comes from the verified event."""

    def verify(headers: Mapping[str, str], body: bytes) -> str:
        try:
            event = stripe.Webhook.construct_event(body, headers.get("Stripe-Signature"), secret)
        except (stripe.SignatureVerificationError, ValueError) as exc:
            raise ValueError(f"stripe verification failed: {exc}") from None
        return str(event["id"])

    return verify


def hmac_verifier(secret: str, header: str = "X-Razorpay-Signature") -> Verifier:
    """Verify a hex HMAC-SHA256 of the raw body in `header` (QuickBite / Razorpay style)."""

    def verify(headers: Mapping[str, str], body: bytes) -> str:
        expected = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, headers.get(header) or ""):
            raise ValueError(f"bad {header}")
        return headers.get(EVENT_ID_HEADER) or hashlib.sha256(body).hexdigest()

    return verify


@dataclass
class Arrival:
    at: float  # time.monotonic() when the request line was read
    event_id: str
    status: int = 0


@dataclass
class Receiver:
    verify: Verifier | None = None
    limit: tuple[int, float] | None = None
    retry_after: float | None = None  # fixed Retry-After; default: until the window frees up
    script: dict[str, list[int | str]] = field(default_factory=dict)
    latency: float = 0.0
    hang_seconds: float = 2.0
    path: str = "/webhook"

    def __post_init__(self) -> None:
        self.arrivals: list[Arrival] = []
        self.acks: Counter[str] = Counter()
        self.bodies: dict[str, bytes] = {}
        self.headers: dict[str, dict[str, str]] = {}
        self._accepted: deque[float] = deque()
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    # --- lifecycle ------------------------------------------------------------------------------
    def start(self) -> Receiver:
        server = _Server(("127.0.0.1", 0), _handler_for(self))
        self._server = server
        threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> Receiver:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        assert self._server is not None, "receiver not started"
        return f"http://127.0.0.1:{self._server.server_address[1]}{self.path}"

    # --- what tests assert on -------------------------------------------------------------------
    def acked_ids(self) -> set[str]:
        with self._lock:
            return set(self.acks)

    def duplicates(self) -> dict[str, int]:
        with self._lock:
            return {event_id: n for event_id, n in self.acks.items() if n > 1}

    def arrival_times(self) -> list[float]:
        with self._lock:
            return sorted(a.at for a in self.arrivals)

    def status_counts(self) -> Counter[int]:
        with self._lock:
            return Counter(a.status for a in self.arrivals)

    def max_in_window(self, window: float) -> int:
        """The most requests that arrived within any `window` seconds."""
        times = self.arrival_times()
        best, start = 0, 0
        for end, at in enumerate(times):
            while at - times[start] >= window:
                start += 1
            best = max(best, end - start + 1)
        return best

    # --- request handling -----------------------------------------------------------------------
    def _throttle(self, now: float) -> float | None:
        """Seconds to wait when over the limit, else None (and the request counts)."""
        if self.limit is None:
            return None
        count, window = self.limit
        with self._lock:
            while self._accepted and now - self._accepted[0] >= window:
                self._accepted.popleft()
            if len(self._accepted) >= count:
                wait = self._accepted[0] + window - now
                return self.retry_after if self.retry_after is not None else max(wait, 0.001)
            self._accepted.append(now)
            return None

    def _next_scripted(self, event_id: str) -> int | str | None:
        with self._lock:
            steps = self.script.get(event_id)
            return steps.pop(0) if steps else None

    def handle(self, headers: Mapping[str, str], body: bytes) -> tuple[int, dict[str, str]]:
        now = time.monotonic()
        claimed = headers.get(EVENT_ID_HEADER) or "?"
        arrival = Arrival(now, claimed)
        with self._lock:
            self.arrivals.append(arrival)
        wait = self._throttle(now)
        if wait is not None:
            arrival.status = 429
            return 429, {"Retry-After": f"{wait:.3f}"}
        try:
            event_id = self.verify(headers, body) if self.verify else claimed
        except ValueError:
            arrival.status = 400
            return 400, {}
        step = self._next_scripted(event_id)
        if step == "hang":
            time.sleep(self.hang_seconds)
            arrival.status = 503
            return 503, {}
        if isinstance(step, int):
            arrival.status = step
            return step, {}
        if self.latency:
            time.sleep(self.latency)
        with self._lock:
            self.acks[event_id] += 1
            self.bodies[event_id] = body
            self.headers[event_id] = dict(headers)
        arrival.status = 200
        return 200, {}


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    request_queue_size = 256

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A sender killed mid-request (the replay kill tests) resets its connection: that is the
        point of those tests, not an error. socketserver would print a traceback to stderr,
        which a CLI run capturing stderr at that moment would report as its own."""
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)


def _handler_for(receiver: Receiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # as real app servers do: no 40 ms delayed-ACK stalls

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length)
            status, extra = receiver.handle(dict(self.headers.items()), body)
            reply = b'{"received":true}' if status == 200 else b'{"error":true}'
            try:
                self.send_response(status)
                for name, value in extra.items():
                    self.send_header(name, value)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)
            except (BrokenPipeError, ConnectionResetError):
                self.close_connection = True

        def log_message(self, format: str, *args: object) -> None:  # quiet
            return

    return Handler
