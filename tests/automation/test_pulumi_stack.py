"""The pulumi.automation adapter: error mapping (the CLI isn't installed here) and unwrapping."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pulumi.automation as auto
import pytest
from pulumi.automation._cmd import CommandResult
from pulumi.automation.errors import create_command_error

from automation.errors import TaskFailed, UserInputError
from automation.stack import pulumi_adapter as pulumi_stack
from automation.stack.pulumi_adapter import PulumiStack, last_meaningful_line, open_stack

REPO = Path(__file__).resolve().parents[2]


def command_error(stderr: str, stdout: str = "", code: int = 255) -> auto.errors.CommandError:
    """The exception the SDK itself builds from a failed CLI run."""
    return create_command_error(CommandResult(stdout=stdout, stderr=stderr, code=code))


def test_missing_cli_through_the_command_line_is_one_line_exit_2(tmp_path: Path) -> None:
    env = {**os.environ, "PATH": str(tmp_path)}  # a PATH without `pulumi`
    proc = subprocess.run(
        [sys.executable, "-m", "automation", "maintenance", "on", "--stack", "dev", "--app", "qr"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "error: the Pulumi CLI is not installed or not on PATH: install `pulumi` and rerun"
    ]
    assert "Traceback" not in proc.stderr


def test_missing_stack_names_it_and_how_to_create_it(monkeypatch: pytest.MonkeyPatch) -> None:
    def select(**_: Any) -> None:
        raise command_error("error: no stack named 'prod' found")

    monkeypatch.setattr(auto, "select_stack", select)
    with pytest.raises(UserInputError) as info:
        open_stack("prod")
    assert "'prod'" in str(info.value)
    assert "pulumi stack init prod" in str(info.value)
    assert "pulumi stack ls" in str(info.value)


def test_concurrent_update_says_wait_or_cancel(monkeypatch: pytest.MonkeyPatch) -> None:
    stack = FakeAutoStack(
        up_error=command_error("error: [409] Conflict: Another update is currently in progress.")
    )
    with pytest.raises(TaskFailed) as info:
        PulumiStack(stack).up(lambda _line: None)
    message = str(info.value)
    assert "being updated by someone else" in message
    assert "pulumi cancel --stack dev" in message
    assert "\n" not in message


def test_diy_backend_lock_is_also_a_concurrent_update() -> None:
    stack = FakeAutoStack(up_error=command_error("error: the stack is currently locked by 1 lock"))
    with pytest.raises(TaskFailed, match="being updated by someone else"):
        PulumiStack(stack).up(lambda _line: None)


def test_other_up_failure_reports_the_last_error_line() -> None:
    stderr = "warning: something minor\nerror: update failed\n"
    stdout = "Updating (dev)\n  kubernetes:batch/v1:Job restore  creating failed\n"
    stdout += "error: Job 'restore' failed: BackoffLimitExceeded\n"
    stack = FakeAutoStack(up_error=command_error(stderr, stdout=stdout))
    with pytest.raises(TaskFailed) as info:
        PulumiStack(stack).up(lambda _line: None)
    assert str(info.value) == "`pulumi up` on stack 'dev' failed: update failed"


def test_last_meaningful_line_skips_framing_and_prefers_errors() -> None:
    text = "\n code: 255\n stdout: Updating (dev)\nsome detail\n stderr: error: boom\n"
    assert last_meaningful_line(text) == "boom"
    assert last_meaningful_line("\n code: 1\n stdout: \n stderr: just this\n") == "just this"
    assert last_meaningful_line("") == "no output from pulumi"


def test_outputs_unwrap_output_values_including_secrets() -> None:
    stack = FakeAutoStack(
        outputs={
            "ops": auto.OutputValue({"qr": {"database": {"password": "s3cret"}}}, secret=True),
            "plain": auto.OutputValue(3, secret=False),
        }
    )
    assert PulumiStack(stack).outputs() == {
        "ops": {"qr": {"database": {"password": "s3cret"}}},
        "plain": 3,
    }


def test_get_config_missing_key_is_none_and_values_pass_through() -> None:
    stack = FakeAutoStack(config={"opsplane:maintenance": '["qr"]'})
    adapter = PulumiStack(stack)
    assert adapter.get_config("opsplane:maintenance") == '["qr"]'
    assert adapter.get_config("opsplane:rotation") is None


def test_set_config_passes_secret_and_path_to_the_sdk() -> None:
    stack = FakeAutoStack()
    PulumiStack(stack).set_config("opsplane:x.y", "v", secret=True, path=True)
    key, value, path = stack.set_calls[0]
    assert (key, value.value, value.secret, path) == ("opsplane:x.y", "v", True, True)


def test_remove_config_of_unset_key_is_not_an_error() -> None:
    stack = FakeAutoStack(config={"opsplane:a": "1"})
    adapter = PulumiStack(stack)
    adapter.remove_config("opsplane:missing")
    adapter.remove_config("opsplane:a")
    assert stack.removed == ["opsplane:a"]


def test_up_streams_lines_and_returns_summary_and_outputs() -> None:
    stack = FakeAutoStack(
        up_lines=["Updating (dev)\n", "  ~ 1 updated\n"],
        outputs={"ops": auto.OutputValue({"qr": {}}, secret=False)},
    )
    lines: list[str] = []
    result = PulumiStack(stack).up(lines.append)
    assert lines == ["Updating (dev)", "  ~ 1 updated"]
    assert result.result == "succeeded"
    assert result.resource_changes == {"update": 1}
    assert result.outputs == {"ops": {"qr": {}}}


def test_empty_stack_name_is_bad_input() -> None:
    with pytest.raises(UserInputError, match="--stack"):
        pulumi_stack.open_stack("  ")


class FakeAutoStack:
    """Just enough of `pulumi.automation.Stack` for the adapter (its CLI calls are simulated)."""

    def __init__(
        self,
        *,
        outputs: dict[str, auto.OutputValue] | None = None,
        config: dict[str, str] | None = None,
        up_error: Exception | None = None,
        up_lines: list[str] | None = None,
    ) -> None:
        self.name = "dev"
        self._outputs = outputs or {}
        self._config = config or {}
        self.up_error = up_error
        self.up_lines = up_lines or []
        self.set_calls: list[tuple[str, auto.ConfigValue, bool]] = []
        self.removed: list[str] = []

    def outputs(self) -> dict[str, auto.OutputValue]:
        return self._outputs

    def get_config(self, key: str, *, path: bool = False) -> auto.ConfigValue:
        if key not in self._config:
            raise command_error(f"error: configuration key '{key}' not found for stack 'dev'")
        return auto.ConfigValue(self._config[key])

    def set_config(self, key: str, value: auto.ConfigValue, *, path: bool = False) -> None:
        self.set_calls.append((key, value, path))

    def remove_config(self, key: str, *, path: bool = False) -> None:
        self.removed.append(key)

    def up(self, on_output: Any = None) -> Any:
        for line in self.up_lines:
            on_output(line)
        if self.up_error:
            raise self.up_error
        summary = type("Summary", (), {"result": "succeeded", "resource_changes": {"update": 1}})
        return type("Result", (), {"summary": summary, "outputs": self._outputs})
