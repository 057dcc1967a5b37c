"""Point-in-time recovery for an app's PostgreSQL (docs/pitr.md): what the program declares.

- The server runs an image with barman-cloud (`PitrImage`: FROM the configured postgres image,
  built and pushed like the ops-runner) and archives every WAL segment with the one
  `archive_command` of `contract/wal_layout.py` (barman-cloud-wal-archive exits 0 only once the
  segment is stored), `wal_level=replica`, `archive_mode=on`, `archive_timeout` from config.
- Base backups need the data directory itself (barman-cloud-backup reads PGDATA's files), and the
  volume is ReadWriteOnce, so a CronJob pod cannot mount it while the server runs: they run in a
  `base-backup` sidecar of the database pod (the ops-runner image, which has automation and
  barman-cloud), `python -m automation base-backup --schedule CRON`: it backs up at start when
  the bucket has no base backup of the app yet (PITR just turned on), then at each firing; after
  each backup it applies retention (`RECOVERY WINDOW OF retentionDays DAYS`) and pushes its
  success time.
- prod credentials: an IRSA role for the database pod's service account, reads and writes
  scoped to the app's WAL prefix; the ops-runner role may read it (restore --to-time) and keep
  base backups (backups pin).
- dev: the Docker PostgreSQL container archives to the app's MinIO with its root credentials;
  the same base-backup loop runs in its own container, `<app>-db-base-backup` (docs/pitr.md).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_aws as aws
import pulumi_docker as docker

from components import manifests as m
from components.catalog.spec import Resources
from components.image_build import image_ref
from components.k8s import declare
from contract import wal_layout as wl

DOCKERFILE = "components/pitr_image/Dockerfile"
SIDECAR = "base-backup"
PGDATA = "/var/lib/postgresql/data/pgdata"
DATA_MOUNT = "/var/lib/postgresql/data"
SCRATCH = "pitr-tmp"
# The sidecar has a liveness probe (its schedule loop's heartbeat) and, on purpose, no readiness
# probe: a pod is Ready only when every container is, so a sidecar readiness failure would take
# PostgreSQL out of its Service. checkov reads this resource-scoped skip; test_hardening.py checks
# that every other container has readiness.
CHECKOV_SKIP = "checkov.io/skip1"
NO_SIDECAR_READINESS = (
    "CKV_K8S_9=the base-backup sidecar has no readiness probe on purpose: a not-ready sidecar "
    "would take PostgreSQL out of its Service; postgres and its exporter have one"
)


def postgres_settings(archive_command: str, archive_timeout: int) -> dict[str, str]:
    return {
        "wal_level": "replica",
        "archive_mode": "on",
        "archive_timeout": f"{archive_timeout}s",
        "archive_command": archive_command,
    }


def postgres_args(settings: dict[str, str]) -> list[str]:
    """`-c name=value` flags (the official image's entrypoint hands them to postgres)."""
    return [flag for key, value in settings.items() for flag in ("-c", f"{key}={value}")]


def archive_policy(bucket_arn: str, root: str) -> str:
    """The database pod's role: barman-cloud's reads and writes under the app's WAL prefix only.

    ListBucket is bucket-wide: barman-cloud checks the bucket with HeadBucket, which carries no
    prefix a condition could scope (key names only; objects stay scoped to the prefix)."""
    statements = [
        {"Sid": "BucketCheckAndList", "Effect": "Allow", "Action": ["s3:ListBucket"],
         "Resource": bucket_arn},
        {"Sid": "WalPrefix", "Effect": "Allow",
         "Action": ["s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload",
                    "s3:ListMultipartUploadParts"],
         "Resource": f"{bucket_arn}/{root}*"},
    ]  # fmt: skip
    return json.dumps({"Version": "2012-10-17", "Statement": statements})


def runner_pitr_policy(bucket_arn: str, root: str) -> str:
    """The ops-runner's extra grant: read the archive (restore --to-time), keep/release a base
    backup (backups pin writes or deletes its keep annotation)."""
    statements = [
        {"Sid": "ListWalPrefix", "Effect": "Allow", "Action": ["s3:ListBucket"],
         "Resource": bucket_arn, "Condition": {"StringLike": {"s3:prefix": [f"{root}*"]}}},
        {"Sid": "ReadWalPrefix", "Effect": "Allow",
         "Action": ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"],
         "Resource": f"{bucket_arn}/{root}*"},
    ]  # fmt: skip
    return json.dumps({"Version": "2012-10-17", "Statement": statements})


@dataclass
class DockerBaseBackup:
    """dev: the base-backup loop as its own container beside PostgreSQL, on the data volume
    (read-only). The Datastore adds the database URL (it holds the password)."""

    image: pulumi.Input[str]
    args: list[str]
    env: dict[str, pulumi.Input[str]]
    secret_env: dict[str, pulumi.Input[str]]

    def container_env(self, database_url: pulumi.Input[str]) -> pulumi.Output[list[str]]:
        from components.docker_host import env_list

        return env_list(self.env, {**self.secret_env, "OPSPLANE_DATABASE_URL": database_url})


@dataclass
class PitrDb:
    """What archiving changes in the app's PostgreSQL (the Datastore applies it)."""

    image: pulumi.Input[str]
    args: list[str]
    docker_env: dict[str, pulumi.Input[str]] = field(default_factory=dict)
    service_account: str | None = None
    sidecar: dict[str, Any] | None = None
    docker_base_backup: DockerBaseBackup | None = None

    def patch(self, statefulset: dict[str, Any]) -> dict[str, Any]:
        """The StatefulSet with the service account, the base-backup sidecar and its /tmp.

        IRSA needs no API token (EKS' pod identity webhook projects its own `aws-iam-token`), so
        the pod keeps `automountServiceAccountToken: false`."""
        pod = statefulset["spec"]["template"]["spec"]
        if self.service_account:
            pod["serviceAccountName"] = self.service_account
        if self.sidecar is not None:
            pod["containers"].append(self.sidecar)
            pod["volumes"].append({"name": SCRATCH, "emptyDir": {}})
            template_notes = statefulset["spec"]["template"]["metadata"]["annotations"]
            template_notes[m.IMAGE_PINNING_ANNOTATION] = m.image_pinning(pod["containers"])
            notes = statefulset["metadata"].setdefault("annotations", {})
            notes[CHECKOV_SKIP] = NO_SIDECAR_READINESS
        return statefulset


def base_backup_args(ctx: Any, bucket: pulumi.Input[str], *, pushgateway: str | None) -> list[Any]:
    """`base-backup --schedule`: the loop both stacks run beside PostgreSQL (docs/pitr.md)."""
    settings = ctx.settings
    args = ["base-backup", "--pgdata", PGDATA, "--bucket", bucket]
    args += ["--prefix", settings.backup.prefix, "--app", ctx.name]
    args += ["--retention-days", str(settings.backup.retention_days)]
    args += ["--schedule", settings.pitr.base_backup_schedule]
    return [*args, "--pushgateway", pushgateway] if pushgateway else args


def base_backup_sidecar(
    *,
    image: pulumi.Input[str],
    args: list[Any],
    db_user: str,
    db_name: str,
    port: int,
    secret_name: str,
    password_key: str,
    region: str,
) -> dict[str, Any]:
    conninfo = f"host=localhost port={port} dbname={db_name} user={db_user} password=$(PGPASS)"
    return {
        "name": SIDECAR,
        **m.image_fields(image),
        "args": args,
        "env": [
            {
                "name": "PGPASS",
                "valueFrom": {"secretKeyRef": {"name": secret_name, "key": password_key}},
            },
            {"name": "OPSPLANE_DATABASE_URL", "value": conninfo},
            *m.plain_env({"AWS_REGION": region, "AWS_DEFAULT_REGION": region, "HOME": "/tmp"}),  # noqa: S108 (emptyDir)
        ],
        # the schedule loop's promise (contract.wal_layout.HEARTBEAT_FILE); no readiness: see
        # NO_SIDECAR_READINESS
        "livenessProbe": {**m.exec_probe(wl.heartbeat_probe()), "initialDelaySeconds": 60},
        "resources": m.resources(Resources("50m", "128Mi", "1", "512Mi")),
        "securityContext": m.container_security(read_only_root=True),
        "volumeMounts": [
            {"name": m.DATA_VOLUME, "mountPath": DATA_MOUNT, "readOnly": True},
            {"name": SCRATCH, "mountPath": "/tmp"},  # noqa: S108 (the sidecar's own emptyDir)
        ],
    }


class PitrImage(pulumi.ComponentResource):
    """PostgreSQL + barman-cloud: prod builds and pushes it to ECR, dev builds it locally; a
    pinned `opsplane:pitr.image` is used as it is."""

    ref: pulumi.Output[str]

    def __init__(
        self,
        name: str,
        *,
        postgres_image: str,
        push: bool,
        pinned: str | None,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("opsplane:index:PitrImage", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        build = docker.DockerBuildArgs(
            context=".",
            dockerfile=DOCKERFILE,
            platform="linux/amd64",
            args={"POSTGRES_IMAGE": postgres_image},
        )
        tag = postgres_image.rsplit(":", 1)[-1] if ":" in postgres_image else "latest"
        self.ref = image_ref(
            name,
            repository=f"opsplane/{name}",
            tag=tag,
            build=build,
            push=push,
            pinned=pinned,
            opts=child,
        )
        self.register_outputs({"ref": self.ref})


class PitrAccess(pulumi.ComponentResource):
    """prod: the database pod's service account and IRSA role (WAL prefix only), and the
    ops-runner role's grant on the same prefix."""

    service_account: str

    def __init__(
        self,
        name: str,
        *,
        app: str,
        namespace: str,
        stack: str,
        bucket_arn: pulumi.Input[str],
        root: str,
        trust_policy: str,
        runner_role: pulumi.Input[str],
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("opsplane:index:PitrAccess", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.service_account = f"{app}-db-archiver"
        role = aws.iam.Role(
            f"{name}-role",
            name=f"opsplane-{stack}-{app}-db-archiver",
            assume_role_policy=trust_policy,
            opts=child,
        )
        aws.iam.RolePolicy(
            f"{name}-policy",
            role=role.id,
            policy=pulumi.Output.from_input(bucket_arn).apply(
                lambda arn: archive_policy(arn, root)
            ),
            opts=child,
        )
        aws.iam.RolePolicy(
            f"{name}-runner-policy",
            role=runner_role,
            policy=pulumi.Output.from_input(bucket_arn).apply(
                lambda arn: runner_pitr_policy(arn, root)
            ),
            opts=child,
        )
        declare(
            f"{name}-service-account",
            m.service_account(self.service_account, namespace, app, role.arn),
            child,
        )
        self.register_outputs({"serviceAccount": self.service_account, "roleArn": role.arn})


def wal_root(prefix: str, app: str) -> str:
    return wl.server_root(prefix, app)


def egress_policies(ns: str, app: str) -> list[tuple[str, dict[str, Any]]]:
    """The database pod reaches S3 (HTTPS) and the Pushgateway once it archives."""
    https = m.allow_https_egress(ns, app, ["db"])
    https["metadata"]["name"] = f"{app}-db-allow-archive-egress"
    push = m.allow_pushgateway_egress(ns, app, ["db"])
    push["metadata"]["name"] = f"{app}-db-allow-pushgateway"
    return [("archive-egress", https), ("pushgateway-egress", push)]


def pitr_db(
    name: str,
    *,
    ctx: Any,
    bucket: str,
    minio_password: pulumi.Input[str] | None,
    opts: pulumi.ResourceOptions,
) -> PitrDb | None:
    """What archiving adds to the app's PostgreSQL on this stack, or None when it is off
    (`opsplane:pitr.apps`). prod: the image, settings, IRSA service account and base-backup
    sidecar; dev: the image, settings and the app's MinIO credentials."""
    settings, app, pg = ctx.settings, ctx.name, ctx.spec.postgres
    if not settings.pitr.enabled(app):
        return None
    image = PitrImage(
        f"{app}-postgres-pitr",
        postgres_image=ctx.app_settings.postgres_image or pg.default_image,
        push=ctx.kubernetes,
        pinned=settings.pitr.image,
        opts=opts,
    )
    prefix = settings.backup.prefix
    if not ctx.kubernetes:
        endpoint = f"http://{app}-minio:9000"  # the app's MinIO container on the app network
        command = wl.archive_command(bucket, app, prefix, endpoint=endpoint)
        env: dict[str, pulumi.Input[str]] = {
            "AWS_ACCESS_KEY_ID": f"{app}-minio",
            "AWS_DEFAULT_REGION": settings.aws_region,
        }
        secret = {"AWS_SECRET_ACCESS_KEY": minio_password} if minio_password is not None else {}
        args = postgres_args(postgres_settings(command, settings.pitr.archive_timeout))
        base_backup = DockerBaseBackup(
            image=ctx.runner_image,
            args=base_backup_args(ctx, bucket, pushgateway=None),
            env={**env, "AWS_ENDPOINT_URL": endpoint, "HOME": "/tmp"},  # noqa: S108 (container)
            secret_env=secret,
        )
        return PitrDb(
            image=image.ref, args=args, docker_env={**env, **secret}, docker_base_backup=base_backup
        )
    command = wl.archive_command(bucket, app, prefix)
    sidecar = base_backup_sidecar(
        image=ctx.runner_image,
        args=base_backup_args(ctx, bucket, pushgateway=settings.alerts.pushgateway_url),
        db_user=pg.user,
        db_name=pg.database,
        port=pg.port,
        secret_name=f"{app}-db-credentials",
        password_key="POSTGRES_PASSWORD",  # noqa: S106 (a Secret key name, not a value)
        region=settings.aws_region,
    )
    return PitrDb(
        image=image.ref,
        args=postgres_args(postgres_settings(command, settings.pitr.archive_timeout)),
        service_account=f"{app}-db-archiver",
        sidecar=sidecar,
    )


def declare_access(
    name: str, *, ctx: Any, bucket: pulumi.Output[str], runner_role_arn: pulumi.Output[str],
    opts: pulumi.ResourceOptions,
) -> PitrAccess | None:  # fmt: skip
    """prod, when the app archives: IRSA for the database pod, the ops-runner's grant, egress."""
    from components.backup_plan import irsa_trust_policy

    settings, app = ctx.settings, ctx.name
    if not (ctx.kubernetes and settings.pitr.enabled(app)):
        return None
    ns = ctx.namespace or app
    eks = settings.eks
    runner_role = f"opsplane-{settings.stack}-{app}-ops-runner"  # BackupPlan's role name
    access = PitrAccess(
        f"{name}-pitr",
        app=app,
        namespace=ns,
        stack=settings.stack,
        bucket_arn=bucket.apply(lambda b: f"arn:aws:s3:::{b}"),
        root=wal_root(settings.backup.prefix, app),
        trust_policy=irsa_trust_policy(eks.oidc_provider_arn, eks.oidc_issuer, ns,
                                       f"{app}-db-archiver"),
        runner_role=runner_role_arn.apply(lambda _arn: runner_role),
        opts=opts,
    )  # fmt: skip
    for suffix, policy in egress_policies(ns, app):
        declare(f"{name}-pitr-{suffix}", policy, pulumi.ResourceOptions(parent=access))
    return access


def ops_entry(ctx: Any) -> dict[str, Any]:
    """`ops.pitr`: what `restore --stack S --to-time` and `status` need."""
    settings, app = ctx.settings, ctx.name
    return {
        "enabled": settings.pitr.enabled(app),
        "archiveTimeout": settings.pitr.archive_timeout,
        "baseBackupSchedule": settings.pitr.base_backup_schedule,
        "root": wal_root(settings.backup.prefix, app),
    }
