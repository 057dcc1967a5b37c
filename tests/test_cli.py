"""The CLI conventions every command shares (automation/cli.py)."""

from __future__ import annotations

import importlib
import json
import os
import pkgutil
import subprocess
import sys

import pytest
import typer
from typer.testing import CliRunner

from automation import commands
from automation.console import handle_errors
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


def registered_names(module: str) -> set[str]:
    """Top-level command and group names one command module registers."""
    probe = typer.Typer()
    importlib.import_module(f"automation.commands.{module}").register(probe)
    names = {c.name or c.callback.__name__ for c in probe.registered_commands}  # type: ignore[union-attr]
    return names | {g.name for g in probe.registered_groups if g.name}


def test_command_map_names_exactly_what_each_module_registers() -> None:
    modules = [
        m.name
        for m in pkgutil.iter_modules(commands.__path__)
        if not m.name.startswith("_") and m.name not in commands.HELPERS
    ]
    assert not hasattr(importlib.import_module("automation.commands.common"), "register")
    registered = {name: module for module in modules for name in registered_names(module)}
    assert registered == commands.COMMANDS


def test_running_one_command_imports_only_its_module() -> None:
    """`python -m automation restore` must not pay for Pulumi or the replay engine at start-up."""
    probe = (
        "import sys; from automation.cli import build_app; build_app('restore'); "
        "print(sorted(m for m in sys.modules if m.startswith(('pulumi', 'automation.commands.'))))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "['automation.commands.restore']"
    full = subprocess.run(
        [sys.executable, "-m", "automation", "restore", "--help"],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert full.returncode == 0 and "--database-url" in full.stdout


HELP_PROBE = """
import json, runpy, sys
from importlib.util import _LazyModule
sys.argv = ["automation", *json.loads(sys.argv[1])]
try:
    runpy.run_module("automation", run_name="__main__")
except SystemExit as exc:
    code = exc.code
loaded = sorted(n for n, m in sys.modules.items() if not isinstance(m, _LazyModule))
print(json.dumps({"code": code, "modules": loaded}))
"""
NOT_FOR_HELP = ("pulumi", "boto3", "botocore", "s3transfer", "psycopg", "psycopg_binary")
# What `--help` may run of ours: the CLI, every command module, and the light modules they name.
HELP_MODULES = {
    "automation", "automation.__main__", "automation.cli", "automation.commands",
    "automation.console", "automation.errors", "automation.lazy", "automation.stack",
    "automation.stack.protocol", "automation.tasks", "automation.tasks.io",
    "automation.tasks.io.gz", "automation.tasks.io.urls", "automation.tasks.replay",
    "automation.tasks.replay.options",
    "automation.tasks.replay.ratelimit", "automation.tasks.replay.signing", "contract",
    "contract.backup_layout", "automation.operations", "automation.operations.maintenance",
    "contract.maintenance",
}  # fmt: skip


def help_modules(*args: str) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-c", HELP_PROBE, json.dumps(args)],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "COLUMNS": "200"},
    ).stdout
    result = json.loads(out.splitlines()[-1])
    assert result["code"] in (0, None), args
    return set(result["modules"])


@pytest.mark.parametrize(
    "args",
    [("--help",), ("restore", "--help"), ("backup", "--help"), ("backups", "pin", "--help"),
     ("verify-backup", "--help"), ("replay", "--help"), ("rotate", "--help"),
     ("maintenance", "on", "--help"), ("ops", "--help"), ("render", "--help"),
     ("status", "--help"), ("deploy", "--help"), ("rollback", "--help"),
     ("base-backup", "--help"), ("pitr", "status", "--help"), ("demo", "--help")],
)  # fmt: skip
def test_help_imports_no_pulumi_boto3_or_psycopg(args: tuple[str, ...]) -> None:
    """`--help` at any level: none of the heavy libraries, and only the light modules of ours."""
    modules = help_modules(*args)
    assert sorted(m for m in modules if m.split(".")[0] in NOT_FOR_HELP) == []
    ours = {m for m in modules if m.split(".")[0] in ("automation", "components", "contract")}
    assert {m for m in ours if not m.startswith("automation.commands.")} <= HELP_MODULES


def test_the_explicit_status_form_never_loads_pulumi() -> None:
    """`status --app A --health-url ...` (what a Job and the tests run) reads no stack: Pulumi's
    0.4 s import is for the stack form only (it once came with every status, doubling its time)."""
    out = subprocess.run(
        [sys.executable, "-c", HELP_PROBE, json.dumps(["status", "--app", "qr", "--timeout", "1",
         "--health-url", f"api=http://127.0.0.1:{closed_port()}/health"])],
        capture_output=True, text=True, check=True, env={**os.environ, "COLUMNS": "200"},
    ).stdout  # fmt: skip
    result = json.loads(out.splitlines()[-1])
    assert result["code"] == 1  # the health check FAILs: the checks really ran
    assert "automation.tasks.checks.health" in result["modules"]
    assert [m for m in result["modules"] if m.split(".")[0] == "pulumi"] == []


def closed_port() -> int:
    from tests.services import free_port

    return free_port()
