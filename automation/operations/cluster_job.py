"""Run a task inside the cluster as a Job the stack declares (`--where cluster`).

Contract with the program (docs/automation.md, "The cluster Job"):
1. automation sets config `opsplane:clusterJob` to `{"app", "task", "args", "id"}`, plus
   `"mountRedis": true` for a restore that writes Redis' data;
2. `up`: the program declares a Kubernetes Job running `python -m automation.jobrun --report-to
   s3://B/K -- <task> <args...>` in the ops-runner image; pulumi-kubernetes waits for the Job to
   complete (a failed Job fails the `up`). With `mountRedis` the program first scales the app's
   Redis to 0, mounts its data volume in the Job and appends `--redis-data-dir <mount path>`;
3. the program exports `clusterJob` = `{"id", "status", "report", "error"}` where `report` is either
   the task's report itself or a pointer `{"bucket", "key"}` to the JSON document `jobrun` uploaded
   (`{"exitCode", "status", "report", "error"}`); automation checks the id and reads the pointer;
4. automation removes the config and runs `up` again, which deletes the Job (always).
When the `up` itself fails, the document is looked for at the conventional key
`<ops.backup.prefix>/<app>/reports/<id>.json` in `ops.backup.bucket`, to report the task's own
error.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from automation.errors import OpsError, TaskFailed, UserInputError
from automation.stack.protocol import StackOps, app_ops

CLUSTER_JOB_KEY = "opsplane:clusterJob"
CLUSTER_JOB_OUTPUT = "clusterJob"
TASKS = ("restore", "replay", "verify-backup", "backup", "status")
OnOutput = Callable[[str], None]
ReportReader = Callable[[str, str], bytes]  # (bucket, key) -> the object's bytes


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


def read_s3_report(bucket: str, key: str) -> bytes:
    """The report `automation.jobrun` uploaded, through the standard AWS environment."""
    from automation.tasks.io.s3io import get_bytes, s3_client

    return get_bytes(s3_client(), bucket, key)


def conventional_report_location(ops: dict[str, Any], app: str, request_id: str) -> tuple[str, str]:
    backup = ops.get("backup") or {}
    prefix = str(backup.get("prefix") or "").strip("/")
    key = (
        f"{prefix}/{app}/reports/{request_id}.json"
        if prefix
        else f"{app}/reports/{request_id}.json"
    )
    return str(backup.get("bucket") or ""), key


def run_in_cluster(
    stack: StackOps,
    app: str,
    task: str,
    args: Sequence[str],
    on_output: OnOutput,
    *,
    mount_redis: bool = False,
    read_report: ReportReader = read_s3_report,
) -> dict[str, Any]:
    """Run `task` for `app` as a cluster Job and return its report; the Job is always removed.

    `mount_redis` (restore only): Redis is stopped while the Job runs and the Job gets its data
    directory as `--redis-data-dir`; removing the Job starts Redis again.

    Raises `TaskFailed` with the task's own error when it fails, and `ClusterJobCleanupFailed`
    (with the commands to finish the cleanup) when the Job could not be removed.
    """
    if task not in TASKS:
        raise UserInputError(f"cluster task {task!r}: not one of {', '.join(TASKS)}")
    if mount_redis and task != "restore":
        raise UserInputError(f"cluster task {task!r}: only restore may mount Redis' data volume")
    ops = app_ops(stack, app)  # unknown app -> one-line error before anything changes
    _refuse_if_busy(stack)
    request: dict[str, Any] = {"app": app, "task": task, "args": list(args), "id": job_id(task)}
    if mount_redis:
        request["mountRedis"] = True
    stack.set_config(CLUSTER_JOB_KEY, json.dumps(request))
    try:
        result = _run_job(stack, ops, request, on_output, read_report)
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


def _run_job(
    stack: StackOps,
    ops: dict[str, Any],
    request: dict[str, Any],
    on_output: OnOutput,
    read_report: ReportReader,
) -> dict[str, Any]:
    on_output(f"running {request['task']} for {request['app']} as cluster Job {request['id']}")
    try:
        outputs = stack.up(on_output).outputs or stack.outputs()
    except OpsError as exc:
        reason = _task_error_if_reported(ops, request, read_report) or str(exc)
        raise TaskFailed(
            f"cluster Job {request['id']} ({request['task']}) failed: {reason}"
        ) from exc
    result = outputs.get(CLUSTER_JOB_OUTPUT)
    if not isinstance(result, dict) or result.get("id") != request["id"]:
        raise TaskFailed(
            f"stack {stack.name!r} did not report cluster Job {request['id']} in its "
            f"`{CLUSTER_JOB_OUTPUT}` output (got {result!r}); the program must export it"
        )
    return _resolved(result, read_report)


def _is_pointer(report: Any) -> bool:
    return isinstance(report, dict) and set(report) == {"bucket", "key"}


def _fetch(bucket: str, key: str, read_report: ReportReader) -> dict[str, Any]:
    try:
        document = json.loads(read_report(bucket, key))
    except OpsError as exc:
        raise TaskFailed(
            f"cannot read the cluster Job's report s3://{bucket}/{key}: {exc}"
        ) from exc
    except ValueError as exc:
        raise TaskFailed(f"the cluster Job's report s3://{bucket}/{key} is not JSON") from exc
    if not isinstance(document, dict):
        raise TaskFailed(f"the cluster Job's report s3://{bucket}/{key} is not a JSON object")
    return document


def _resolved(result: dict[str, Any], read_report: ReportReader) -> dict[str, Any]:
    """The output with a report pointer replaced by the document `jobrun` uploaded."""
    if not _is_pointer(result.get("report")):
        return result
    pointer = result["report"]
    document = _fetch(pointer["bucket"], pointer["key"], read_report)
    return {
        "id": result["id"],
        "status": document.get("status", result.get("status")),
        "report": document.get("report") or {},
        "error": document.get("error") or result.get("error"),
    }


def _task_error_if_reported(
    ops: dict[str, Any], request: dict[str, Any], read_report: ReportReader
) -> str | None:
    """Best effort after a failed `up`: the task's own last error line, if it left a report."""
    bucket, key = conventional_report_location(ops, request["app"], request["id"])
    if not bucket:
        return None
    try:
        document = _fetch(bucket, key, read_report)
    except OpsError:
        return None
    return document.get("error")


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


def _checked(result: dict[str, Any], request: dict[str, Any]) -> dict[str, Any]:
    if result.get("status") != "succeeded":
        reason = result.get("error") or (result.get("report") or {}).get("error") or "no reason"
        raise TaskFailed(f"cluster Job {request['id']} ({request['task']}) failed: {reason}")
    return dict(result.get("report") or {})
