"""The `ops` output of one app (contract/ops.py `AppOps`, docs/ops-contract.md): built from what
`App` declared, passed in as arguments. A plain dict of Outputs: secrecy stays on the secret
leaves (passwords, webhook secret), not on the whole object.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pulumi

from components.catalog.spec import AppSpec
from components.config import Settings, cron_interval_seconds
from components.datastore import Datastore
from components.object_store import MinioStore, S3Bucket
from components.workload import Workload


@dataclass(frozen=True)
class OpsParts:
    """What `App` declared that the output describes."""

    db: Datastore
    cache: Datastore
    secrets: Mapping[str, Any]  # secret name -> RotatingSecret | external value (`.current`)
    backup: dict[str, Any]  # contract.BackupOps, values may be Outputs
    objects_bucket: S3Bucket | None
    minio: MinioStore | None
    workloads: Mapping[str, Workload]
    namespace: str | None
    network: pulumi.Input[str] | None
    runner_image: pulumi.Input[str] | None
    rate_limit_per_minute: int
    deploy: dict[str, Any]  # contract.DeployOps
    pitr: dict[str, Any]  # contract.PitrOps
    pool_size: int | None  # contract.DatabaseOps.poolSize


def build_ops(spec: AppSpec, settings: Settings, parts: OpsParts) -> dict[str, Any]:
    """Every field of `contract.ops.AppOps` (tests/program/test_outputs.py checks the keys)."""
    return {
        "app": spec.name,
        "stack": settings.stack,
        "target": settings.target,
        "namespace": parts.namespace,
        "network": parts.network,
        "database": _database(spec, parts),
        "cache": {
            "host": parts.cache.host,
            "port": parts.cache.port,
            "password": parts.secrets["redis-password"].current,
        },
        "objects": _objects(spec, parts),
        "backup": {**parts.backup, "schedules": _schedules(settings)},
        "health": _health(spec, settings, parts),
        "webhook": _webhook(spec, settings, parts),
        "writers": list(spec.writers),
        "replicas": {w: parts.workloads[w].configured_replicas for w in spec.writers},
        "secrets": _secrets(spec, settings, parts),
        "maintenance": settings.in_maintenance(spec.name),
        "runnerImage": parts.runner_image,
        "deploy": parts.deploy,
        "pitr": parts.pitr,
    }


def _database(spec: AppSpec, parts: OpsParts) -> dict[str, Any]:
    pg = spec.postgres
    db_secret = parts.secrets["db-password"]
    database: dict[str, Any] = {
        "host": parts.db.host,
        "port": parts.db.port,
        "name": pg.database,
        "user": pg.user,
        "password": db_secret.current,
        "serverMajor": pg.server_major,
        "migrations": pg.migrations,
        "poolSize": parts.pool_size,
    }
    if getattr(db_secret, "pending", None) is not None:
        database["pendingPassword"] = db_secret.pending
    return database


def _objects(spec: AppSpec, parts: OpsParts) -> dict[str, Any] | None:
    if not spec.objects:
        return None
    return {
        "bucket": parts.objects_bucket.bucket if parts.objects_bucket else spec.objects.bucket,
        "endpoint": parts.minio.endpoint if parts.minio else None,
    }


def _schedules(settings: Settings) -> dict[str, Any]:
    """How often each backup part and the drill run, and the RTO: what `status` holds them to."""
    backup = settings.backup
    return {
        "intervals": {
            "db": cron_interval_seconds(backup.schedule),
            "redis": cron_interval_seconds(backup.redis_schedule),
            "objects": cron_interval_seconds(backup.objects_schedule),
        },
        "drillSeconds": cron_interval_seconds(backup.drill_schedule),
        "rtoSeconds": backup.rto_minutes * 60,
    }


def _health(spec: AppSpec, settings: Settings, parts: OpsParts) -> dict[str, str]:
    """Each service's health endpoint as `status` reaches it: the Service's in-cluster name on
    Kubernetes (`status --where cluster`), the published port on the dev host."""
    urls = {}
    for svc in spec.services:
        if svc.dev_only:
            continue
        if settings.target == "kubernetes":
            port = svc.service_port or svc.port
            urls[svc.name] = f"http://{svc.name}.{parts.namespace}.svc:{port}{svc.health_path}"
        elif svc.dev_publish:
            urls[svc.name] = f"http://127.0.0.1:{svc.dev_publish[0]}{svc.health_path}"
    return urls


def _webhook(spec: AppSpec, settings: Settings, parts: OpsParts) -> dict[str, Any] | None:
    hook = spec.webhook
    if hook is None:
        return None
    svc = spec.service(hook.service)
    if settings.target == "kubernetes":
        host = f"{svc.name}.{spec.name}.svc.cluster.local"
        base = f"http://{host}:{svc.service_port or svc.port}"
    else:
        base = f"http://127.0.0.1:{svc.dev_publish[0] if svc.dev_publish else svc.port}"
    return {
        "url": base + hook.path,
        "path": hook.path,
        "signing": hook.signing,
        "header": hook.header,
        "secret": parts.secrets[hook.secret].current,
        "secretName": hook.secret,
        "rateLimitPerMinute": parts.rate_limit_per_minute,
        "table": hook.table,
    }


def template_var(secret_name: str) -> str:
    """Template variable of a secret: `db-password` → `db_password`."""
    return secret_name.replace("-", "_")


def _secrets(spec: AppSpec, settings: Settings, parts: OpsParts) -> dict[str, Any]:
    out = {}
    for secret in spec.secrets:
        if secret.name not in parts.secrets:
            continue
        state = settings.rotation_state(spec.name, secret.name)
        users = sorted(
            w for w, wl in parts.workloads.items() if template_var(secret.name) in wl.secret_names
        )
        if secret.name == "redis-password":
            users.append("redis")
        out[secret.name] = {
            "kind": secret.kind,
            "epoch": state.epoch if secret.kind == "generated" else None,
            "pending": state.pending,
            "rotatedAt": state.rotated_at.isoformat() if state.rotated_at else None,
            "workloads": users,
            "configKey": (
                f"opsplane:externalSecrets.{spec.name}.{secret.config_key}"
                if secret.kind == "external"
                else f"opsplane:rotation.{spec.name}.{secret.name}"
            ),
        }
    return out
