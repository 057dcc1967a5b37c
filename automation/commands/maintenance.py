"""`python -m automation maintenance on|off|status --stack S --app A`.

`on` stops the app's writers (prod: scaled to zero; dev: containers stopped) through config
`opsplane:maintenance` and `pulumi up`; `off` restores the configured replicas; `status` compares
what the config asks with what the last `up` deployed.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from automation.console import confirm, emit_json, handle_errors, print_progress, stderr
from automation.operations import maintenance as mm
from automation.stack import open_stack
from automation.stack.protocol import StackOps, app_ops

StackOpt = Annotated[str, typer.Option("--stack", help="Pulumi stack, e.g. dev or prod.")]
AppOpt = Annotated[str, typer.Option("--app", help="App name from the stack's ops output.")]
YesOpt = Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print a JSON report on stdout.")]
DryRunOpt = Annotated[
    bool, typer.Option("--dry-run", help="Show what would change; change nothing.")
]
VerifyOpt = Annotated[
    bool,
    typer.Option(
        "--verify/--no-verify", help="End by running the app's status checks (FAIL: exit 1)."
    ),
]

maintenance_app = typer.Typer(
    help="Maintenance mode: stop an app's writers (on), restore them (off), or show status.",
    no_args_is_help=True,
)


def status_of(stack: StackOps, app: str) -> dict[str, Any]:
    """Configured vs deployed maintenance state and the writers it affects."""
    ops = app_ops(stack, app)
    return {
        "stack": stack.name,
        "app": app,
        "configured": app in mm.apps_in_maintenance(stack),
        "deployed": bool(ops.get("maintenance")),
        "writers": list(ops.get("writers") or []),
        "replicas": dict(ops.get("replicas") or {}),
    }


def _report(document: dict[str, Any], as_json: bool, sentence: str) -> None:
    if as_json:
        emit_json(document)
    else:
        stderr.print(sentence, highlight=False, soft_wrap=True)


@handle_errors
def maintenance_on(
    stack: StackOpt,
    app: AppOpt,
    yes: YesOpt = False,
    json: JsonOpt = False,
    dry_run: DryRunOpt = False,
) -> None:
    """Put APP in maintenance: its writers stop (prod: scaled to zero) until `maintenance off`."""
    target = open_stack(stack)
    before = status_of(target, app)
    writers = ", ".join(before["writers"]) or "none"
    if dry_run or (before["configured"] and before["deployed"]):
        already = before["configured"] and before["deployed"]
        _report(
            {**before, "changed": False, "dryRun": dry_run},
            json,
            f"{app} is already in maintenance on {stack}"
            if already
            else f"would stop {writers} of {app} on {stack} (dry run: nothing changed)",
        )
        return
    confirm(f"Stop {writers} of {app} on stack {stack} (maintenance on)?", yes=yes)
    mm.enter(target, app, print_progress)
    after = status_of(target, app)
    _report(
        {**after, "changed": True, "dryRun": False},
        json,
        f"{app} is in maintenance on {stack} ({writers} stopped); "
        f"leave with `{mm.off_command(target, app)}`",
    )


@handle_errors
def maintenance_off(
    stack: StackOpt,
    app: AppOpt,
    json: JsonOpt = False,
    dry_run: DryRunOpt = False,
    verify: VerifyOpt = True,
) -> None:
    """Take APP out of maintenance: its writers return to their configured replicas."""
    target = open_stack(stack)
    before = status_of(target, app)
    in_maintenance = before["configured"] or before["deployed"]
    if dry_run or not in_maintenance:
        _report(
            {**before, "changed": False, "dryRun": dry_run},
            json,
            f"would restart {', '.join(before['writers']) or 'none'} of {app} on {stack} "
            "(dry run: nothing changed)"
            if in_maintenance
            else f"{app} is not in maintenance on {stack}",
        )
        return
    mm.leave(target, app, print_progress)
    after = {**status_of(target, app), "changed": True, "dryRun": False}
    from automation.commands.common import finish_operation  # the app checks itself (issue 13)

    finish_operation(
        target,
        app,
        "maintenance off",
        after,
        as_json=json,
        print_text=lambda: _report(after, False, f"{app} is out of maintenance"),
        verify=verify,
    )


@handle_errors
def maintenance_status(stack: StackOpt, app: AppOpt, json: JsonOpt = False) -> None:
    """Show whether APP is in maintenance (configured and deployed) and which writers it stops."""
    status = status_of(open_stack(stack), app)
    if json:
        emit_json(status)
        return
    replicas = ", ".join(f"{k}={v}" for k, v in status["replicas"].items()) or "none"
    state = "in maintenance" if status["deployed"] else "serving"
    pending = "" if status["configured"] == status["deployed"] else " (config differs: run `up`)"
    typer.echo(f"{app} on {stack}: {state}{pending}; writers (configured replicas): {replicas}")


EXAMPLES = """Examples:

  python -m automation maintenance on --stack prod --app qr
  python -m automation maintenance status --stack prod --app qr
  python -m automation maintenance off --stack prod --app qr"""


def register(app: typer.Typer) -> None:
    maintenance_app.command("on", epilog=EXAMPLES)(maintenance_on)
    maintenance_app.command("off", epilog=EXAMPLES)(maintenance_off)
    maintenance_app.command("status", epilog=EXAMPLES)(maintenance_status)
    app.add_typer(maintenance_app, name="maintenance")
