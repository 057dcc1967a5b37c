"""What every command shares with the person at the terminal: errors -> one line and the exit code,
confirmation before anything destructive, `--json` on stdout, progress bars on stderr.

Every message goes through `errors.redact` (no credential is ever printed), and with `--json` a
command prints a report on stdout even when it fails or is interrupted. SIGTERM (a Job deadline,
a node drain) is turned into `Terminated`, a KeyboardInterrupt, so it gets Ctrl-C's cleanup.

Commands and operations import this; it imports nothing of ours but `automation.errors`.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from functools import wraps
from types import FrameType
from typing import Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from automation.errors import OpsError, Terminated, UserInputError, redact


class RedactingConsole(Console):
    """A rich Console whose every printed string is passed through `redact` first."""

    def print(self, *objects: Any, **kwargs: Any) -> None:
        super().print(*(redact(o) if isinstance(o, str) else o for o in objects), **kwargs)


stderr = RedactingConsole(stderr=True)
F = TypeVar("F", bound=Callable[..., Any])
DEBUG_ENV = "OPSPLANE_DEBUG"
_emitted: list[bool] = []  # non-empty once this command printed its --json document


def handle_errors(func: F) -> F:
    """Turn expected errors into one line on stderr and the documented exit code; with `--json`,
    also a failure report on stdout. Anything unexpected is one line too (exit 1), not a
    traceback: set OPSPLANE_DEBUG=1 to see it."""

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        as_json = kwargs.get("json") is True
        _emitted.clear()
        try:
            return func(*args, **kwargs)
        except (typer.Exit, typer.Abort, typer.TyperException):  # typer's own exits and usage
            raise
        except OpsError as exc:
            fail(str(exc), exc.exit_code, exc, as_json=as_json)
        except KeyboardInterrupt as exc:
            what = "terminated (SIGTERM)" if isinstance(exc, Terminated) else "interrupted"
            line = getattr(exc, "summary", None) or "nothing further was changed"
            fail(f"{what}: {line}", 1, exc, as_json=as_json, interrupted=True)
        except Exception as exc:
            if os.environ.get(DEBUG_ENV):
                raise
            line = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            fail(
                f"unexpected {type(exc).__name__}: {line} (a bug: rerun with {DEBUG_ENV}=1 for "
                "the traceback and report it)",
                1,
                exc,
                as_json=as_json,
            )

    return wrapper  # type: ignore[return-value]


def fail(
    message: str,
    code: int,
    exc: BaseException,
    *,
    as_json: bool,
    interrupted: bool = False,
) -> None:
    """The one error boundary: a redacted line on stderr; with --json, the report on stdout (what
    was done, from the exception's `report` when the command attached one); exit `code`."""
    message = redact(message)
    stderr.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    if as_json and not _emitted:  # a command that printed its report (ok: false) and then
        emit_json(  # failed keeps that one document on stdout
            {
                "ok": False,
                "command": _command_path(),
                "exit_code": code,
                "error": message,
                "interrupted": interrupted,
                "report": getattr(exc, "report", None),
            }
        )
    raise typer.Exit(code) from None


def _command_path() -> str | None:
    """`automation replay`, from the running command's context (typer bundles its own click)."""
    from typer._click.globals import get_current_context  # typer 0.29 bundles its own click

    context = get_current_context(silent=True)
    return context.command_path if context else None


def emit_json(document: Any) -> None:
    """Print a machine-readable report on stdout (credentials redacted)."""
    text = json.dumps(_redacted(document), indent=2, sort_keys=True, default=str)
    sys.stdout.write(text + "\n")
    _emitted.append(True)


def print_database_steps(db: dict[str, Any]) -> None:
    """A database restore's steps with their times, then the previous database the swap kept:
    what `restore` and `restore --to-time` both print."""
    for step in db["steps"]:
        detail = f"  {step['detail']}" if step["detail"] else ""
        typer.echo(f"  {step['name']:<8} {step['seconds']:>8.2f}s{detail}")
    if db.get("pre_restore"):
        typer.echo(f"previous database kept as {db['pre_restore']} (drop: restore --cleanup)")


def _redacted(value: Any) -> Any:
    """Every string in a JSON-able document through `redact` (keys and values; structure kept)."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {_redacted(k): _redacted(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_redacted(v) for v in value]
    return value


def install_signal_handlers() -> None:
    """SIGTERM raises `Terminated` (a KeyboardInterrupt) in the main thread, once: every cleanup
    written for Ctrl-C runs. A second SIGTERM during that cleanup is ignored (SIGKILL is not)."""

    def on_sigterm(signum: int, frame: FrameType | None) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise Terminated()

    signal.signal(signal.SIGTERM, on_sigterm)


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
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn  # not for --help

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


def bar(description: str, total: float | None = None) -> AbstractContextManager[Any]:
    """`progress` as the `bar` callback restores take (`tasks.backups.BarFactory`)."""
    return progress(description, total)


def print_progress(line: str) -> None:
    """Stream one line of `pulumi up` (or our own progress) to stderr."""
    stderr.print(line, markup=False, highlight=False, style="dim", soft_wrap=True)
