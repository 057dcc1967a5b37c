"""`python -m automation rotate --stack S --app A --secret NAME [--yes] [--json]`.

Bumps the secret's rotation epoch and runs `up` (the database password goes to PostgreSQL first);
`--list` shows every secret; `--resume` finishes a rotation that stopped midway.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

from automation.console import confirm, emit_json, handle_errors, print_progress, stderr
from automation.errors import TaskFailed, UserInputError
from automation.stack import open_stack
from automation.stack.protocol import StackOps

if TYPE_CHECKING:  # the module itself is imported when a rotation runs (it loads psycopg)
    from automation.operations import rotation


def _show_list(stack: StackOps, app: str, as_json: bool) -> None:
    from automation.operations import rotation

    infos = rotation.list_secrets(stack, app)
    if as_json:
        emit_json({"stack": stack.name, "app": app, "secrets": [i.as_dict() for i in infos]})
        return
    table = Table(title=f"secrets of {app} on {stack.name}")
    for column in ("secret", "kind", "epoch", "last rotated", "workloads"):
        table.add_column(column)
    for info in infos:
        epoch = "-" if info.epoch is None else str(info.epoch)
        epoch += " (pending)" if info.pending else ""
        rotated = info.rotated_at or ("never" if info.kind == "generated" else "outside opsplane")
        table.add_row(info.name, info.kind, epoch, rotated, ", ".join(info.workloads))
    Console().print(table)


def _finish(report: rotation.RotationReport, as_json: bool) -> None:
    if as_json:
        emit_json(report.as_dict())
        return
    plan = report.plan
    if report.status == "nothing to resume":
        stderr.print(
            f"{plan.app}/{plan.secret} on {plan.stack}: nothing to resume "
            f"(epoch {plan.to_epoch} is rolled out)",
            highlight=False,
            soft_wrap=True,
        )
        return
    total = sum(step["seconds"] for step in report.steps)
    stderr.print(
        f"rotated {plan.app}/{plan.secret} on {plan.stack} to epoch {plan.to_epoch} "
        f"({total:.1f}s); rolled {', '.join(plan.workloads) or 'nothing'}",
        highlight=False,
        soft_wrap=True,
    )


@handle_errors
def rotate(
    stack: Annotated[str, typer.Option("--stack", help="Pulumi stack, e.g. dev or prod.")],
    app: Annotated[str, typer.Option("--app", help="App name from the stack's ops output.")],
    secret: Annotated[
        str | None, typer.Option("--secret", help="Secret to rotate, e.g. db-password.")
    ] = None,
    list_: Annotated[
        bool, typer.Option("--list", help="Show every secret: kind, epoch, last rotation, users.")
    ] = False,
    resume: Annotated[
        bool, typer.Option("--resume", help="Finish a rotation that stopped midway.")
    ] = False,
    database_url: Annotated[
        str | None,
        typer.Option(
            "--database-url",
            help="Where ALTER ROLE runs (e.g. a port-forward); default: the stack's database.",
        ),
    ] = None,
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation.")] = False,
    json: Annotated[bool, typer.Option("--json", help="Print a JSON report on stdout.")] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show what would change; change nothing.")
    ] = False,
    verify: Annotated[
        bool,
        typer.Option(
            "--verify/--no-verify", help="End by running the app's status checks (FAIL: exit 1)."
        ),
    ] = True,
) -> None:
    """Rotate one secret of APP: new value, database first (db-password), then the pods roll."""
    from automation.operations import rotation

    if database_url is not None:
        from automation.tasks.io import pgtools

        pgtools.parse_url(database_url)  # a malformed URL is exit 2 before the stack is opened
    target = open_stack(stack)
    if list_:
        _show_list(target, app, json)
        return
    if not secret:
        raise UserInputError("--secret is required (or --list to see the app's secrets)")
    if resume:
        _verified(
            target, rotation.resume(target, app, secret, print_progress, database_url), json, verify
        )
        return
    plan = rotation.plan_rotation(target, app, secret)
    if dry_run:
        if json:
            emit_json({**plan.as_dict(), "status": "dry run"})
        else:
            stderr.print(
                f"would {plan.describe()} (dry run: nothing changed)",
                highlight=False,
                soft_wrap=True,
            )
        return
    stderr.print(plan.describe(), highlight=False, soft_wrap=True)
    confirm(f"Rotate {app}/{secret} on {stack}?", yes=yes)
    try:
        report = rotation.rotate(target, plan, print_progress, database_url)
    except KeyboardInterrupt:
        raise TaskFailed(
            f"interrupted: the rotation may be half done; see `python -m automation rotate "
            f"--stack {stack} --app {app} --list` and finish it with "
            f"`{rotation.resume_command(target, app, secret)}`"
        ) from None
    _verified(target, report, json, verify)


def _verified(
    stack: StackOps, report: rotation.RotationReport, as_json: bool, verify: bool
) -> None:
    """The rotation's report, then the app's status checks (issue 13: a FAIL exits 1)."""
    from automation.commands.common import finish_operation

    if report.status == "nothing to resume":
        verify = False
    finish_operation(
        stack,
        report.plan.app,
        "rotate",
        report.as_dict(),
        as_json=as_json,
        print_text=lambda: _finish(report, False),
        verify=verify,
    )


EXAMPLES = """Examples:

  python -m automation rotate --stack prod --app qr --list
  python -m automation rotate --stack prod --app qr --secret db-password"""


def register(app: typer.Typer) -> None:
    app.command("rotate", epilog=EXAMPLES)(rotate)
