"""What a stack operation needs from a Pulumi stack, behind one small interface.

`PulumiStack` implements it over `pulumi.automation` (the real thing); `tests` use `FakeStack`
(tests/fakes/fake_stack.py), which records calls. Commands only ever see `StackOps`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from automation.errors import TaskFailed


class StackBusy(TaskFailed):
    """Someone else's update holds the stack lock: this operation changed nothing on it."""


@dataclass
class UpResult:
    """What `up` reports: the summary Pulumi gives and the stack outputs after it."""

    result: str  # "succeeded" | "failed"
    resource_changes: dict[str, int] = field(default_factory=dict)
    outputs: dict[str, Any] = field(default_factory=dict)


class StackOps(Protocol):
    """The whole surface commands use. Keep it this small."""

    name: str

    def outputs(self) -> dict[str, Any]:
        """Stack outputs as plain values (secrets unwrapped, never printed)."""

    def get_config(self, key: str, *, path: bool = False) -> str | None:
        """A config value (`opsplane:rotation` etc.), or None when unset."""

    def set_config(self, key: str, value: str, *, secret: bool = False, path: bool = False) -> None:
        """Set one config value in the stack's config file."""

    def remove_config(self, key: str, *, path: bool = False) -> None:
        """Remove one config value; removing an unset key is not an error."""

    def up(self, on_output: Callable[[str], None]) -> UpResult:
        """Run `pulumi up`, streaming progress lines to `on_output`; raises on failure."""


def app_ops(stack: StackOps, app: str) -> dict[str, Any]:
    """The `ops` contract object of one app (see docs/ops-contract.md)."""
    from automation.errors import UserInputError

    ops: dict[str, dict[str, Any]] = stack.outputs().get("ops") or {}
    if app not in ops:
        known = ", ".join(sorted(ops)) or "none"
        raise UserInputError(
            f"--app {app!r}: stack {stack.name!r} has no such app (apps on it: {known})"
        )
    return ops[app]


def database_url(ops: dict[str, Any]) -> str:
    """A libpq conninfo for `ops.database` (the host may be a unix socket directory): the one
    reading of it that restore, replay, status, deploy and PITR share. An empty password is left
    out, so libpq may still take one from PGPASSFILE; a missing field is bad stack output."""
    from psycopg.conninfo import make_conninfo

    from automation.errors import UserInputError

    db = ops.get("database") or {}
    try:
        return make_conninfo(
            host=str(db["host"]),
            port=str(db["port"]),
            dbname=str(db["name"]),
            user=str(db["user"]),
            password=str(db.get("password") or "") or None,
        )
    except KeyError as exc:
        raise UserInputError(f"the app's ops output has no database.{exc.args[0]}") from None
