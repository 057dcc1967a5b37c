"""The shape of a system in the catalog: plain, frozen data, no Pulumi resources.

A system (an "app") is services, data stores, secrets, a webhook and metrics. Components turn an
`AppSpec` plus typed settings into resources for a target; the catalog never knows the target.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from components.alerting.model import Metrics, Thresholds

Signing = Literal["stripe", "hmac-sha256"]
Migrations = Literal["alembic", "flyway"]


@dataclass(frozen=True)
class Resources:
    cpu_request: str = "100m"
    memory_request: str = "128Mi"
    cpu_limit: str = "500m"
    memory_limit: str = "512Mi"


@dataclass(frozen=True)
class ServiceSpec:
    """One stateless service (a Deployment on Kubernetes, a container on Docker).

    `env` is plain configuration; `secret_env` maps an env var to a template over connection
    values and secrets (`{db_password}`, `{redis_url}`, `{jwt_secret}`, ...) and always travels
    in a Kubernetes Secret / a secret output, never in a ConfigMap or the render.
    """

    name: str
    default_image: str | None  # None: the image must come from config
    port: int
    health_path: str
    service_port: int | None = None  # the Service's port when it differs from the container's
    writer: bool = False  # stopped during restore (maintenance)
    dev_only: bool = False
    dev_publish: tuple[int, ...] = ()  # host ports published on the dev stack (as the runbooks do)
    ingress_host: str | None = None  # None: no Ingress; "": the app's domain; "api": api.<domain>
    ingress_annotations: dict[str, str] = field(default_factory=dict)
    admin: bool = False  # an admin surface: own Ingress, only from `apps.<app>.admin.allowCidrs`
    cors_env: str | None = None  # env var that gets the allowed CORS origins (comma-separated)
    read_only_root: bool = True
    run_as_user: int = 10001
    writable_paths: tuple[str, ...] = ("/tmp",)  # noqa: S108 a container path (emptyDir)
    command: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)
    secret_env: dict[str, str] = field(default_factory=dict)
    quota_env: bool = False  # receives the quota tuning values as env
    uses_objects: bool = False  # gets the app's object-store bucket and credentials
    replicas: int = 2
    min_replicas: int = 2
    max_replicas: int = 4
    resources: Resources = field(default_factory=Resources)
    metrics_path: str | None = None


@dataclass(frozen=True)
class PostgresSpec:
    database: str
    user: str
    default_image: str = "postgres:16.4-alpine"
    server_major: int = 16
    storage: str = "20Gi"
    migrations: Migrations | None = None
    port: int = 5432
    dev_host_port: int = 5432  # published on 127.0.0.1 on the dev stack, for automation


@dataclass(frozen=True)
class RedisSpec:
    default_image: str = "redis:7.2-alpine"
    storage: str = "2Gi"
    port: int = 6379
    dev_host_port: int = 6379


@dataclass(frozen=True)
class ObjectStoreSpec:
    """The app's own bucket (QR `qr-exports`); MinIO on dev, S3 on prod."""

    bucket: str
    dev_image: str = "minio/minio:RELEASE.2024-10-13T13-34-11Z"
    dev_port: int = 9000
    dev_console_port: int = 9001


@dataclass(frozen=True)
class SecretSpec:
    """A secret the app uses. `generated` ones opsplane owns (pulumi-random, rotated by epoch);
    `external` ones come from `pulumi config set --secret opsplane:externalSecrets.<app>.<key>`."""

    name: str
    kind: Literal["generated", "external"]
    length: int = 32
    special: bool = False
    config_key: str | None = None  # external: key under opsplane:externalSecrets.<app>
    keep_previous: bool = False  # exposes `<name>_previous` for a grace period (JWT)
    dev_only: bool = False  # only the dev stack needs it (MinIO)


@dataclass(frozen=True)
class WebhookSpec:
    service: str
    path: str
    signing: Signing
    header: str
    secret: str  # a SecretSpec name
    rate_limit_route: str | None = None  # quota rate-limit key that bounds replay
    default_rate_per_minute: int = 30
    table: str = "webhook_logs"


@dataclass(frozen=True)
class QuotaDefaults:
    """Quota tuning from the QR runbook; each value reaches the API as environment."""

    pool_size: int = 20
    max_overflow: int = 40
    pool_timeout: int = 30
    pool_recycle: int = 3600
    redis_max_connections: int = 50
    rate_limits: dict[str, str] = field(default_factory=dict)
    cache_ttl: dict[str, int] = field(default_factory=dict)
    workers: int = 4


@dataclass(frozen=True)
class MigrationSpec:
    """How a release migrates the schema before any pod changes (docs/deploy.md).

    The migration runs `command` in the image of `service` (or the configured
    `deploy.migrationImage`) as a Job on prod / a one-shot container on dev, named after the
    image's tag; the app's services wait for it. `env`/`secret_env` are templates like a
    service's. `table` holds the schema head `deploy` compares before and after.
    """

    service: str
    command: tuple[str, ...]
    table: str  # alembic_version | flyway_schema_history
    env: dict[str, str] = field(default_factory=dict)
    secret_env: dict[str, str] = field(default_factory=dict)
    job_by_default: bool = True  # False: the service migrates at start (QuickBite's Flyway)


@dataclass(frozen=True)
class AppSpec:
    name: str
    title: str
    services: tuple[ServiceSpec, ...]
    postgres: PostgresSpec
    redis: RedisSpec
    secrets: tuple[SecretSpec, ...]
    metrics: Metrics
    thresholds: Thresholds = field(default_factory=Thresholds)
    objects: ObjectStoreSpec | None = None
    webhook: WebhookSpec | None = None
    quotas: QuotaDefaults | None = None
    mail_dev: ServiceSpec | None = None  # MailHog on dev only
    dev_minio_port: int = 9000  # dev MinIO (app bucket + backups) on 127.0.0.1
    dev_prometheus_port: int = 9090  # dev Prometheus with the app's alert rules on 127.0.0.1
    migration: MigrationSpec | None = None

    def service(self, name: str) -> ServiceSpec:
        return next(s for s in self.services if s.name == name)

    @property
    def writers(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.services if s.writer)

    def secret(self, name: str) -> SecretSpec:
        return next(s for s in self.secrets if s.name == name)
