"""ObjectStore: buckets. prod: S3 buckets with public access blocked, default encryption,
versioning and a TLS-only policy. dev: one MinIO container per app (volume + a one-shot `mc`
container that creates the buckets), mirroring the runbook's docker compose."""

from __future__ import annotations

import json

import pulumi
import pulumi_aws as aws
import pulumi_docker as docker

from components.context import AppContext
from components.docker_host import env_list


def tls_only_policy(bucket_arn: str) -> str:
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Sid": "DenyInsecureTransport",
                    "Effect": "Deny",
                    "Principal": "*",
                    "Action": "s3:*",
                    "Resource": [bucket_arn, f"{bucket_arn}/*"],
                    "Condition": {"Bool": {"aws:SecureTransport": "false"}},
                }
            ],
        }
    )


class S3Bucket(pulumi.ComponentResource):
    """One hardened S3 bucket."""

    bucket: pulumi.Output[str]
    arn: pulumi.Output[str]

    def __init__(
        self, name: str, *, bucket_name: str, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("opsplane:index:S3Bucket", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        bucket = aws.s3.Bucket(name, bucket=bucket_name, force_destroy=False, opts=child)
        aws.s3.BucketPublicAccessBlock(
            f"{name}-public-access",
            bucket=bucket.id,
            block_public_acls=True,
            block_public_policy=True,
            ignore_public_acls=True,
            restrict_public_buckets=True,
            opts=child,
        )
        aws.s3.BucketOwnershipControls(
            f"{name}-ownership",
            bucket=bucket.id,
            rule={"object_ownership": "BucketOwnerEnforced"},
            opts=child,
        )
        aws.s3.BucketServerSideEncryptionConfiguration(
            f"{name}-encryption",
            bucket=bucket.id,
            rules=[
                {
                    "apply_server_side_encryption_by_default": {"sse_algorithm": "aws:kms"},
                    "bucket_key_enabled": True,
                }
            ],
            opts=child,
        )
        aws.s3.BucketVersioning(
            f"{name}-versioning",
            bucket=bucket.id,
            versioning_configuration={"status": "Enabled"},
            opts=child,
        )
        aws.s3.BucketPolicy(
            f"{name}-tls-only",
            bucket=bucket.id,
            policy=bucket.arn.apply(tls_only_policy),
            opts=child,
        )
        self.bucket, self.arn = bucket.bucket, bucket.arn
        self.resource = bucket
        self.register_outputs({"bucket": self.bucket, "arn": self.arn})


class MinioStore(pulumi.ComponentResource):
    """The dev stack's S3: a MinIO container holding the app's buckets."""

    endpoint: str
    access_key: str

    def __init__(
        self,
        name: str,
        *,
        ctx: AppContext,
        buckets: list[str],
        password: pulumi.Input[str],
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("opsplane:index:MinioStore", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        spec = ctx.spec.objects
        image_ref = ctx.app_settings.minio_image or (
            spec.dev_image if spec else "minio/minio:RELEASE.2024-10-13T13-34-11Z"
        )
        port = ctx.spec.dev_minio_port
        self.access_key = f"{ctx.name}-minio"
        self.endpoint = f"http://127.0.0.1:{port}"
        volume = docker.Volume(f"{name}-data", name=f"{ctx.name}-minio-data", opts=child)
        image = docker.RemoteImage(f"{name}-image", name=image_ref, keep_locally=True, opts=child)
        envs = env_list({"MINIO_ROOT_USER": self.access_key}, {"MINIO_ROOT_PASSWORD": password})
        server = docker.Container(
            f"{name}-container",
            name=f"{ctx.name}-minio",
            image=image.image_id,
            command=["server", "/data", "--console-address", ":9001"],
            envs=envs,
            networks_advanced=[
                docker.ContainerNetworksAdvancedArgs(name=ctx.docker_network, aliases=["minio"])
            ],
            ports=[
                docker.ContainerPortArgs(internal=9000, external=port, ip="127.0.0.1"),
                docker.ContainerPortArgs(internal=9001, external=port + 1, ip="127.0.0.1"),
            ],
            volumes=[docker.ContainerVolumeArgs(volume_name=volume.name, container_path="/data")],
            healthcheck=docker.ContainerHealthcheckArgs(
                tests=["CMD", "mc", "ready", "local"], interval="10s", timeout="5s", retries=5
            ),
            restart="unless-stopped",
            opts=child,
        )
        mc = docker.RemoteImage(
            f"{name}-mc-image",
            name="minio/mc:RELEASE.2024-10-08T09-37-26Z",
            keep_locally=True,
            opts=child,
        )
        make_buckets = " && ".join(f"mc mb --ignore-existing local/{b}" for b in buckets)
        docker.Container(
            f"{name}-init",
            name=f"{ctx.name}-minio-init",
            image=mc.image_id,
            entrypoints=["sh", "-c"],
            command=[
                'mc alias set local http://minio:9000 "$MINIO_ROOT_USER" "$MINIO_ROOT_PASSWORD" && '
                + make_buckets
            ],
            envs=envs,
            networks_advanced=[docker.ContainerNetworksAdvancedArgs(name=ctx.docker_network)],
            must_run=False,
            restart="on-failure",
            max_retry_count=10,
            opts=pulumi.ResourceOptions.merge(child, pulumi.ResourceOptions(depends_on=[server])),
        )
        self.register_outputs({"endpoint": self.endpoint})
