"""One way the stack builds an image of its own (the ops-runner, PITR's PostgreSQL + barman-cloud):
prod builds it and pushes it to an ECR repository declared here, referenced by digest; dev builds
it locally (no push); a pinned reference from config skips the build."""

from __future__ import annotations

import pulumi
import pulumi_aws as aws
import pulumi_docker as docker


def image_ref(
    name: str,
    *,
    repository: str,
    tag: str,
    build: docker.DockerBuildArgs,
    push: bool,
    pinned: str | None,
    opts: pulumi.ResourceOptions,
) -> pulumi.Output[str]:
    """The image reference pods use; `opts` parents the repository and image (`<name>-repo`,
    `<name>-image`) to the calling component."""
    if pinned:
        return pulumi.Output.from_input(pinned)
    if not push:
        local = docker.Image(
            f"{name}-image",
            image_name=f"{repository}:{tag}",
            build=build,
            skip_push=True,
            opts=opts,
        )
        return local.image_name
    repo = aws.ecr.Repository(
        f"{name}-repo",
        name=repository,
        image_tag_mutability="MUTABLE",
        image_scanning_configuration={"scan_on_push": True},
        opts=opts,
    )
    token = aws.ecr.get_authorization_token_output(registry_id=repo.registry_id)
    pushed = docker.Image(
        f"{name}-image",
        image_name=repo.repository_url.apply(lambda url: f"{url}:{tag}"),
        build=build,
        registry=docker.RegistryArgs(
            server=repo.repository_url,
            username=token.user_name,
            password=pulumi.Output.secret(token.password),
        ),
        opts=opts,
    )
    return pushed.repo_digest
