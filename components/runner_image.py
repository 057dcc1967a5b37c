"""RunnerImage: the ops-runner image (automation/Dockerfile) that CronJobs and Jobs run.
prod: built with pulumi-docker and pushed to an ECR repository declared here. dev: built locally.
A pinned `opsplane:runnerImage` skips the build and uses that reference."""

from __future__ import annotations

import pulumi
import pulumi_docker as docker

from components.image_build import image_ref

DOCKERFILE = "automation/Dockerfile"


class RunnerImage(pulumi.ComponentResource):
    ref: pulumi.Output[str]

    def __init__(
        self,
        name: str,
        *,
        push: bool,
        pinned: str | None,
        context_dir: str = ".",
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("opsplane:index:RunnerImage", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        build = docker.DockerBuildArgs(
            context=context_dir, dockerfile=DOCKERFILE, platform="linux/amd64"
        )
        self.ref = image_ref(
            name,
            repository="opsplane/ops-runner",
            tag=pulumi.get_stack() if push else "dev",
            build=build,
            push=push,
            pinned=pinned,
            opts=child,
        )
        self.register_outputs({"ref": self.ref})
