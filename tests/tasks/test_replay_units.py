"""Replay building blocks without a network: signing, rates, export parsing, filters, ledger."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import stripe

from automation.errors import TaskFailed, UserInputError
from automation.tasks.replay.delivery import retry_after_seconds
from automation.tasks.replay.ledger import FileLedger, Outcome, file_ledger_path
from automation.tasks.replay.ratelimit import Rate, RateLimiter, parse_rate
from automation.tasks.replay.run import make_plan
from automation.tasks.replay.signing import make_signer, stripe_signature
from automation.tasks.replay.sources import Event, Filters, parse_time, read_file_events, select

SECRET = "whsec_unit_test_secret"


# --- signing ----------------------------------------------------------------------------------


def test_stripe_signature_is_accepted_by_the_stripe_library() -> None:
    payload = b'{"id":"evt_1","object":"event","type":"invoice.paid"}'
    header = make_signer("stripe", SECRET)(payload)["Stripe-Signature"]
    event = stripe.Webhook.construct_event(payload, header, SECRET)
    assert event["id"] == "evt_1"


def test_stripe_signature_covers_the_exact_bytes() -> None:
    payload = b'{"id": "evt_1", "object": "event"}'
    header = make_signer("stripe", SECRET)(payload)["Stripe-Signature"]
    with pytest.raises(stripe.SignatureVerificationError):
        stripe.Webhook.construct_event(payload.replace(b": ", b":"), header, SECRET)


def test_the_runbooks_openssl_style_signature_is_what_stripe_rejects() -> None:
    """The runbook's curl signs the body alone, without `t=`: the library refuses it."""
    payload = b'{"id":"evt_1","object":"event"}'
    runbook_header = hmac.new(SECRET.encode(), payload, hashlib.sha256).hexdigest()
    with pytest.raises(stripe.SignatureVerificationError):
        stripe.Webhook.construct_event(payload, runbook_header, SECRET)
    assert stripe_signature(SECRET, payload, 1_700_000_000).startswith("t=1700000000,v1=")


def test_hmac_signature_is_hex_hmac_of_the_raw_body_in_the_configured_header() -> None:
    payload = b'{"event":"payment.captured"}'
    headers = make_signer("hmac-sha256", SECRET, "X-Payment-Signature")(payload)
    assert list(headers) == ["X-Payment-Signature"]
    expected = hmac.new(SECRET.encode(), payload, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(headers["X-Payment-Signature"], expected)


def test_hmac_default_header_is_razorpays() -> None:
    assert list(make_signer("hmac-sha256", SECRET)(b"{}")) == ["X-Razorpay-Signature"]


@pytest.mark.parametrize(("scheme", "secret"), [("sha1", SECRET), ("stripe", "")])
def test_bad_signing_input_is_a_user_error(scheme: str, secret: str) -> None:
    with pytest.raises(UserInputError):
        make_signer(scheme, secret)


# --- rates --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "limit", "window"),
    [
        ("30/minute", 30, 60.0),
        ("600/min", 600, 60.0),
        ("5/second", 5, 1.0),
        ("10/2s", 10, 2.0),
        ("100/hour", 100, 3600.0),
        ("unlimited", None, 60.0),
    ],
)
def test_parse_rate(text: str, limit: int | None, window: float) -> None:
    assert parse_rate(text) == Rate(limit, window)


@pytest.mark.parametrize("text", ["30", "thirty/minute", "0/minute", "5/fortnight", "-1/s"])
def test_bad_rate_is_a_user_error(text: str) -> None:
    with pytest.raises(UserInputError, match="--rate-limit"):
        parse_rate(text)


