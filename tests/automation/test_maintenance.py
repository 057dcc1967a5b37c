"""Maintenance mode: config + up, always left, never ends someone else's maintenance."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from automation.cli import app as cli_app
from automation.errors import TaskFailed, UserInputError
from automation.operations.maintenance import (
    MAINTENANCE_KEY,
    StillInMaintenance,
    apps_in_maintenance,
    enter,
    leave,
    maintenance,
)
from automation.stack import pulumi_adapter as pulumi_stack
from automation.stack.protocol import StackBusy
from tests.fakes.fake_stack import FakeStack, ProgramModel, sample_ops


def qr_stack(**kwargs: object) -> FakeStack:
    outputs = {"ops": {"qr": sample_ops("qr"), "quickbite": sample_ops("quickbite")}}
    return FakeStack(outputs=outputs, on_up=ProgramModel(), **kwargs)  # type: ignore[arg-type]


def deployed(stack: FakeStack, app: str = "qr") -> bool:
    return stack.outputs()["ops"][app]["maintenance"]


def quiet(_line: str) -> None:
    return None


def test_enter_sets_config_then_up_and_leave_reverses_it() -> None:
    stack = qr_stack()
    assert enter(stack, "qr", quiet) is True
    assert stack.config[MAINTENANCE_KEY] == '["qr"]'
    assert deployed(stack)
    assert leave(stack, "qr", quiet) is True
    assert MAINTENANCE_KEY not in stack.config
    assert not deployed(stack)
    assert stack.ops_sequence() == ["set_config", "up", "remove_config", "up"]


def test_enter_keeps_other_apps_in_the_list() -> None:
    stack = qr_stack(config={MAINTENANCE_KEY: '["quickbite"]'})
    enter(stack, "qr", quiet)
    assert json.loads(stack.config[MAINTENANCE_KEY]) == ["qr", "quickbite"]
    leave(stack, "qr", quiet)
    assert json.loads(stack.config[MAINTENANCE_KEY]) == ["quickbite"]


def test_context_manager_always_leaves_even_when_the_task_fails() -> None:
    stack = qr_stack()
    with pytest.raises(RuntimeError, match="task broke"), maintenance(stack, "qr", quiet):
        assert deployed(stack)
        raise RuntimeError("task broke")
    assert not deployed(stack)
    assert apps_in_maintenance(stack) == []


def test_context_manager_does_not_end_someone_elses_maintenance() -> None:
    stack = qr_stack()
    enter(stack, "qr", quiet)
    calls_before = len(stack.calls)
    with maintenance(stack, "qr", quiet) as entered:
        assert entered is False
    assert deployed(stack)
    assert apps_in_maintenance(stack) == ["qr"]
    assert len(stack.calls) == calls_before  # no config change, no up


def test_leave_failure_names_the_exact_command_to_leave() -> None:
    stack = qr_stack(fail_on_up=2)
    with pytest.raises(StillInMaintenance) as info, maintenance(stack, "qr", quiet):
        pass
    message = str(info.value)
    assert "still in maintenance" in message
    assert "python -m automation maintenance off --stack dev --app qr" in message
    assert deployed(stack)  # the failed up changed nothing: writers still stopped
    leave(stack, "qr", quiet)  # the advertised retry converges
    assert not deployed(stack)


def test_leave_failure_after_a_task_failure_mentions_both() -> None:
    stack = qr_stack(fail_on_up=2)
    with pytest.raises(StillInMaintenance) as info, maintenance(stack, "qr", quiet):
        raise TaskFailed("restore failed: bad archive")
    assert "restore failed: bad archive" in str(info.value)
    assert "maintenance off --stack dev --app qr" in str(info.value)


def test_leave_failing_before_up_still_names_the_command() -> None:
    stack = qr_stack()
    expected = pytest.raises(StillInMaintenance, match="maintenance off --stack dev --app qr")
    with expected, maintenance(stack, "qr", quiet):
        stack.config[MAINTENANCE_KEY] = "not json"  # e.g. a hand edit during the task
    assert deployed(stack)


def test_failed_enter_is_undone_and_reported() -> None:
    stack = qr_stack(fail_on_up=1)
    with pytest.raises(TaskFailed, match="could not enter maintenance, nothing was changed"):
        enter(stack, "qr", quiet)
    assert apps_in_maintenance(stack) == []
    assert not deployed(stack)
    assert stack.ops_sequence() == ["set_config", "up", "remove_config", "up"]


def test_enter_while_stack_is_busy_reverts_config_without_another_up() -> None:
    busy = StackBusy("stack 'dev' is being updated by someone else; wait for it to finish")
    stack = qr_stack(fail_on_up=1, up_error=lambda _n: busy)
    with pytest.raises(TaskFailed, match=r"nothing was changed.*being updated by someone else"):
        enter(stack, "qr", quiet)
    assert stack.ops_sequence() == ["set_config", "up", "remove_config"]
    assert apps_in_maintenance(stack) == []


def test_failed_enter_and_failed_undo_say_how_to_recover() -> None:
    stack = qr_stack(fail_on_up={1, 2})
    with pytest.raises(StillInMaintenance, match="maintenance off --stack dev --app qr"):
        enter(stack, "qr", quiet)


def test_unknown_app_is_bad_input_and_changes_nothing() -> None:
    stack = qr_stack()
    with pytest.raises(UserInputError, match="--app 'nope'"):
        enter(stack, "nope", quiet)
    assert stack.calls == []


def test_malformed_config_value_names_the_key_and_fix() -> None:
    stack = qr_stack(config={MAINTENANCE_KEY: "qr"})
    with pytest.raises(UserInputError, match=r"opsplane:maintenance .* not a JSON list"):
        apps_in_maintenance(stack)


def test_enter_converges_when_config_says_maintenance_but_deploy_did_not() -> None:
    stack = qr_stack(config={MAINTENANCE_KEY: '["qr"]'})
    assert enter(stack, "qr", quiet) is False
    assert deployed(stack)
    assert stack.ops_sequence() == ["up"]


# --- the command line ---------------------------------------------------------------------------


@pytest.fixture
def cli_stack(monkeypatch: pytest.MonkeyPatch) -> FakeStack:
    stack = qr_stack()
    monkeypatch.setattr(pulumi_stack, "open_stack", lambda name, *a, **k: stack)
    return stack


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli_app, list(args))
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, result.stderr


def test_cli_on_off_status_json(cli_stack: FakeStack) -> None:
    code, out, _ = run("maintenance", "on", "--stack", "dev", "--app", "qr", "--yes", "--json")
    assert code == 0
    report = json.loads(out)
    assert report["deployed"] is True and report["changed"] is True
    assert report["writers"] == ["api", "web", "admin"]
    code, out, _ = run("maintenance", "status", "--stack", "dev", "--app", "qr", "--json")
    assert json.loads(out)["configured"] is True
    code, out, _ = run(
        "maintenance", "off", "--stack", "dev", "--app", "qr", "--json", "--no-verify"
    )
    assert code == 0 and json.loads(out)["deployed"] is False


def test_cli_on_without_yes_and_without_tty_refuses(cli_stack: FakeStack) -> None:
    code, _, err = run("maintenance", "on", "--stack", "dev", "--app", "qr")
    assert code == 2
    assert "--yes" in err
    assert cli_stack.calls == []


def test_cli_dry_run_changes_nothing(cli_stack: FakeStack) -> None:
    code, out, _ = run("maintenance", "on", "--stack", "dev", "--app", "qr", "--dry-run", "--json")
    assert code == 0 and json.loads(out)["dryRun"] is True
    assert cli_stack.calls == []


def test_cli_leave_failure_exit_1_with_command(cli_stack: FakeStack) -> None:
    run("maintenance", "on", "--stack", "dev", "--app", "qr", "--yes")
    cli_stack.fail_on_up = {cli_stack.up_count + 1}
    code, _, err = run("maintenance", "off", "--stack", "dev", "--app", "qr")
    assert code == 1
    assert "python -m automation maintenance off --stack dev --app qr" in " ".join(err.split())
    assert "Traceback" not in err


def test_cli_unknown_app_exit_2(cli_stack: FakeStack) -> None:
    code, _, err = run("maintenance", "status", "--stack", "dev", "--app", "nope")
    assert code == 2 and "has no such app" in err
