"""Run a task inside the cluster as a Job the stack declares (`--where cluster`).

Contract with the program (docs/automation.md, "The cluster Job"):
1. automation sets config `opsplane:clusterJob` to `{"app", "task", "args", "id"}`;
2. `up`: the program declares a Kubernetes Job running `python -m automation <task> <args...>` in
   the ops-runner image; pulumi-kubernetes waits for the Job to complete (a failed Job fails
   the `up`);
3. the program exports `clusterJob` = `{"id", "status": "succeeded"|"failed", "report": {...},
   "error": str|null}`; automation checks the id is the one it asked for;
4. automation removes the config and runs `up` again, which deletes the Job (always, in `finally`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from automation.errors import OpsError, TaskFailed, UserInputError
from automation.stack import StackOps, app_ops

CLUSTER_JOB_KEY = "opsplane:clusterJob"
CLUSTER_JOB_OUTPUT = "clusterJob"
TASKS = ("restore", "replay", "verify-backup", "backup")
OnOutput = Callable[[str], None]


class ClusterJobCleanupFailed(TaskFailed):
    """The Job ran, but removing it (config + `up`) failed; `result` holds what the Job reported."""

    def __init__(self, message: str, result: dict[str, Any] | None) -> None:
        super().__init__(message)
        self.result = result


def job_id(task: str, now: datetime | None = None) -> str:
    """A Kubernetes-name-safe id, unique per second: `restore-20261122-075800`."""
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%d-%H%M%S")
    return f"{task}-{stamp}"


def cleanup_commands(stack: StackOps) -> str:
    return (
        f"pulumi config rm {CLUSTER_JOB_KEY} --stack {stack.name} && pulumi up --stack {stack.name}"
    )


def run_in_cluster(
    stack: StackOps, app: str, task: str, args: Sequence[str], on_output: OnOutput
) -> dict[str, Any]:
    """Run `task` for `app` as a cluster Job and return its report; the Job is always removed.

    Raises `TaskFailed` with the Job's own error when it fails, and `ClusterJobCleanupFailed` (with
    the commands to finish the cleanup) when the Job could not be removed.
    """
    if task not in TASKS:
        raise UserInputError(f"cluster task {task!r}: not one of {', '.join(TASKS)}")
    app_ops(stack, app)  # unknown app -> one-line error before anything changes
    _refuse_if_busy(stack)
    request = {"app": app, "task": task, "args": list(args), "id": job_id(task)}
    stack.set_config(CLUSTER_JOB_KEY, json.dumps(request))
    try:
        result = _run_job(stack, request, on_output)
    except BaseException as job_exc:
        _remove_job(stack, request, None, on_output, cause=job_exc)
        raise
    _remove_job(stack, request, result, on_output)
    return _checked(result, request)


def _refuse_if_busy(stack: StackOps) -> None:
    pending = stack.get_config(CLUSTER_JOB_KEY)
    if pending:
        raise UserInputError(
            f"stack {stack.name!r} already has a cluster job requested ({pending}); if no one is "
            f"running it, clear it with `{cleanup_commands(stack)}`"
        )


def _run_job(stack: StackOps, request: dict[str, Any], on_output: OnOutput) -> dict[str, Any]:
    on_output(f"running {request['task']} for {request['app']} as cluster Job {request['id']}")
    try:
        outputs = stack.up(on_output).outputs or stack.outputs()
    except OpsError as exc:
        raise TaskFailed(f"cluster Job {request['id']} ({request['task']}) failed: {exc}") from exc
    result = outputs.get(CLUSTER_JOB_OUTPUT)
    if not isinstance(result, dict) or result.get("id") != request["id"]:
        raise TaskFailed(
            f"stack {stack.name!r} did not report cluster Job {request['id']} in its "
            f"`{CLUSTER_JOB_OUTPUT}` output (got {result!r}); the program must export it"
        )
    return result


def _remove_job(
    stack: StackOps,
    request: dict[str, Any],
    result: dict[str, Any] | None,
    on_output: OnOutput,
    cause: BaseException | None = None,
) -> None:
    on_output(f"removing cluster Job {request['id']}")
    try:
        stack.remove_config(CLUSTER_JOB_KEY)
        stack.up(on_output)
    except OpsError as exc:
        outcome = f"failed ({cause})" if cause else f"finished ({(result or {}).get('status')})"
        raise ClusterJobCleanupFailed(
            f"cluster Job {request['id']} {outcome}, and removing it failed: {exc}; "
            f"finish with `{cleanup_commands(stack)}`",
            result,
        ) from exc


def _checked(result: dict[str, Any] | None, request: dict[str, Any]) -> dict[str, Any]:
    assert result is not None  # _run_job either returned a result or raised
    if result.get("status") != "succeeded":
        reason = result.get("error") or (result.get("report") or {}).get("error") or "no reason"
        raise TaskFailed(f"cluster Job {request['id']} ({request['task']}) failed: {reason}")
    return dict(result.get("report") or {})
