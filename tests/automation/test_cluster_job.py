"""The cluster Job protocol: config -> up -> read `clusterJob` -> remove config -> up (always)."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Any

import pytest

from automation.errors import TaskFailed, UserInputError
from automation.operations.cluster_job import (
    CLUSTER_JOB_KEY,
    ClusterJobCleanupFailed,
    job_id,
    run_in_cluster,
)
from tests.fakes.fake_stack import FakeStack, ProgramModel, sample_ops
from tests.services import S3

ID_PATTERN = r"^[a-z0-9]([-a-z0-9]{0,30}[a-z0-9])?$"  # the program's ClusterJobRequest.id


def job_stack(runner: Any, **kwargs: Any) -> tuple[FakeStack, list[dict[str, Any]]]:
    seen: list[dict[str, Any]] = []

    def record(request: dict[str, Any]) -> dict[str, Any]:
        seen.append(request)
        return runner(request)

    stack = FakeStack(
        name="prod",
        outputs={"ops": {"qr": sample_ops("qr", "prod")}},
        on_up=ProgramModel(job_runner=record),
        **kwargs,
    )
    return stack, seen


def succeeded(request: dict[str, Any]) -> dict[str, Any]:
    return {"status": "succeeded", "report": {"task": request["task"], "rows": 42}}


def quiet(_line: str) -> None:
    return None


def test_job_runs_reports_and_is_removed() -> None:
    stack, seen = job_stack(succeeded)
    report = run_in_cluster(stack, "qr", "restore", ["--latest"], quiet)
    assert report == {"task": "restore", "rows": 42}
    assert seen[0]["app"] == "qr" and seen[0]["task"] == "restore"
    assert seen[0]["args"] == ["--latest"]
    assert stack.ops_sequence() == ["set_config", "up", "remove_config", "up"]
    assert CLUSTER_JOB_KEY not in stack.config
    assert "clusterJob" not in stack.outputs()


def test_request_is_json_with_a_kubernetes_safe_id() -> None:
    stack, _ = job_stack(succeeded)
    run_in_cluster(stack, "qr", "verify-backup", [], quiet)
    request = json.loads(stack.calls[0].value or "")
    assert set(request) == {"app", "task", "args", "id"}
    assert re.match(ID_PATTERN, request["id"])
    assert re.match(
        ID_PATTERN, job_id("verify-backup", datetime(2026, 12, 31, 23, 59, 59, tzinfo=UTC))
    )


def test_failed_job_raises_its_error_and_is_still_removed() -> None:
    stack, _ = job_stack(lambda _r: {"status": "failed", "error": "checksum mismatch"})
    with pytest.raises(TaskFailed, match="checksum mismatch"):
        run_in_cluster(stack, "qr", "restore", [], quiet)
    assert stack.ops_sequence() == ["set_config", "up", "remove_config", "up"]
    assert CLUSTER_JOB_KEY not in stack.config


def test_up_failing_while_job_runs_removes_the_job_and_says_so() -> None:
    stack, _ = job_stack(succeeded, fail_on_up=1)
    with pytest.raises(TaskFailed, match=r"cluster Job restore-\S+ \(restore\) failed"):
        run_in_cluster(stack, "qr", "restore", [], quiet)
    assert stack.ops_sequence() == ["set_config", "up", "remove_config", "up"]
    assert CLUSTER_JOB_KEY not in stack.config


def test_cleanup_failure_keeps_the_report_and_gives_the_commands() -> None:
    stack, _ = job_stack(succeeded, fail_on_up=2)
    with pytest.raises(ClusterJobCleanupFailed) as info:
        run_in_cluster(stack, "qr", "restore", [], quiet)
    assert info.value.result is not None and info.value.result["report"]["rows"] == 42
    assert "pulumi config rm opsplane:clusterJob --stack prod" in str(info.value)
    assert "finished (succeeded)" in str(info.value)


def test_program_not_reporting_the_job_is_a_failure() -> None:
    stack = FakeStack(outputs={"ops": {"qr": sample_ops("qr", "prod")}})  # no model: no output
    with pytest.raises(TaskFailed, match="did not report cluster Job"):
        run_in_cluster(stack, "qr", "backup", [], quiet)
    assert stack.ops_sequence() == ["set_config", "up", "remove_config", "up"]


def test_existing_request_is_refused_without_changes() -> None:
    stack, _ = job_stack(succeeded, config={CLUSTER_JOB_KEY: '{"id": "x"}'})
    with pytest.raises(UserInputError, match="already has a cluster job"):
        run_in_cluster(stack, "qr", "restore", [], quiet)
    assert stack.calls == []


def test_unknown_task_and_app_are_bad_input() -> None:
    stack, _ = job_stack(succeeded)
    with pytest.raises(UserInputError, match="cluster task 'drop'"):
        run_in_cluster(stack, "qr", "drop", [], quiet)
    with pytest.raises(UserInputError, match="--app 'nope'"):
        run_in_cluster(stack, "nope", "restore", [], quiet)
    assert stack.calls == []


# --- the program's report pointer, read from real S3 (moto server) -------------------------------
def s3_job_stack(s3: S3, document: dict[str, Any], **kwargs: Any) -> tuple[FakeStack, str]:
    """A stack whose Job, like `automation.jobrun`, uploads its report and exports a pointer."""
    bucket = s3.create_bucket("backups")
    ops = sample_ops("qr", "prod", backup={"bucket": bucket, "prefix": "opsplane"})

    def runner(request: dict[str, Any]) -> dict[str, Any]:
        key = f"opsplane/qr/reports/{request['id']}.json"
        s3.client().put_object(Bucket=bucket, Key=key, Body=json.dumps(document).encode())
        return {"status": "succeeded", "report": {"bucket": bucket, "key": key}, "error": None}

    stack = FakeStack(
        name="prod", outputs={"ops": {"qr": ops}}, on_up=ProgramModel(runner), **kwargs
    )
    return stack, bucket


def test_report_pointer_is_read_from_s3(s3: S3) -> None:
    document = {
        "exitCode": 0,
        "status": "succeeded",
        "report": {"restored": "qr_db"},
        "error": None,
    }
    stack, _ = s3_job_stack(s3, document)
    assert run_in_cluster(stack, "qr", "restore", [], quiet) == {"restored": "qr_db"}


def test_task_failure_in_the_s3_report_is_raised_with_its_error(s3: S3) -> None:
    document = {"exitCode": 1, "status": "failed", "report": {}, "error": "error: bad checksum"}
    stack, _ = s3_job_stack(s3, document)
    with pytest.raises(TaskFailed, match="error: bad checksum"):
        run_in_cluster(stack, "qr", "restore", [], quiet)
    assert CLUSTER_JOB_KEY not in stack.config


def test_failed_up_reports_the_tasks_own_error_from_the_conventional_key(s3: S3) -> None:
    document = {"exitCode": 1, "status": "failed", "report": {}, "error": "error: disk full"}
    stack, bucket = s3_job_stack(s3, document)
    stack.fail_on_up = {1}
    real_up = stack.up

    def up_that_runs_the_job_then_fails(on_output: Any) -> Any:
        if stack.up_count == 0:  # the Job ran and uploaded its report, then the update failed
            request = json.loads(stack.config[CLUSTER_JOB_KEY])
            key = f"opsplane/qr/reports/{request['id']}.json"
            s3.client().put_object(Bucket=bucket, Key=key, Body=json.dumps(document).encode())
        return real_up(on_output)

    stack.up = up_that_runs_the_job_then_fails  # type: ignore[method-assign]
    with pytest.raises(TaskFailed, match="error: disk full"):
        run_in_cluster(stack, "qr", "backup", [], quiet)
    assert stack.ops_sequence() == ["set_config", "up", "remove_config", "up"]


def test_missing_s3_report_is_a_clear_failure(s3: S3) -> None:
    stack, bucket = s3_job_stack(s3, {})

    def vanished(_bucket: str, key: str) -> bytes:
        from automation.tasks.io.s3io import get_bytes, s3_client

        return get_bytes(s3_client(), bucket, key + ".missing")

    with pytest.raises(TaskFailed, match="cannot read the cluster Job's report"):
        run_in_cluster(stack, "qr", "restore", [], quiet, read_report=vanished)
    assert CLUSTER_JOB_KEY not in stack.config
