"""TaskJob: a one-off Kubernetes Job running an automation task in the ops-runner image, declared
while config `opsplane:clusterJob` asks for it (automation's `--where cluster`).

pulumi-kubernetes waits for the Job to complete during `up` (a failed Job fails the update). The
task's JSON report is written to the backup bucket by `automation.jobrun`; the `clusterJob`
output tells automation where (docs/automation.md, "The cluster Job").
"""

from __future__ import annotations

from typing import Any

import pulumi

from components import k8s_manifests as m
from components.config import ClusterJobRequest
from components.context import AppContext
from components.k8s import declare


class TaskJob(pulumi.ComponentResource):
    result: pulumi.Output[dict[str, Any]]

    def __init__(
        self,
        name: str,
        *,
        ctx: AppContext,
        request: ClusterJobRequest,
        report_bucket: pulumi.Input[str],
        report_key: str,
        secret_name: str,
        secret_keys: list[str],
        service_account: str,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("opsplane:index:TaskJob", name, None, opts)
        app = ctx.name
        report_to = pulumi.Output.concat("s3://", report_bucket, "/", report_key)
        args = pulumi.Output.all(report_to).apply(
            lambda r: ["--report-to", r[0], "--", request.task, *request.args]
        )
        pod = m.job_pod_spec(
            app=app,
            component="task",
            image=ctx.runner_image,
            args=args,
            secret_name=secret_name,
            secret_keys=secret_keys,
            env={"AWS_REGION": ctx.settings.aws_region},
            service_account=service_account,
        )
        pod["spec"]["containers"][0]["command"] = ["python", "-m", "automation.jobrun"]
        job = declare(
            f"{name}-job",
            m.job(
                name=f"{app}-{request.id}",
                ns=ctx.namespace or app,
                app=app,
                component="task",
                pod=pod,
            ),
            pulumi.ResourceOptions(parent=self),
        )
        self.result = pulumi.Output.all(job.status, report_bucket).apply(
            lambda v: {
                "id": request.id,
                "app": app,
                "task": request.task,
                "status": "succeeded" if (v[0] or {}).get("succeeded") else "failed",
                "report": {"bucket": v[1], "key": report_key},
                "error": None,
            }
        )
        self.register_outputs({"result": self.result})
