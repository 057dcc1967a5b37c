"""Helpers the commands share (the pypa/pipx pattern: `commands/common.py`); it registers no
command, and a command module imports no other command module, only this one.

- `print_report`: a status report as one line per check and a summary line (`status`, `deploy`);
- `finish_operation`: an operation (restore, rotate, maintenance off, restore --to-time) ends by
  checking the app and folding the report into its own (issue 13, docs/status.md);
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from automation.console import emit_json, print_progress

COLOURS = {"pass": "green", "warn": "yellow", "fail": "red"}


def print_report(report: Any) -> None:
    """One line per check, then a summary line."""
    from rich.console import Console
    from rich.markup import escape

    console = Console(highlight=False, soft_wrap=True)
    width = max((len(c.name) for c in report.checks), default=8)
    for check in report.checks:
        colour = COLOURS[check.status]
        line = f"[bold {colour}]{check.status.upper():4}[/]  {escape(check.name):{width}}  "
        line += escape(check.detail)
        if check.next and check.status != "pass":
            line += f"  [dim]→ next: {escape(check.next)}[/]"
        console.print(line)
    counts = report.counts()
    where = f" on {report.stack}" if report.stack else ""
    console.print(
        f"{report.app}{where}: {counts['pass']} pass, {counts['warn']} warn, "
        f"{counts['fail']} fail ({report.seconds or 0:.1f} s)"
    )


def finish_operation(
    stack: Any,
    app: str,
    operation: str,
    document: dict[str, Any],
    *,
    as_json: bool,
    print_text: Callable[[], None],
    where: str | None = None,
    verify: bool = True,
) -> None:
    """End an operation (restore, rotate, maintenance off) by checking the app: the report joins
    the operation's own (`status` in JSON, lines in text); a FAIL exits 1 with the next step."""
    from automation.errors import TaskFailed
    from automation.operations import status as st

    if not verify:
        emit_json(document) if as_json else print_text()
        return
    report = st.verify_operation(stack, app, where=where, on_output=print_progress)
    if as_json:
        emit_json({**document, "status": report.to_json()})
    else:
        print_text()
        print_report(report)
    if report.failed:
        raise TaskFailed(st.failure_message(report, operation, stack))
