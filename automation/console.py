"""What every command shares with the person at the terminal: errors -> one line and the exit code,
confirmation before anything destructive, `--json` on stdout, progress bars on stderr.

Commands and operations import this; it imports nothing of ours but `automation.errors`.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import wraps
from typing import Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from automation.errors import OpsError, UserInputError

stderr = Console(stderr=True)
F = TypeVar("F", bound=Callable[..., Any])


def handle_errors(func: F) -> F:
    """Turn expected errors into one line on stderr and the documented exit code."""

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except OpsError as exc:
            stderr.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt:
            stderr.print("[bold red]interrupted[/]: nothing further was changed")
            raise typer.Exit(1) from None

    return wrapper  # type: ignore[return-value]


def emit_json(document: Any) -> None:
    """Print a machine-readable report on stdout."""
    sys.stdout.write(json.dumps(document, indent=2, sort_keys=True, default=str) + "\n")


def confirm(question: str, *, yes: bool) -> None:
    """Ask before anything destructive; `--yes` answers for scripts. No TTY and no --yes: refuse."""
    if yes:
        return
    if not sys.stdin.isatty():
        raise UserInputError(f"{question} needs confirmation: rerun with --yes to proceed")
    if not typer.confirm(question, default=False, err=True):
        raise UserInputError("not confirmed: nothing was changed")


@contextmanager
def progress(description: str, total: float | None = None) -> Iterator[Callable[[float], None]]:
    """A progress bar on stderr; yields `advance(n)`."""
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed:,.0f}/{task.total:,.0f}" if total else "{task.completed:,.0f}"),
        TimeElapsedColumn(),
        console=stderr,
        transient=False,
    ) as bar:
        task = bar.add_task(description, total=total)

        def advance(n: float = 1) -> None:
            bar.advance(task, n)

        yield advance
