"""`StackOps` over `pulumi.automation`: the real stack behind every stack operation.

The program is this project's own (`Pulumi.yaml` + `__main__.py` in the repository root), so the
adapter selects the stack with a `LocalWorkspace` on that directory: `pulumi up` by hand and
`python -m automation ...` run exactly the same program.

Every failure of the Pulumi CLI becomes one line (`UserInputError` or `TaskFailed`):
- no `pulumi` on PATH (the SDK runs `pulumi version` first and gets `FileNotFoundError`) -> exit 2;
- `StackNotFoundError` -> exit 2, naming the stack and how to create or list stacks;
- `ConcurrentUpdateError` -> exit 1, someone else is updating the stack;
- any other `CommandError` -> exit 1 with the last meaningful line Pulumi printed.

Commands open stacks through `open_stack` in this module (`pulumi_stack.open_stack(...)`), so tests
can replace it with one returning a `FakeStack`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pulumi.automation as auto
from pulumi.automation import errors as auto_errors

from automation.errors import OpsError, TaskFailed, UserInputError
from automation.stack.protocol import StackBusy, StackOps, UpResult

REPO_ROOT = Path(__file__).resolve().parents[2]


_CONFIG_NOT_FOUND = ("not found", "configuration key")


def last_meaningful_line(text: str) -> str:
    """The line of Pulumi's output that explains a failure: the last `error:` line, or last line."""
    stream_prefixes = ("stdout:", "stderr:")
    stripped = (_strip_prefix(line.strip(), stream_prefixes) for line in text.splitlines())
    cleaned = [line for line in stripped if line and not re.fullmatch(r"code: -?\d+", line)]
    errors = [line for line in cleaned if line.lower().startswith("error:")]
    chosen = (errors or cleaned or ["no output from pulumi"])[-1]
    return _strip_prefix(chosen, ("error: ", "Error: "))


def _strip_prefix(line: str, prefixes: tuple[str, ...]) -> str:
    for prefix in prefixes:
        if line.startswith(prefix):
            return line[len(prefix) :].strip()
    return line


def translate_error(exc: BaseException, stack_name: str, action: str) -> OpsError:
    """One clear line for each way the Pulumi CLI can fail under an operation."""
    if isinstance(exc, OpsError):
        return exc
    if isinstance(exc, FileNotFoundError) and _is_missing_cli(exc):
        return UserInputError(
            "the Pulumi CLI is not installed or not on PATH: install `pulumi` and rerun"
        )
    if isinstance(exc, auto_errors.InvalidVersionError):
        return UserInputError(f"the Pulumi CLI is too old for this SDK: {exc}; upgrade `pulumi`")
    if isinstance(exc, auto_errors.StackNotFoundError):
        return UserInputError(
            f"--stack {stack_name!r}: no such stack for this project; create it with "
            f"`pulumi stack init {stack_name}` or pick one from `pulumi stack ls`"
        )
    if isinstance(exc, auto_errors.ConcurrentUpdateError):
        return StackBusy(
            f"stack {stack_name!r} is being updated by someone else; wait for it to finish, "
            f"or run `pulumi cancel --stack {stack_name}` if that update is dead"
        )
    if isinstance(exc, auto_errors.CommandError):
        return TaskFailed(
            f"`pulumi {action}` on stack {stack_name!r} failed: {last_meaningful_line(str(exc))}"
        )
    return TaskFailed(f"`pulumi {action}` on stack {stack_name!r} failed: {exc}")


def _is_missing_cli(exc: FileNotFoundError) -> bool:
    return Path(str(exc.filename or "")).name == "pulumi"


@contextmanager
def _pulumi_errors(stack_name: str, action: str) -> Iterator[None]:
    try:
        yield
    except (auto_errors.CommandError, auto_errors.InvalidVersionError, FileNotFoundError) as exc:
        raise translate_error(exc, stack_name, action) from exc


def _is_config_not_found(exc: auto_errors.CommandError) -> bool:
    text = str(exc).lower()
    return all(marker in text for marker in _CONFIG_NOT_FOUND)


class PulumiStack:
    """A selected `pulumi.automation.Stack`, seen through the `StackOps` interface."""

    def __init__(self, stack: auto.Stack) -> None:
        self._stack = stack
        self.name: str = stack.name

    def outputs(self) -> dict[str, Any]:
        with _pulumi_errors(self.name, "stack output"):
            return {key: output.value for key, output in self._stack.outputs().items()}

    def get_config(self, key: str, *, path: bool = False) -> str | None:
        try:
            return self._stack.get_config(key, path=path).value
        except auto_errors.CommandError as exc:
            if _is_config_not_found(exc):
                return None
            raise translate_error(exc, self.name, "config get") from exc

    def set_config(self, key: str, value: str, *, secret: bool = False, path: bool = False) -> None:
        with _pulumi_errors(self.name, "config set"):
            self._stack.set_config(key, auto.ConfigValue(value=value, secret=secret), path=path)

    def remove_config(self, key: str, *, path: bool = False) -> None:
        if self.get_config(key, path=path) is None:
            return
        with _pulumi_errors(self.name, "config rm"):
            self._stack.remove_config(key, path=path)

    def current_update(self) -> str | None:
        """The update holding the stack lock right now (for `status`), or None; best effort."""
        try:
            return _describe_update(self._stack.info())
        except (auto_errors.CommandError, FileNotFoundError):
            return None

    def up(self, on_output: Callable[[str], None]) -> UpResult:
        with _pulumi_errors(self.name, "up"):
            result = self._stack.up(on_output=lambda line: on_output(line.rstrip("\n")))
        summary = result.summary
        return UpResult(
            result=summary.result,
            resource_changes=dict(summary.resource_changes or {}),
            outputs={key: output.value for key, output in result.outputs.items()},
        )


def _describe_update(info: Any) -> str | None:
    """`pulumi stack history`'s newest entry, when it is an update still running."""
    if info is None or getattr(info, "result", None) != "in-progress":
        return None
    started = getattr(info, "start_time", None)
    when = f" started {started:%Y-%m-%d %H:%M:%S} UTC" if started else ""
    environment = getattr(info, "environment", None) or {}
    who = environment.get("git.author") or environment.get("exec.kind") or "unknown"
    return f"{info.kind}{when} by {who}"


def open_stack(stack_name: str, work_dir: Path | str = REPO_ROOT) -> StackOps:
    """Select an existing stack of this project; every failure is one line (see module doc)."""
    if not stack_name.strip():
        raise UserInputError("--stack is empty: name a stack, e.g. --stack dev")
    with _pulumi_errors(stack_name, "stack select"):
        stack = auto.select_stack(stack_name=stack_name, work_dir=str(work_dir))
    return PulumiStack(stack)