class FakeClock:
    """A clock that only moves when someone sleeps: the limiter's waits become exact."""

    def __init__(self) -> None:
        self.now = 1000.0

    def time(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_limiter_never_grants_more_than_n_in_any_window() -> None:
    clock = FakeClock()
    limiter = RateLimiter(Rate(30, 60.0), clock=clock.time, sleep=clock.sleep)
    grants = []
    for _ in range(100):
        assert limiter.acquire()
        grants.append(clock.now)
    for i in range(len(grants) - 30):
        assert grants[i + 30] - grants[i] >= 60.0
    # and close to the allowed rate: 100 sends take about 100 slots of 61.2/30 s
    assert grants[-1] - grants[0] == pytest.approx(99 * 61.2 / 30)


def test_limiter_pause_holds_every_worker() -> None:
    clock = FakeClock()
    limiter = RateLimiter(Rate(None), clock=clock.time, sleep=clock.sleep)
    assert limiter.acquire()
    limiter.pause(7.5)
    paused_at = clock.now
    assert limiter.acquire()
    assert clock.now - paused_at >= 7.5


def test_limiter_acquire_returns_false_when_stopped() -> None:
    limiter = RateLimiter(Rate(1, 3600.0))
    assert limiter.acquire()
    stop = threading.Event()
    stop.set()
    assert limiter.acquire(stop) is False


@pytest.mark.parametrize(
    ("value", "expected"), [("2", 2.0), ("0.25", 0.25), (None, 9.0), ("soon", 9.0), ("-3", 0.0)]
)
def test_retry_after_seconds(value: str | None, expected: float) -> None:
    assert retry_after_seconds(value, default=9.0) == expected


def test_retry_after_http_date() -> None:
    when = datetime.now(UTC) + timedelta(seconds=30)
    value = when.strftime("%a, %d %b %Y %H:%M:%S GMT")
    assert 28.0 <= retry_after_seconds(value, default=0.0) <= 30.0


# --- export files -------------------------------------------------------------------------------


def stripe_event(n: int, **extra: object) -> dict:
    return {
        "id": f"evt_{n:03d}",
        "object": "event",
        "type": "invoice.paid",
        "created": 1_700_000_000 + n,
        "data": {"object": {"n": n, "note": "é\u2028"}},
        **extra,
    }


def test_list_export_sends_each_elements_raw_text(tmp_path: Path) -> None:
    data = [stripe_event(n) for n in range(3)]
    text = json.dumps(
        {"object": "list", "data": data, "has_more": False, "url": "/v1/events"},
        indent=2,
        ensure_ascii=False,
    )
    path = tmp_path / "events.json"
    path.write_text(text, encoding="utf-8")
    events = read_file_events(path)
    assert [e.id for e in events] == ["evt_000", "evt_001", "evt_002"]
    for event, original in zip(events, data, strict=True):
        assert json.loads(event.payload) == original
        assert event.payload.decode() in text  # a slice of the file, not a re-serialization
        assert event.created == datetime.fromtimestamp(original["created"], UTC)


def test_json_lines_export_sends_each_lines_exact_bytes(tmp_path: Path) -> None:
    lines = [
        b'{"id":"evt_a","object":"event","type":"x",  "created":1700000000}',
        b'{ "id" : "evt_b", "object":"event", "type":"y", "v": 1.50, "u":"\\u00e9"}',
    ]
    path = tmp_path / "events.jsonl"
    path.write_bytes(lines[0] + b"\r\n\n" + lines[1] + b"\n")
    assert [e.payload for e in read_file_events(path)] == lines


@pytest.mark.parametrize(
    ("content", "match"),
    [
        ('{"object":"list","data":[{"id":"evt_1"}', "line 1 is not JSON"),
        ('{"id":"evt_1"}\n{"id": broken}\n', "line 2 is not JSON"),
        ('{"id":"evt_1"}\n{"type":"no id"}\n', "line 2 is not an event object"),
        ('{"object":"list","data":[{"type":"no id"}]}', r"data\[0\] is not an event"),
        ("\n\n", "no events"),
        ("", "no events"),
    ],
)
def test_malformed_export_is_a_user_error(tmp_path: Path, content: str, match: str) -> None:
    path = tmp_path / "events.json"
    path.write_text(content)
    with pytest.raises(UserInputError, match=match):
        read_file_events(path)


def test_missing_export_is_a_user_error(tmp_path: Path) -> None:
    with pytest.raises(UserInputError, match="cannot read"):
        read_file_events(tmp_path / "nope.json")


# --- filters and plans --------------------------------------------------------------------------

BASE = datetime(2024, 5, 1, tzinfo=UTC)


def sample_events() -> list[Event]:
    types = ["checkout.session.completed", "invoice.payment_succeeded", "invoice.paid"]
    return [
        Event(
            f"e{i}",
            b"{}",
            types[i % 3],
            "failed" if i % 2 else "processed",
            BASE + timedelta(hours=i),
        )
        for i in range(10, 0, -1)
    ]


def test_filters_select_exactly_and_oldest_first() -> None:
    filters = Filters(
        status="failed",
        since=BASE + timedelta(hours=2),
        until=BASE + timedelta(hours=9),
        types=("invoice.*",),
    )
    chosen = [e.id for e in select(sample_events(), filters)]
    expected = [
        e.id
        for e in sorted(sample_events(), key=lambda e: e.created)
        if e.status == "failed" and 2 <= e.created.hour < 9 and e.type.startswith("invoice.")
    ]
    assert chosen == expected and chosen  # non-empty: the filter really selects something


def test_id_filter_and_no_status_filter() -> None:
    chosen = [e.id for e in select(sample_events(), Filters(status=None, ids=("e3", "e4")))]
    assert chosen == ["e3", "e4"]


def test_plan_skips_delivered_and_limit_counts_only_what_is_sent() -> None:
    events = list(select(sample_events(), Filters(status=None)))
    states = {"e1": "delivered", "e2": "sending", "e3": "failed"}
    plan = make_plan(events, states, force=False, limit=3)
    assert [e.id for e in plan.skipped] == ["e1"]
    assert [e.id for e in plan.to_send] == ["e2", "e3", "e4"]
    assert plan.in_doubt == ["e2"]
    forced = make_plan(events, states, force=True, limit=None)
    assert not forced.skipped and len(forced.to_send) == 10


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2024-05-01T12:00:00Z", datetime(2024, 5, 1, 12, tzinfo=UTC)),
        ("2024-05-01", datetime(2024, 5, 1, tzinfo=UTC)),
        ("1714564800", datetime(2024, 5, 1, 12, tzinfo=UTC)),
        ("6h", datetime(2024, 5, 1, 6, tzinfo=UTC)),
        ("2d", datetime(2024, 4, 29, 12, tzinfo=UTC)),
    ],
)
def test_parse_time(text: str, expected: datetime) -> None:
    assert parse_time("--since", text, now=datetime(2024, 5, 1, 12, tzinfo=UTC)) == expected


