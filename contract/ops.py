"""The `ops` stack output: one object per app, the only thing automation reads from a stack.

The program builds it (components/ops_output.py), automation reads it (`app_ops`); documented
field by field in docs/ops-contract.md. Values are plain JSON here, as automation sees them
(`password`-like fields are Pulumi secrets on the stack and unwrapped by the adapter).
"""

from __future__ import annotations

from typing import Any, Literal, NotRequired, TypedDict

Signing = Literal["stripe", "hmac-sha256"]
OPS_OUTPUT = "ops"


class DatabaseOps(TypedDict):
    host: str
    port: int
    name: str
    user: str
    password: str
    serverMajor: int
    migrations: str
    # connections the app's pools hold at most (quotas.poolSize x workers x replicas, the HPA's
    # maximum on Kubernetes); None: the app declares no pool. `status` compares connections to it.
    poolSize: int | None
    pendingPassword: NotRequired[str]  # only while a db-password rotation is pending


class CacheOps(TypedDict):
    host: str
    port: int
    password: str


class ObjectsOps(TypedDict):
    bucket: str
    endpoint: str | None


class BackupSchedules(TypedDict):
    intervals: dict[str, int]  # part (db, redis, objects) -> seconds between runs
    drillSeconds: int  # between restore drills
    rtoSeconds: int  # the drill's restore time must stay under it


class BackupOps(TypedDict):
    bucket: str
    prefix: str
    endpoint: str | None  # dev: MinIO; prod: None (AWS S3)
    region: str
    schedules: BackupSchedules


class WebhookOps(TypedDict):
    url: str
    path: str
    signing: Signing
    header: str
    secret: str
    secretName: str
    rateLimitPerMinute: int
    table: str


class SecretOps(TypedDict):
    kind: Literal["generated", "external"]
    epoch: int | None  # None for external secrets
    pending: bool
    rotatedAt: str | None
    workloads: list[str]
    configKey: str


class MigrationOps(TypedDict):
    table: str | None  # alembic_version | flyway_schema_history
    service: str | None
    command: list[str]
    image: str | None
    job: str | None  # the migration Job's name (prod) / container (dev); None: no Job
    atStart: bool  # the service migrates when it starts (QuickBite's Flyway default)


class DeployOps(TypedDict):
    images: dict[str, str]
    migration: MigrationOps
    soakSeconds: int
    compatibleHeads: list[str]


class PitrOps(TypedDict):
    enabled: bool  # the server archives WAL (opsplane:pitr.apps)
    archiveTimeout: int  # seconds
    baseBackupSchedule: str  # cron
    root: str  # key prefix of the app's WAL archive and base backups (contract/wal_layout.py)


class AppOps(TypedDict):
    app: str
    stack: str
    target: Literal["docker", "kubernetes"]
    namespace: str | None  # kubernetes
    network: str | None  # docker
    database: DatabaseOps
    cache: CacheOps
    objects: ObjectsOps | None
    backup: BackupOps
    webhook: WebhookOps | None
    writers: list[str]
    replicas: dict[str, int]
    secrets: dict[str, SecretOps]
    maintenance: bool
    runnerImage: str
    pitr: PitrOps
    health: dict[str, str]  # service -> health endpoint URL (in-cluster on Kubernetes)
    deploy: DeployOps


def fields(model: type[Any]) -> frozenset[str]:
    """Every key of one of the TypedDicts above (required and optional)."""
    return frozenset(model.__annotations__)
