"""RunnerImage: the ops-runner image (automation/Dockerfile) that CronJobs and Jobs run.
prod: built with pulumi-docker and pushed to an ECR repository declared here. dev: built locally.
A pinned `opsplane:runnerImage` skips the build and uses that reference."""

from __future__ import annotations

import pulumi
import pulumi_aws as aws
import pulumi_docker as docker

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
        if pinned:
            self.ref = pulumi.Output.from_input(pinned)
        elif push:
            repo = aws.ecr.Repository(
                f"{name}-repo",
                name="opsplane/ops-runner",
                image_tag_mutability="MUTABLE",
                image_scanning_configuration={"scan_on_push": True},
                opts=child,
            )
            token = aws.ecr.get_authorization_token_output(registry_id=repo.registry_id)
            image = docker.Image(
                f"{name}-image",
                image_name=repo.repository_url.apply(lambda url: f"{url}:{pulumi.get_stack()}"),
                build=build,
                registry=docker.RegistryArgs(
                    server=repo.repository_url,
                    username=token.user_name,
                    password=pulumi.Output.secret(token.password),
                ),
                opts=child,
            )
            self.ref = image.repo_digest
        else:
            image = docker.Image(
                f"{name}-image",
                image_name="opsplane/ops-runner:dev",
                build=build,
                skip_push=True,
                opts=child,
            )
            self.ref = image.image_name
        self.register_outputs({"ref": self.ref})
