"""`python -m automation render`: what a stack declares, offline (no cloud account, no CLI)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from automation.console import emit_json, handle_errors, stderr
from automation.lazy import lazy_function

if TYPE_CHECKING:
    from automation.stack.render import run_program, write_render
else:  # the render loads Pulumi's mock runtime and the program: only when it runs
    run_program = lazy_function("automation.stack.render", "run_program")
    write_render = lazy_function("automation.stack.render", "write_render")


@handle_errors
def render(
    stack: Annotated[str, typer.Option("--stack", help="Stack to render: dev or prod.")],
    out: Annotated[Path, typer.Option("--out", help="Directory to write the render into.")],
    placeholder_secrets: Annotated[
        bool,
        typer.Option(
            "--placeholder-secrets",
            help="Stand in marked placeholders for outside secrets the config lacks.",
        ),
    ] = False,
    json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Run the program under Pulumi's mock runtime; write Kubernetes YAML, Docker/AWS JSON and a
    summary. Secret values are always redacted."""
    rendered = run_program(stack, placeholder_secrets=placeholder_secrets)
    summary = write_render(rendered, out)
    if json:
        emit_json(summary)
        return
    stderr.print(
        f"{stack}: {summary['resources']} resources, {summary['kubernetes_objects']} Kubernetes "
        f"objects → {out}",
        highlight=False,
    )
    if summary["placeholder_secrets"]:
        stderr.print("placeholders for: " + ", ".join(summary["placeholder_secrets"]))


EXAMPLES = """Examples:

  python -m automation render --stack prod --out render/prod
  python -m automation render --stack dev --out render/dev --placeholder-secrets"""


def register(app: typer.Typer) -> None:
    app.command("render", epilog=EXAMPLES)(render)