def test_bad_time_is_a_user_error() -> None:
    with pytest.raises(UserInputError, match="--until 'yesterday'"):
        parse_time("--until", "yesterday")


# --- file ledger --------------------------------------------------------------------------------


def test_file_ledger_survives_a_write_cut_short(tmp_path: Path) -> None:
    export = tmp_path / "events.jsonl"
    ledger = FileLedger(export, "run1", writable=True)
    ledger.begin("evt_1")
    ledger.finish(Outcome("evt_1", True, 1, 200))
    ledger.begin("evt_2")
    ledger.close()
    with file_ledger_path(export).open("a") as handle:  # a crash mid-write of evt_2's outcome
        handle.write('{"event_id": "evt_2", "state": "deliv')
    again = FileLedger(export, "run2", writable=True)
    assert again.states() == {"evt_1": "delivered", "evt_2": "sending"}
    again.finish(Outcome("evt_2", False, 3, 503, "HTTP 503"))
    again.close()
    assert FileLedger(export, "run3", writable=False).states() == {
        "evt_1": "delivered",
        "evt_2": "failed",
    }


def test_file_ledger_refuses_a_second_writer(tmp_path: Path) -> None:
    export = tmp_path / "events.jsonl"
    first = FileLedger(export, "run1", writable=True)
    try:
        with pytest.raises(TaskFailed, match="another replay"):
            FileLedger(export, "run2", writable=True)
    finally:
        first.close()
    FileLedger(export, "run3", writable=True).close()  # free again once the first closed
