"""`python -m automation demo`: the on-call loop on embedded services (what `make demo` runs)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from automation.console import handle_errors
from automation.errors import UserInputError


@handle_errors
def demo(
    rows: Annotated[
        int, typer.Option("--rows", help="Accounts to seed (2x QR codes, 3x scan events).")
    ] = 100_000,
    out: Annotated[
        Path, typer.Option("--out", help="Where the prod render goes (kept afterwards).")
    ] = Path("out/prod"),
) -> None:
    """Play the on-call loop on embedded services: backup, status, disaster, restore, replay.

    Starts PostgreSQL, S3, Redis and an app stand-in on loopback, then runs the real commands
    (backup, verify, status, restore, replay, render); each step is checked, and everything
    started is stopped and removed. Needs `make setup` (dev dependencies)."""
    if rows < 1:
        raise UserInputError(f"--rows {rows}: must be at least 1")
    from automation.demo.play import Options, run_demo
    from automation.demo.play import out as say

    seconds = run_demo(Options(rows=rows, out=out))
    say(f"demo done in {seconds:.0f}s: every step did what it says")


EXAMPLES = """Examples:

  python -m automation demo
  python -m automation demo --rows 20000"""


def register(app: typer.Typer) -> None:
    app.command("demo", epilog=EXAMPLES)(demo)
