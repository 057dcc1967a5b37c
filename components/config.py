"""Stack config (`opsplane:*`) parsed once into typed, validated settings.

Every problem is reported as one line naming the key path and what is allowed, e.g.
`opsplane:apps.qr.services.api.minReplicas: must be <= maxReplicas (4), got 6`.
Documented key by key in docs/config.md.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel

from components.catalog import CATALOG
from components.catalog.spec import AppSpec
from contract import deploy as deploy_contract
from contract import wal_layout as wl
from contract.cluster_job import ClusterJobRequest
from contract.images import check_image
from contract.maintenance import Maintenance, parse_maintenance
from contract.rotation import RotationState, expand_shorthand

NAMESPACE = "opsplane"
PLACEHOLDER_PREFIX = "PLACEHOLDER-"  # dev stand-ins for outside secrets; never valid in prod


class ConfigError(Exception):
    """Bad stack config: one line that names the key path and what is allowed."""


# --- value types --------------------------------------------------------------------------------

_CRON_FIELDS = (("minute", 0, 59), ("hour", 0, 23), ("day of month", 1, 31), ("month", 1, 12),
                ("day of week", 0, 7))  # fmt: skip
_CRON_ITEM = re.compile(r"^(\*|\d+(-\d+)?)(/\d+)?$")


def check_cron(value: str) -> str:
    """A five-field cron schedule as Kubernetes CronJobs accept it."""
    fields = value.split()
    if len(fields) != 5:
        raise ValueError(f"must be a 5-field cron schedule like '0 2 * * *', got {value!r}")
    for text, (label, low, high) in zip(fields, _CRON_FIELDS, strict=True):
        for item in text.split(","):
            if not _CRON_ITEM.match(item):
                raise ValueError(f"invalid {label} field {text!r} in cron schedule {value!r}")
            numbers = [int(n) for n in re.findall(r"\d+", item.split("/")[0])]
            if any(not low <= n <= high for n in numbers):
                raise ValueError(f"{label} must be within {low}-{high} in cron schedule {value!r}")
    return value


# Docker reference grammar, simplified: [registry[:port]/]path[:tag][@sha256:digest]
def check_rate_limit(value: str) -> str:
    if not re.match(r"^[1-9]\d*/(second|minute|hour)$", value):
        raise ValueError(f"must look like '30/minute' (N/second|minute|hour), got {value!r}")
    return value


def check_cidr(value: str) -> str:
    try:
        ipaddress.ip_network(value, strict=True)
    except ValueError as exc:
        raise ValueError(f"must be a CIDR like '203.0.113.0/24' ({exc}), got {value!r}") from None
    return value


_ORIGIN = re.compile(r"^https?://[a-z0-9]([a-z0-9.-]*[a-z0-9])?(:\d{1,5})?$")


def check_origin(value: str) -> str:
    if not _ORIGIN.match(value):
        raise ValueError(
            f"must be an origin like 'https://app.example.com' (scheme, host, optional port, "
            f"no path), got {value!r}"
        )
    return value


Cron = Annotated[str, AfterValidator(check_cron)]
Cidr = Annotated[str, AfterValidator(check_cidr)]
Origin = Annotated[str, AfterValidator(check_origin)]
Image = Annotated[str, AfterValidator(check_image)]
RateLimit = Annotated[str, AfterValidator(check_rate_limit)]
Quantity = Annotated[str, Field(pattern=r"^\d+(\.\d+)?(Ki|Mi|Gi|Ti|m)?$")]
NonNegative = Annotated[int, Field(ge=0)]
Positive = Annotated[int, Field(ge=1)]


class Model(BaseModel):
    """camelCase keys in YAML, snake_case in Python, unknown keys rejected."""

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True
    )


# --- settings -----------------------------------------------------------------------------------


class ResourceSettings(Model):
    """Vertical scaling (QuickBite runbook "Scaling"): overrides of the catalog's figures."""

    cpu_request: Quantity | None = None
    memory_request: Quantity | None = None
    cpu_limit: Quantity | None = None
    memory_limit: Quantity | None = None


