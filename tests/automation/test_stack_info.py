"""`ops` command: the contract shown with every secret value redacted."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from automation.cli import app as cli_app
from automation.commands.stack_info import REDACTED, redact
from automation.stack import pulumi_adapter as pulumi_stack
from tests.fakes.fake_stack import FakeStack, sample_ops


def test_redact_replaces_secret_fields_at_any_depth() -> None:
    value = {
        "database": {"user": "qr_user", "password": "p", "pendingPassword": "n"},
        "webhook": {"secret": "whsec", "secretName": "stripe-webhook-secret", "header": "H"},
        "list": [{"password": "x"}],
        "secrets": {"db-password": {"kind": "generated"}},
    }
    shown = redact(value)
    assert shown["database"] == {
        "user": "qr_user",
        "password": REDACTED,
        "pendingPassword": REDACTED,
    }
    assert shown["webhook"]["secret"] == REDACTED
    assert shown["webhook"]["secretName"] == "stripe-webhook-secret"
    assert shown["list"] == [{"password": REDACTED}]
    assert shown["secrets"] == {"db-password": {"kind": "generated"}}


def test_ops_command_prints_no_secret_value(monkeypatch: pytest.MonkeyPatch) -> None:
    ops = sample_ops("qr")
    ops["webhook"] = {"url": "http://api/billing/webhook", "secret": "whsec_live_value"}
    stack = FakeStack(outputs={"ops": {"qr": ops}})
    monkeypatch.setattr(pulumi_stack, "open_stack", lambda name, *a, **k: stack)
    result = CliRunner().invoke(cli_app, ["ops", "--stack", "dev", "--app", "qr", "--json"])
    assert result.exit_code == 0
    shown = json.loads(result.stdout)
    assert shown["database"]["user"] == "qr_user"
    for secret in (ops["database"]["password"], ops["cache"]["password"], "whsec_live_value"):
        assert secret not in result.output
