"""The CLI conventions every command shares (automation/cli.py)."""

from __future__ import annotations

import typer
from typer.testing import CliRunner

from automation.cli import handle_errors
from automation.errors import TaskFailed, UserInputError


def make_app(exc: Exception) -> typer.Typer:
    app = typer.Typer()

    @app.command()
    @handle_errors
    def boom() -> None:
        raise exc

    @app.command()
    def other() -> None:  # a second command keeps `boom` a named subcommand
        pass

    return app


def test_bad_input_is_one_line_and_exit_2() -> None:
    result = CliRunner().invoke(
        make_app(UserInputError("--key 'backups/[x].sql.gz': no such object")), ["boom"]
    )
    assert result.exit_code == 2
    assert result.stderr.strip() == "error: --key 'backups/[x].sql.gz': no such object"
    assert "Traceback" not in result.output


def test_failure_with_nothing_lost_is_exit_1() -> None:
    result = CliRunner().invoke(
        make_app(TaskFailed("restore failed: live database untouched")), ["boom"]
    )
    assert result.exit_code == 1
    assert result.stderr.strip() == "error: restore failed: live database untouched"


def test_every_command_has_help() -> None:
    from automation.cli import app

    runner = CliRunner()
    top = runner.invoke(app, ["--help"], env={"COLUMNS": "200"})
    assert top.exit_code == 0
    for command in ("backup", "backups", "verify-backup", "restore", "replay", "rotate",
                    "maintenance", "ops", "render"):  # fmt: skip
        assert command in top.output
        result = runner.invoke(app, [command, "--help"], env={"COLUMNS": "200"})
        assert result.exit_code == 0, command