class ServiceSettings(Model):
    image: Image | None = None
    replicas: NonNegative | None = None
    min_replicas: NonNegative | None = None
    max_replicas: Positive | None = None
    cpu_target_percent: Annotated[int, Field(ge=1, le=100)] = 70
    resources: ResourceSettings = Field(default_factory=ResourceSettings)


class QuotaSettings(Model):
    """The QR runbook's quota tuning; omitted values take the runbook's figures."""

    pool_size: Positive | None = None
    max_overflow: NonNegative | None = None
    pool_timeout: Positive | None = None
    pool_recycle: Positive | None = None
    redis_max_connections: Positive | None = None
    rate_limits: dict[str, RateLimit] = Field(default_factory=dict)
    cache_ttl: dict[str, NonNegative] = Field(default_factory=dict)
    workers: Positive | None = None


class AdminAccessSettings(Model):
    """Who reaches an app's admin surface (QR admin). No CIDR: its Ingress is not declared."""

    allow_cidrs: list[Cidr] = Field(default_factory=list)
    auth_url: Annotated[str, Field(pattern=r"^https?://\S+$")] | None = None
    auth_signin: Annotated[str, Field(pattern=r"^https?://\S+$")] | None = None


class DeploySettings(Model):
    """How `deploy` ships new images (docs/deploy.md): the migration Job and the watched soak.

    `migrationJob` None takes the catalog's default (QR: yes, `alembic upgrade head`; QuickBite:
    no, the backend runs Flyway at start). `compatibleHeads`: schema heads whose migrations only
    add (expand), so images built for the previous head still run on them. `skipMigrationFor`:
    set by `deploy`/`rollback` when they go back onto a compatible head: that (older) image does
    not know the newer revision, so its migration step is not declared (the database is already
    past its head); any other image migrates as usual.
    """

    migration_job: bool | None = None
    migration_image: Image | None = None
    backoff_limit: Annotated[int, Field(ge=0, le=10)] = 0
    active_deadline_seconds: Annotated[int, Field(ge=30)] = 900
    soak_seconds: NonNegative = 60
    compatible_heads: list[str] = Field(default_factory=list)
    skip_migration_for: Image | None = None


class PostgresSettings(Model):
    """PostgreSQL parameters (`-c name=value` at start), the runbooks' troubleshooting steps as
    settings. Durations in milliseconds; 0 turns a timeout off, -1 the slow-query log."""

    log_min_duration_statement: Annotated[int, Field(ge=-1)] = 1000  # runbook: slow-query log
    idle_in_transaction_session_timeout: NonNegative = 600_000  # 10 min: locks are released
    idle_session_timeout: NonNegative = 1_800_000  # runbook: "kill idle connections > 30 min"
    max_connections: Annotated[int, Field(ge=10, le=10_000)] = 100
    stat_statements: bool = True  # preload pg_stat_statements (`status --deep` top statements)

    def server_args(self) -> list[str]:
        """`postgres -c ...` arguments (the official image's entrypoint prepends `postgres`)."""
        values: dict[str, int | str] = {
            "max_connections": self.max_connections,
            "log_min_duration_statement": self.log_min_duration_statement,
            "idle_in_transaction_session_timeout": self.idle_in_transaction_session_timeout,
            "idle_session_timeout": self.idle_session_timeout,
        }
        if self.stat_statements:
            values["shared_preload_libraries"] = "pg_stat_statements"
        return [arg for name, value in values.items() for arg in ("-c", f"{name}={value}")]


class AppSettings(Model):
    services: dict[str, ServiceSettings] = Field(default_factory=dict)
    deploy: DeploySettings = Field(default_factory=DeploySettings)
    postgres: PostgresSettings = Field(default_factory=PostgresSettings)
    postgres_image: Image | None = None
    redis_image: Image | None = None
    minio_image: Image | None = None
    database_storage: Quantity | None = None
    cache_storage: Quantity | None = None
    domain: str | None = None
    quotas: QuotaSettings = Field(default_factory=QuotaSettings)
    secret_grace_seconds: NonNegative = 3600
    admin: AdminAccessSettings = Field(default_factory=AdminAccessSettings)
    cors_origins: list[Origin] | None = None  # None: the app's own web hosts


