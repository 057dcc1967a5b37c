"""TaskJob: a one-off Kubernetes Job running an automation task in the ops-runner image, declared
while config `opsplane:clusterJob` asks for it (automation's `--where cluster`).

pulumi-kubernetes waits for the Job to complete during `up` (a failed Job fails the update). The
task's JSON report is written to the backup bucket by `automation.jobrun`; the `clusterJob`
output tells automation where (docs/automation.md, "The cluster Job").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pulumi

from components import manifests as m
from components.context import AppContext
from components.k8s import declare
from contract.cluster_job import ClusterJobRequest

REDIS_DATA_MOUNT = "/redis-data"


@dataclass(frozen=True, eq=False)
class DataVolume:
    """A stopped store's data volume the task writes (restore `--component redis|all`).

    The pod runs as the store's user (`owner`, also its fsGroup) so the files it leaves belong to
    the store, and is created only after `stopped` (the store's StatefulSet, scaled to 0) is
    updated: a ReadWriteOnce volume takes one node's pods at a time.
    """

    claim: str
    mount_path: str
    owner: int
    flag: str  # the task option that names the directory
    stopped: pulumi.Resource


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
        volume: DataVolume | None = None,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("opsplane:index:TaskJob", name, None, opts)
        app = ctx.name
        report_to = pulumi.Output.concat("s3://", report_bucket, "/", report_key)
        task_args = [*request.args, *((volume.flag, volume.mount_path) if volume else ())]
        args = pulumi.Output.all(report_to).apply(
            lambda r: ["--report-to", r[0], "--", request.task, *task_args]
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
            run_as_user=volume.owner if volume else m.RUNNER_UID,
            claims={volume.mount_path: volume.claim} if volume else None,
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
            pulumi.ResourceOptions(parent=self, depends_on=[volume.stopped] if volume else None),
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
