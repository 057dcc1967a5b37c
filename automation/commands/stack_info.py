"""`python -m automation ops --stack S --app A [--json]`: the app's `ops` contract, redacted.

What every stack operation reads (docs/ops-contract.md), shown the way an operator can paste into
a ticket: secret values are replaced by `[secret]`, whatever their nesting.
"""

from __future__ import annotations

import json as jsonlib
from typing import Annotated, Any

import typer

from automation.console import emit_json, handle_errors
from automation.stack import open_stack
from automation.stack.protocol import app_ops

REDACTED = "[secret]"
SECRET_FIELDS = frozenset({"password", "pendingPassword", "secret", "token", "secretKey"})


def is_secret_field(name: str) -> bool:
    """Fields the contract marks secret (`database.password`, `webhook.secret`, ...)."""
    return name in SECRET_FIELDS or name.endswith(("Password", "Token"))


def redact(value: Any) -> Any:
    """A copy of `value` with every secret field's value replaced by `[secret]`."""
    if isinstance(value, dict):
        return {
            key: REDACTED if is_secret_field(key) and item is not None else redact(item)
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [redact(item) for item in value]
    return value


@handle_errors
def show_ops(
    stack: Annotated[str, typer.Option("--stack", help="Pulumi stack, e.g. dev or prod.")],
    app: Annotated[str, typer.Option("--app", help="App name from the stack's ops output.")],
    json: Annotated[bool, typer.Option("--json", help="Print JSON on stdout.")] = False,
) -> None:
    """Show APP's ops contract on STACK (database, cache, backup, webhook, secrets), redacted."""
    ops = redact(app_ops(open_stack(stack), app))
    if json:
        emit_json(ops)
    else:
        typer.echo(jsonlib.dumps(ops, indent=2, sort_keys=True))


EXAMPLES = """Examples:

  python -m automation ops --stack dev --app qr --json"""


def register(app: typer.Typer) -> None:
    app.command("ops", epilog=EXAMPLES)(show_ops)