class BackupSettings(Model):
    schedule: Cron = "0 2 * * *"
    redis_schedule: Cron = "15 */6 * * *"
    objects_schedule: Cron = "45 */12 * * *"
    drill_schedule: Cron = "0 4 * * 0"
    retention_days: Positive = 30
    noncurrent_days: Positive = 7
    bucket: str | None = None
    prefix: str = "backups"
    format: Literal["plain", "custom"] = "custom"
    margin_minutes: Positive = 60
    rto_minutes: Positive = 60  # `status`: the restore drill's restore time is held to this


Priority = Literal["P1", "P2", "P3"]


def _default_receivers() -> dict[Priority, str]:
    return {"P1": "pager", "P2": "chat", "P3": "email"}


class PitrSettings(Model):
    """Point-in-time recovery (docs/pitr.md): which apps archive WAL continuously to the backup
    bucket, how often a quiet server still ships a segment, and when base backups run."""

    apps: list[str] = Field(default_factory=list)
    archive_timeout: Annotated[int, Field(ge=1, le=3600)] = wl.DEFAULT_ARCHIVE_TIMEOUT  # RPO bound
    base_backup_schedule: Cron = "30 1 * * *"
    image: Image | None = None  # a pinned PostgreSQL+barman-cloud image skips the build

    def enabled(self, app: str) -> bool:
        return app in self.apps


class AlertSettings(Model):
    slo_target: Annotated[float, Field(gt=0.5, lt=1.0)] = 0.999
    rule_labels: dict[str, str] = Field(
        default_factory=lambda: {"release": "kube-prometheus-stack"}
    )
    receivers: dict[Priority, str] = Field(default_factory=_default_receivers)
    runbook_base_url: str = "https://github.com/opsplane/opsplane/blob/main/docs/runbook.md"
    pushgateway_url: str = "http://prometheus-pushgateway.monitoring.svc:9091"


class EksSettings(Model):
    """The cluster's OIDC provider, for IRSA roles (ops-runner access to the backup bucket)."""

    oidc_provider_arn: Annotated[str, Field(pattern=r"^arn:aws[\w-]*:iam::\d{12}:oidc-provider/.+")]
    oidc_issuer: Annotated[
        str, Field(pattern=r"^(https://)?oidc\.eks\.[\w-]+\.amazonaws\.com/id/\w+$")
    ]


