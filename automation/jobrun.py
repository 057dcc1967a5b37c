"""Run one automation command inside the cluster and leave its JSON report in S3.

The TaskJob's container runs `python -m automation.jobrun --report-to s3://bucket/key -- <task>
<args...>`: the task runs as `python -m automation <task> <args> --json`; its stdout (the
report), exit code and last error line are uploaded to `--report-to` so that automation on the
operator's machine can read the result after `up` (automation/operations/cluster_job.py).
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
from typing import Any


def parse_s3_url(url: str) -> tuple[str, str]:
    if not url.startswith("s3://") or "/" not in url[5:]:
        raise ValueError(f"--report-to must be s3://bucket/key, got {url!r}")
    bucket, key = url[5:].split("/", 1)
    return bucket, key


def run_task(argv: list[str]) -> dict[str, Any]:
    command = [sys.executable, "-m", "automation", *argv]
    if "--json" not in argv:
        command.append("--json")
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    # the Job's SIGTERM (deadline, node drain) reaches only PID 1, this process: pass it on, so the
    # task runs its Ctrl-C cleanup and prints its --json report, which is then uploaded as usual
    main = threading.current_thread() is threading.main_thread()  # (handlers live there only)
    previous = signal.signal(signal.SIGTERM, lambda *_: proc.terminate()) if main else None
    try:
        stdout, stderr = proc.communicate()
    finally:
        if main:
            signal.signal(signal.SIGTERM, previous)
    sys.stderr.write(stderr)
    try:
        report = json.loads(stdout) if stdout.strip() else {}
    except json.JSONDecodeError:
        report = {"stdout": stdout[-4000:]}
    errors = [line for line in stderr.splitlines() if line.strip()]
    return {
        "exitCode": proc.returncode,
        "status": "succeeded" if proc.returncode == 0 else "failed",
        "report": report,
        "error": errors[-1] if proc.returncode and errors else None,
    }


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) < 4 or args[0] != "--report-to" or args[2] != "--":
        sys.stderr.write("usage: python -m automation.jobrun --report-to s3://B/K -- TASK ...\n")
        return 2
    bucket, key = parse_s3_url(args[1])
    result = run_task(args[3:])
    from automation.tasks.io.s3io import s3_client

    s3_client().put_object(
        Bucket=bucket, Key=key, Body=json.dumps(result).encode(), ContentType="application/json"
    )
    return int(result["exitCode"])


if __name__ == "__main__":
    sys.exit(main())
