"""BackupPlan: scheduled backups and restore drills for one app (prod), replacing the runbooks'
host crontab (`pg_dump | gzip` at 02:00, `find -mtime +30 -delete`, `redis-cli SAVE`, `mc mirror`).

prod: a hardened backup bucket whose lifecycle rules (contract.backup_lifecycle, the same data
the dev task applies through the S3 API) expire `retention=standard` backups; an IAM role for the
ops-runner service account (IRSA) scoped to this app's prefix; CronJobs for the database, Redis,
the object store and the weekly restore drill. dev: nothing scheduled; the backup bucket lives in
the app's MinIO and `python -m automation backup` runs on demand.
"""

from __future__ import annotations

import json
import re
from typing import Any, cast

import pulumi
import pulumi_aws as aws

from components import manifests as m
from components.context import AppContext
from components.k8s import declare
from components.object_store import S3Bucket
from contract.backup_lifecycle import lifecycle_rules

WEBHOOK_SECRET_KEY = "OPSPLANE_WEBHOOK_SECRET"  # noqa: S105 env var name (automation.tasks.replay.run.JOB_SECRET_ENV)


def to_pulumi_rules(rules: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """boto3 lifecycle rule dicts (PascalCase) → pulumi-aws input dicts (snake_case)."""

    def convert(value: Any) -> Any:
        if isinstance(value, dict):
            return {_snake(k): convert(v) for k, v in value.items()}
        if isinstance(value, list):
            return [convert(v) for v in value]
        return value

    return [convert(rule) for rule in rules]


def _snake(key: str) -> str:
    return {"ID": "id", "And": "and_", "Tags": "tags"}.get(key) or re.sub(
        r"(?<!^)(?=[A-Z])", "_", key
    ).lower()


def runner_policy(bucket_arn: str, prefix: str, objects_arn: str | None) -> str:
    """Read/write only under `<prefix>/` of the backup bucket; read the app's own bucket."""
    statements: list[dict[str, Any]] = [
        {
            "Sid": "ListOwnPrefix",
            "Effect": "Allow",
            "Action": ["s3:ListBucket", "s3:ListBucketMultipartUploads"],
            "Resource": bucket_arn,
            "Condition": {"StringLike": {"s3:prefix": [f"{prefix}/*", prefix]}},
        },
        {
            "Sid": "ReadWriteOwnPrefix",
            "Effect": "Allow",
            "Action": [
                "s3:GetObject",
                "s3:PutObject",
                "s3:GetObjectTagging",
                "s3:PutObjectTagging",
                "s3:AbortMultipartUpload",
                "s3:ListMultipartUploadParts",
            ],
            "Resource": f"{bucket_arn}/{prefix}/*",
        },
    ]
    if objects_arn:
        statements.append(
            {
                "Sid": "MirrorAppBucket",
                "Effect": "Allow",
                "Action": ["s3:ListBucket", "s3:GetObject", "s3:PutObject"],
                "Resource": [objects_arn, f"{objects_arn}/*"],
            }
        )
    return json.dumps({"Version": "2012-10-17", "Statement": statements})


def irsa_trust_policy(provider_arn: str, issuer: str, namespace: str, account: str) -> str:
    issuer = issuer.removeprefix("https://")
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Principal": {"Federated": provider_arn},
                    "Action": "sts:AssumeRoleWithWebIdentity",
                    "Condition": {
                        "StringEquals": {
                            f"{issuer}:sub": f"system:serviceaccount:{namespace}:{account}",
                            f"{issuer}:aud": "sts.amazonaws.com",
                        }
                    },
                }
            ],
        }
    )