class Settings(Model):
    """Everything the program needs, from `opsplane:*` config plus the stack name."""

    stack: str
    target: Literal["docker", "kubernetes"]
    apps: dict[str, AppSettings]
    backup: BackupSettings = Field(default_factory=BackupSettings)
    pitr: PitrSettings = Field(default_factory=PitrSettings)
    alerts: AlertSettings = Field(default_factory=AlertSettings)
    rotation: dict[str, dict[str, RotationState]] = Field(default_factory=dict)
    maintenance: Maintenance = Field(default_factory=list)
    external_secrets: dict[str, dict[str, str]] = Field(default_factory=dict)
    require_external_secrets: bool | None = None
    cluster_job: ClusterJobRequest | None = None
    runner_image: Image | None = None
    eks: EksSettings | None = None
    aws_region: str = "us-east-1"
    deploy_history: dict[str, list[deploy_contract.DeployRecord]] = Field(default_factory=dict)

    @field_validator("deploy_history", mode="before")
    @classmethod
    def _history(cls, value: Any) -> Any:
        """Parsed by the one model automation writes it with (contract/deploy.py)."""
        try:
            return deploy_contract.parse_history(value)
        except deploy_contract.HistoryError as exc:
            raise ValueError(f"{exc.where.lstrip('.') or 'value'}: {exc.problem}") from None

    @field_validator("apps")
    @classmethod
    def _known_apps(cls, apps: dict[str, AppSettings]) -> dict[str, AppSettings]:
        if not apps:
            raise ValueError(f"must name at least one app (known: {', '.join(sorted(CATALOG))})")
        for name in apps:
            if name not in CATALOG:
                raise ValueError(f"unknown app {name!r}; known apps: {', '.join(sorted(CATALOG))}")
        return apps

    @field_validator("maintenance", mode="before")
    @classmethod
    def _maintenance_list(cls, value: Any) -> Maintenance:
        """The list automation writes, parsed as automation parses it (contract.maintenance)."""
        return parse_maintenance(value)

    @field_validator("rotation", mode="before")
    @classmethod
    def _epoch_shorthand(cls, value: Any) -> Any:
        """`db-password: 2` is short for `db-password: {epoch: 2}` (contract.rotation)."""
        return expand_shorthand(value)

    @model_validator(mode="after")
    def _cross_checks(self) -> Settings:
        for app, app_settings in self.apps.items():
            check_app(app, CATALOG[app], app_settings, self)
        for app in self.maintenance:
            if app not in self.apps:
                raise ValueError(f"maintenance: app {app!r} is not on this stack ({self._apps()})")
        for app, secrets in self.rotation.items():
            check_rotation(app, secrets, self)
        if self.target == "kubernetes" and self.eks is None:
            raise ValueError(
                "eks: required on a kubernetes stack (oidcProviderArn, oidcIssuer of the cluster, "
                "for the ops-runner's IAM role)"
            )
        for app in self.pitr.apps:
            if app not in self.apps:
                raise ValueError(f"pitr.apps: app {app!r} is not on this stack ({self._apps()})")
        if self.cluster_job and self.cluster_job.app not in self.apps:
            raise ValueError(f"clusterJob.app: {self.cluster_job.app!r} not on this stack")
        if self.external_secrets_required:
            missing = missing_external_secrets(self)
            if missing:
                raise ValueError(
                    f"externalSecrets: missing {', '.join(missing)}; set each with "
                    f"`pulumi config set --secret --path '{NAMESPACE}:externalSecrets.<app>.<key>' "
                    "VALUE`"
                )
        return self

    def _apps(self) -> str:
        return ", ".join(sorted(self.apps))

    @property
    def external_secrets_required(self) -> bool:
        if self.require_external_secrets is not None:
            return self.require_external_secrets
        return self.target == "kubernetes"

    def rotation_state(self, app: str, secret: str) -> RotationState:
        return self.rotation.get(app, {}).get(secret, RotationState())

    def in_maintenance(self, app: str) -> bool:
        return app in self.maintenance

    def redis_stopped(self, app: str) -> bool:
        """A cluster Job restores this app's Redis: its StatefulSet runs 0 replicas meanwhile."""
        job = self.cluster_job
        return (
            self.target == "kubernetes" and job is not None and job.app == app and job.mount_redis
        )


def check_app(name: str, spec: AppSpec, app: AppSettings, settings: Settings) -> None:
    known = {s.name for s in spec.services}
    if app.admin != AdminAccessSettings() and not any(s.admin for s in spec.services):
        raise ValueError(f"apps.{name}.admin: {name} has no admin surface; remove the key")
    for service, svc in app.services.items():
        if service not in known:
            raise ValueError(
                f"apps.{name}.services: unknown service {service!r}; "
                f"{name} has: {', '.join(sorted(known))}"
            )
        low = (
            svc.min_replicas if svc.min_replicas is not None else spec.service(service).min_replicas
        )
        high = (
            svc.max_replicas if svc.max_replicas is not None else spec.service(service).max_replicas
        )
        if low > high:
            raise ValueError(
                f"apps.{name}.services.{service}.minReplicas: must be <= maxReplicas ({high}), "
                f"got {low}"
            )
    for declared in spec.services:
        if (
            declared.default_image is None
            and not app.services.get(declared.name, ServiceSettings()).image
        ):
            raise ValueError(
                f"apps.{name}.services.{declared.name}.image: required (no public default for "
                f"the app's own image); set it to a reference like "
                f"'ghcr.io/org/{declared.name}:1.0'"
            )


def check_rotation(app: str, secrets: dict[str, RotationState], settings: Settings) -> None:
    if app not in CATALOG:
        raise ValueError(f"rotation: unknown app {app!r}; known apps: {', '.join(sorted(CATALOG))}")
    generated = {s.name for s in CATALOG[app].secrets if s.kind == "generated"}
    for secret in secrets:
        if secret not in generated:
            raise ValueError(
                f"rotation.{app}.{secret}: not a generated secret of {app} "
                f"(rotatable: {', '.join(sorted(generated))})"
            )


