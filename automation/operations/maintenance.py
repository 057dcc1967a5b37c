"""Maintenance mode: config `opsplane:maintenance` (a JSON list of app names) plus `up`.

The program declares what maintenance means (prod: the app's writers scaled to zero; dev: their
containers stopped); automation only edits the list and runs `up`. Leaving restores the configured
replicas. `maintenance(...)` is the context manager every stack operation wraps its task in: it
always leaves what it entered, and never ends a maintenance someone else started.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from automation.errors import OpsError, TaskFailed, UserInputError
from automation.stack.protocol import StackBusy, StackOps, app_ops
from contract.maintenance import MAINTENANCE_KEY, parse_maintenance
from contract.maintenance import to_config as maintenance_value

OnOutput = Callable[[str], None]


class StillInMaintenance(TaskFailed):
    """Leaving maintenance failed: the app's writers are still stopped."""


def off_command(stack: StackOps, app: str) -> str:
    """The exact command that takes `app` out of maintenance."""
    return f"python -m automation maintenance off --stack {stack.name} --app {app}"


def apps_in_maintenance(stack: StackOps) -> list[str]:
    """The apps the stack's config puts in maintenance (unset -> none)."""
    raw = stack.get_config(MAINTENANCE_KEY)
    if raw is None:
        return []
    try:
        return parse_maintenance(raw)
    except ValueError:
        raise UserInputError(
            f"config {MAINTENANCE_KEY} on stack {stack.name!r} is {raw!r}, not a JSON list of app "
            f"names: fix it with `pulumi config set --stack {stack.name} {MAINTENANCE_KEY} "
            """'["qr"]'` (or `pulumi config rm`)"""
        ) from None


def is_deployed_in_maintenance(stack: StackOps, app: str) -> bool:
    """What the last `up` deployed (`ops[app].maintenance`), as opposed to what config asks."""
    return bool(app_ops(stack, app).get("maintenance"))


def _write_apps(stack: StackOps, apps: list[str]) -> None:
    if apps:
        stack.set_config(MAINTENANCE_KEY, maintenance_value(apps))
    else:
        stack.remove_config(MAINTENANCE_KEY)


def enter(stack: StackOps, app: str, on_output: OnOutput) -> bool:
    """Put `app` in maintenance; True if this call did it, False if it already was (idempotent).

    If the `up` fails, the config change is undone (and `up` run again) so that a failed enter
    does not leave writers half stopped; the error says what state things are in.
    """
    deployed = is_deployed_in_maintenance(stack, app)
    apps = apps_in_maintenance(stack)
    if app in apps:
        if not deployed:
            _up(stack, on_output, f"finishing maintenance of {app!r}")
        return False
    _write_apps(stack, [*apps, app])
    try:
        _up(stack, on_output, f"entering maintenance of {app!r}")
    except OpsError as exc:
        _undo_enter(stack, app, on_output, exc)
    return True


def _undo_enter(stack: StackOps, app: str, on_output: OnOutput, cause: OpsError) -> None:
    try:
        if isinstance(cause, StackBusy):  # the update never started: only the config to revert
            _write_apps(stack, [a for a in apps_in_maintenance(stack) if a != app])
        else:
            leave(stack, app, on_output)
    except OpsError as undo_exc:
        raise StillInMaintenance(
            f"could not enter maintenance ({cause}) nor undo it ({undo_exc}); {app!r} may be "
            f"partly stopped on stack {stack.name!r}: run `{off_command(stack, app)}`"
        ) from undo_exc
    raise TaskFailed(
        f"could not enter maintenance, nothing was changed (writers kept running): {cause}"
    ) from cause


def leave(stack: StackOps, app: str, on_output: OnOutput) -> bool:
    """Take `app` out of maintenance; True if an `up` ran, False if it was not in maintenance.

    Raises `StillInMaintenance` (with the exact command to retry) if the `up` fails.
    """
    apps = apps_in_maintenance(stack)
    if app not in apps and not is_deployed_in_maintenance(stack, app):
        return False
    if app in apps:
        _write_apps(stack, [a for a in apps if a != app])
    try:
        _up(stack, on_output, f"leaving maintenance of {app!r}")
    except OpsError as exc:
        raise StillInMaintenance(
            f"could not leave maintenance: {exc}; {app!r} is still in maintenance on stack "
            f"{stack.name!r}: run `{off_command(stack, app)}`"
        ) from exc
    return True


@contextmanager
def maintenance(stack: StackOps, app: str, on_output: OnOutput) -> Iterator[bool]:
    """Enter maintenance, run the body, always leave (unless it was someone else's maintenance).

    Yields whether this call entered it. If leaving fails, `StillInMaintenance` is raised (naming
    the body's own failure too, if there was one).
    """
    entered = enter(stack, app, on_output)
    try:
        yield entered
    except BaseException as body_exc:
        if entered:
            _leave_or_explain(stack, app, on_output, body_exc)
        raise
    if entered:
        _leave_or_explain(stack, app, on_output, None)


def _leave_or_explain(
    stack: StackOps, app: str, on_output: OnOutput, body_exc: BaseException | None
) -> None:
    """`leave`, turning any failure into `StillInMaintenance` with the command to finish."""
    first = f" (the task itself failed first: {body_exc})" if body_exc is not None else ""
    try:
        leave(stack, app, on_output)
    except StillInMaintenance as exc:
        raise StillInMaintenance(f"{exc}{first}") from body_exc or exc
    except OpsError as exc:
        raise StillInMaintenance(
            f"could not leave maintenance: {exc}; {app!r} is still in maintenance on stack "
            f"{stack.name!r}: run `{off_command(stack, app)}`{first}"
        ) from body_exc or exc


def _up(stack: StackOps, on_output: OnOutput, what: str) -> None:
    on_output(f"{what} on stack {stack.name!r}: pulumi up")
    stack.up(on_output)