class BackupPlan(pulumi.ComponentResource):
    bucket: pulumi.Output[str]
    prefix: str
    cronjobs: list[str]

    def __init__(
        self,
        name: str,
        *,
        ctx: AppContext,
        bucket_name: str,
        database_url: pulumi.Input[str],
        redis_url: pulumi.Input[str],
        webhook_secret: pulumi.Input[str] | None,
        objects_bucket: S3Bucket | None,
        objects_bucket_name: str | None,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("opsplane:index:BackupPlan", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        settings, app = ctx.settings.backup, ctx.name
        ns = ctx.namespace or app
        self.prefix = settings.prefix
        self.cronjobs = []
        store = S3Bucket(f"{name}-bucket", bucket_name=bucket_name, opts=child)
        self.bucket = store.bucket
        aws.s3.BucketLifecycleConfiguration(
            f"{name}-lifecycle",
            bucket=store.resource.id,
            rules=cast(  # plain dicts in the shape of BucketLifecycleConfigurationRuleArgsDict
                Any,
                to_pulumi_rules(
                    lifecycle_rules(settings.retention_days, settings.noncurrent_days, 1)
                ),
            ),
            opts=child,
        )
        account = f"{app}-ops-runner"
        eks = ctx.settings.eks
        if eks is None:  # Settings requires it on a kubernetes stack
            raise ValueError("eks: required on a kubernetes stack")
        role = aws.iam.Role(
            f"{name}-runner-role",
            name=f"opsplane-{ctx.settings.stack}-{app}-ops-runner",
            assume_role_policy=irsa_trust_policy(
                eks.oidc_provider_arn, eks.oidc_issuer, ns, account
            ),
            opts=child,
        )
        aws.iam.RolePolicy(
            f"{name}-runner-policy",
            role=role.id,
            policy=pulumi.Output.all(
                store.arn, objects_bucket.arn if objects_bucket else None
            ).apply(lambda a: runner_policy(a[0], f"{settings.prefix}/{app}", a[1])),
            opts=child,
        )
        declare(f"{name}-service-account", m.service_account(account, ns, app, role.arn), child)
        secret_name = f"{app}-ops-env"
        runner_env = {"OPSPLANE_DATABASE_URL": database_url, "OPSPLANE_REDIS_URL": redis_url}
        if webhook_secret is not None:
            runner_env[WEBHOOK_SECRET_KEY] = webhook_secret
        self.secret_keys = sorted(runner_env)
        declare(
            f"{name}-secret",
            m.secret(secret_name, ns, m.labels(app, "ops-runner"), runner_env),
            child,
        )
        common = ["--bucket", bucket_name, "--prefix", settings.prefix, "--app", app]
        push = ["--pushgateway", ctx.settings.alerts.pushgateway_url]
        objects = ["--objects-bucket", objects_bucket_name] if objects_bucket_name else []
        # The nightly run takes every part under one manifest: one restore point across the
        # stores (`restore --component all`). The Redis/objects jobs add snapshots in between.
        jobs: dict[str, tuple[str, list[str], list[str]]] = {
            "backup-db": (
                settings.schedule,
                ["backup", *common, "--format", settings.format, *objects, *push],
                ["OPSPLANE_DATABASE_URL", "OPSPLANE_REDIS_URL"],
            ),
            "backup-redis": (
                settings.redis_schedule,
                ["backup", *common, *push],
                ["OPSPLANE_REDIS_URL"],
            ),
            "restore-drill": (
                settings.drill_schedule,
                ["verify-backup", *common, "--latest", *push],
                ["OPSPLANE_DATABASE_URL"],
            ),
        }
        if objects:
            jobs["backup-objects"] = (
                settings.objects_schedule,
                ["backup", *common, *objects, *push],
                [],
            )
        for component, (schedule, args, keys) in sorted(jobs.items()):
            pod = m.job_pod_spec(
                app=app,
                component=component,
                image=ctx.runner_image,
                args=args,
                secret_name=secret_name,
                secret_keys=keys,
                env={"AWS_REGION": ctx.settings.aws_region},
                service_account=account,
            )
            declare(
                f"{name}-{component}",
                m.cronjob(
                    name=f"{app}-{component}",
                    ns=ns,
                    app=app,
                    component=component,
                    schedule=schedule,
                    pod=pod,
                ),
                child,
            )
            self.cronjobs.append(f"{app}-{component}")
        self.role_arn = role.arn
        self.service_account = account
        self.secret_name = secret_name
        self.register_outputs({"bucket": self.bucket, "cronjobs": self.cronjobs})