def missing_external_secrets(settings: Settings) -> list[str]:
    missing = []
    for app in settings.apps:
        given = settings.external_secrets.get(app, {})
        for secret in CATALOG[app].secrets:
            if secret.kind != "external":
                continue
            value = given.get(secret.config_key or secret.name)
            if not value or value.startswith(PLACEHOLDER_PREFIX):
                missing.append(f"{app}.{secret.config_key}")
    return missing


def cron_interval_seconds(schedule: str) -> int:
    """How often a cron schedule fires, roughly: what "missed its schedule" alerts compare with."""
    minute, hour, dom, _, dow = schedule.split()
    if dow != "*":
        return 7 * 86_400
    if dom != "*":
        return 31 * 86_400
    if hour != "*" and "/" not in hour:
        return 86_400 // max(len(hour.split(",")), 1)
    if hour.startswith("*/"):
        return int(hour[2:]) * 3600
    if minute.startswith("*/"):
        return int(minute[2:]) * 60
    return 3600 if minute != "*" else 60


# --- parsing ------------------------------------------------------------------------------------

SECRET_CONFIG_KEYS = ("externalSecrets",)


def parse_settings(stack: str, raw: Mapping[str, Any]) -> Settings:
    """Validate raw config (`{"target": ..., "apps": {...}}`, keys without the namespace)."""
    data = {key: _decode(value) for key, value in raw.items()}
    try:
        return Settings.model_validate({"stack": stack, **data})
    except ValidationError as exc:
        raise ConfigError(format_error(exc)) from None


def _decode(value: Any) -> Any:
    """Pulumi hands structured config over as JSON text."""
    if isinstance(value, str) and value[:1] in "{[":
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    return value


def format_error(exc: ValidationError) -> str:
    """The first error as `opsplane:<key.path>: <what is allowed>` (camelCase, as in YAML)."""
    error = exc.errors(include_url=False)[0]
    loc = [str(p) for p in error["loc"] if not str(p).startswith(("function-after", "tagged"))]
    message = error["msg"].removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":
        message = "unknown key (see docs/config.md for the allowed keys)"
    elif error["type"] == "missing":
        message = "required (see docs/config.md)"
    if not loc:  # a model-level check already names its key path
        return f"{NAMESPACE}:{message}"
    path = ".".join(to_camel(p) if p.isidentifier() and "_" in p else p for p in loc)
    got = error.get("input")
    shown = (
        f" (got {got!r})"
        if error["type"] not in ("missing", "extra_forbidden", "value_error")
        and not isinstance(got, dict | list)
        and loc[0] not in SECRET_CONFIG_KEYS
        else ""
    )
    return f"{NAMESPACE}:{path}: {message}{shown}"


def load_from_pulumi() -> Settings:
    """Read every `opsplane:*` key of the current stack. Only `__main__`/program calls this."""
    import pulumi
    from pulumi.runtime import config as runtime_config

    raw: dict[str, Any] = {}
    for key in known_config_keys():
        value = runtime_config.get_config(f"{NAMESPACE}:{key}")
        if value is not None:
            raw[key] = value
    region = runtime_config.get_config("aws:region")
    if region and "awsRegion" not in raw:
        raw["awsRegion"] = region
    # `pulumi up` hands config over in PULUMI_CONFIG; mocks and tests set it in-process.
    present = set(runtime_config.CONFIG.get()) | set(runtime_config.get_config_env() or {})
    unknown = sorted(
        k.split(":", 1)[1]
        for k in present
        if k.startswith(f"{NAMESPACE}:") and k.split(":", 1)[1] not in known_config_keys()
    )
    if unknown:
        raise ConfigError(
            f"{NAMESPACE}:{unknown[0]}: unknown key; allowed: {', '.join(known_config_keys())}"
        )
    return parse_settings(pulumi.get_stack(), raw)


def known_config_keys() -> list[str]:
    return [f.alias or name for name, f in Settings.model_fields.items() if name != "stack"]
