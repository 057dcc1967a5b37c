"""The `python -m automation` command line: shared conventions for every command.

Conventions (every command follows them):
- user mistakes raise `UserInputError` -> one line on stderr, exit 2, no traceback;
- failures that left everything as it was raise `TaskFailed` -> one line, exit 1;
- `--json` prints one JSON document on stdout (progress goes to stderr);
- anything destructive asks first unless `--yes` (see `confirm`).
Command groups live in `automation/commands/<name>.py`, each with `register(app)`; they are
discovered here, so adding a command never edits this file. `python -m automation NAME` imports
only the module of NAME (`commands.COMMANDS`): start-up is part of every 3 a.m. restore, and the
other commands pull in Pulumi, the replay engine, and so on. `app` (tests) has every command.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import sys
from typing import Any

import typer

from automation import commands
from automation.console import install_signal_handlers

HELP = "opsplane: the runbooks' operations as commands (backup, restore, replay, rotate, ...)."


def build_app(command: str | None = None) -> typer.Typer:
    """The CLI with every command, or with only the module that defines `command` (if known)."""
    cli = typer.Typer(
        name="automation",
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
    )
    # A callback keeps `automation NAME ...` a subcommand even when one module is loaded.
    cli.callback(help=HELP)(_group)
    for name in _command_modules(command):
        importlib.import_module(f"{commands.__name__}.{name}").register(cli)
    _reflow_help(cli)
    return cli


def _reflow_help(cli: typer.Typer) -> None:
    """Docstrings are wrapped at 100 columns in the source; typer keeps those breaks. Join the
    lines of each paragraph so the terminal re-wraps them (epilogs, i.e. examples, are kept)."""
    for info in cli.registered_commands:
        doc = info.help or (info.callback.__doc__ if info.callback else None)
        if doc:
            info.help = reflow(doc)
    for group in cli.registered_groups:
        if group.typer_instance is not None:
            _reflow_help(group.typer_instance)


def reflow(doc: str) -> str:
    paragraphs = inspect.cleandoc(doc).split("\n\n")
    return "\n\n".join(" ".join(line.strip() for line in p.splitlines()) for p in paragraphs)


def _group() -> None:
    pass


def _command_modules(command: str | None) -> list[str]:
    """Every public module in automation/commands (each exposes `register(app)`; `_name` modules
    and `commands.HELPERS` are helpers), or just the one that defines `command`."""
    if command in commands.COMMANDS:
        return [commands.COMMANDS[command]]
    modules = pkgutil.iter_modules(commands.__path__)
    return sorted(
        m.name for m in modules if not m.name.startswith("_") and m.name not in commands.HELPERS
    )


def __getattr__(name: str) -> Any:
    """`automation.cli.app`: the CLI with every command, built on first use."""
    if name == "app":
        built = build_app()
        globals()["app"] = built
        return built
    raise AttributeError(name)


def main() -> None:
    install_signal_handlers()  # SIGTERM gets the same cleanup as Ctrl-C
    build_app(sys.argv[1] if len(sys.argv) > 1 else None)()
