"""FakeStack: recorded calls, `--path` config semantics, scripted `up`, and the program model."""

from __future__ import annotations

import json

import pytest

from automation.errors import TaskFailed
from tests.fakes.fake_stack import FakeStack, ProgramModel, model_password, sample_ops, split_path


def test_records_config_and_up_calls_in_order() -> None:
    stack = FakeStack()
    stack.set_config("opsplane:a", "1")
    stack.up(lambda _line: None)
    stack.remove_config("opsplane:a")
    assert stack.ops_sequence() == ["set_config", "up", "remove_config"]
    assert stack.calls[0].key == "opsplane:a" and stack.calls[0].value == "1"
    assert stack.get_config("opsplane:a") is None


def test_split_path_handles_dots_brackets_and_indexes() -> None:
    assert split_path('opsplane:rotation.qr["db-password"].epoch') == (
        "opsplane:rotation",
        ["qr", "db-password", "epoch"],
    )
    assert split_path("opsplane:list[2]") == ("opsplane:list", [2])
    with pytest.raises(ValueError):
        split_path("opsplane:x..y")


def test_path_set_builds_nested_objects_like_pulumi_config_path() -> None:
    stack = FakeStack()
    stack.set_config("opsplane:rotation.qr.db-password.epoch", "3", path=True)
    stack.set_config("opsplane:rotation.qr.jwt-secret", "1", path=True)
    assert json.loads(stack.config["opsplane:rotation"]) == {
        "qr": {"db-password": {"epoch": "3"}, "jwt-secret": "1"}
    }
    assert stack.get_config("opsplane:rotation.qr.db-password.epoch", path=True) == "3"
    assert json.loads(stack.get_config("opsplane:rotation.qr", path=True) or "") == {
        "db-password": {"epoch": "3"},
        "jwt-secret": "1",
    }
    stack.remove_config("opsplane:rotation.qr.jwt-secret", path=True)
    assert stack.get_config("opsplane:rotation.qr.jwt-secret", path=True) is None
    assert stack.get_config("opsplane:rotation.qr.db-password.epoch", path=True) == "3"


def test_secret_keys_are_tracked() -> None:
    stack = FakeStack()
    stack.set_config("opsplane:externalSecrets.qr.stripeSecretKey", "sk", secret=True, path=True)
    assert "opsplane:externalSecrets" in stack.secret_keys


def test_fail_on_up_raises_on_that_up_only_and_keeps_outputs() -> None:
    stack = FakeStack(outputs={"x": 1}, fail_on_up=2, on_up=lambda _c, _o: {"x": 2})
    stack.up(lambda _line: None)
    with pytest.raises(TaskFailed, match="injected failure on up #2"):
        stack.up(lambda _line: None)
    assert stack.outputs() == {"x": 2}
    stack.up(lambda _line: None)
    assert stack.up_count == 3


def test_up_streams_lines() -> None:
    lines: list[str] = []
    FakeStack(name="prod", up_lines=["+ job created"]).up(lines.append)
    assert lines == ["fake up #1 of stack prod", "+ job created"]


def test_outputs_are_copies() -> None:
    stack = FakeStack(outputs={"ops": {"qr": sample_ops()}})
    stack.outputs()["ops"]["qr"]["maintenance"] = True
    assert stack.outputs()["ops"]["qr"]["maintenance"] is False


def test_program_model_follows_maintenance_and_rotation_config() -> None:
    stack = FakeStack(outputs={"ops": {"qr": sample_ops()}}, on_up=ProgramModel())
    stack.set_config("opsplane:maintenance", '["qr"]')
    stack.set_config(
        "opsplane:rotation", json.dumps({"qr": {"db-password": {"epoch": 1, "pending": True}}})
    )
    stack.up(lambda _line: None)
    ops = stack.outputs()["ops"]["qr"]
    assert ops["maintenance"] is True
    assert ops["database"]["password"] == model_password("qr", "db-password", 0)
    assert ops["database"]["pendingPassword"] == model_password("qr", "db-password", 1)
    stack.set_config("opsplane:rotation", json.dumps({"qr": {"db-password": 1}}))
    stack.up(lambda _line: None)
    ops = stack.outputs()["ops"]["qr"]
    assert ops["database"]["password"] == model_password("qr", "db-password", 1)
    assert "pendingPassword" not in ops["database"]
    assert ops["secrets"]["db-password"]["epoch"] == 1
