"""`opsplane:deployHistory`: one model, round trip, bounded, errors that name the record."""

from __future__ import annotations

import json

import pytest

from contract.deploy import KEEP, DeployRecord, HistoryError, dump_history, parse_history


def record(n: int, **changes: object) -> DeployRecord:
    values = {"n": n, "at": "2026-12-01T00:00:00Z", "result": "succeeded", "images": {"api": "a:1"}}
    return DeployRecord.model_validate({**values, **changes})


def test_round_trip_in_camel_case_keeping_the_newest_records() -> None:
    history = {"qr": [record(n, schema_head=f"h{n}") for n in range(1, KEEP + 6)]}
    text = dump_history(history)
    stored = json.loads(text)["qr"]
    assert (
        len(stored) == KEEP and stored[0]["n"] == 6 and stored[-1]["schemaHead"] == f"h{KEEP + 5}"
    )
    assert parse_history(text)["qr"][-1] == history["qr"][-1]


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("{not json", "opsplane:deployHistory: not JSON"),
        ("[]", "opsplane:deployHistory: must be an object of apps"),
        ('{"qr": {}}', "opsplane:deployHistory.qr: must be a list of records"),
        ('{"qr": [{"n": 0, "at": "t", "result": "succeeded", "images": {}}]}',
         "opsplane:deployHistory.qr[0].n: Input should be greater than or equal to 1"),
        ('{"qr": [{"n": 1, "at": "t", "result": "succeeded", "images": {}, "extra": 1}]}',
         "opsplane:deployHistory.qr[0].extra: Extra inputs are not permitted"),
    ],
)  # fmt: skip
def test_a_bad_history_names_where(raw: str, message: str) -> None:
    with pytest.raises(HistoryError) as caught:
        parse_history(raw)
    assert str(caught.value).startswith(message)


def test_unset_is_empty() -> None:
    assert parse_history(None) == {} and parse_history("") == {}
