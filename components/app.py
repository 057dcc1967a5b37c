"""App: one system (QR Clone Engine, QuickBite) on one target, built from smaller components.

Order of construction follows the data: secrets → data stores → object store → workloads →
ingress → backups → alerts → (optional) cluster Job. `ops` is the output contract automation
reads (contract/ops.py, docs/ops-contract.md), built by components/ops_output.py.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pulumi
import pulumi_docker as docker

from components import manifests as m
from components import pitr as pitr_access
from components.alerting.alert_rules import AlertRules
from components.alerting.model import ScrapeTarget
from components.alerting.rules import AlertParams, build_rule_groups
from components.backup_plan import BackupPlan
from components.catalog.spec import AppSpec, SecretSpec, ServiceSpec
from components.config import PLACEHOLDER_PREFIX, Settings, cron_interval_seconds
from components.context import AppContext
from components.datastore import Datastore, postgres_shape, redis_shape
from components.k8s import declare
from components.migration import Migration
from components.object_store import MinioStore, S3Bucket
from components.ops_output import OpsParts, build_ops, template_var
from components.rotating_secret import RotatingSecret
from components.task_job import REDIS_DATA_MOUNT, DataVolume, TaskJob
from components.workload import Workload

OPS_RUNNER_COMPONENTS = ["backup-db", "backup-redis", "backup-objects", "restore-drill", "task"]


var = template_var  # `db-password` → `db_password`


class App(pulumi.ComponentResource):
    ops: dict[str, Any]
    cluster_job: pulumi.Output[dict[str, Any]] | None

    def __init__(
        self,
        name: str,
        *,
        spec: AppSpec,
        settings: Settings,
        runner_image: pulumi.Input[str],
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("opsplane:index:App", name, None, opts)
        self._child = pulumi.ResourceOptions(parent=self)
        self.spec, self.settings = spec, settings
        self.app_settings = settings.apps[spec.name]
        namespace, network = self._declare_boundary(name)
        secrets = self._declare_secrets(name)
        values, secret_values = self._template_values(secrets)
        ctx = AppContext(
            spec=spec,
            settings=settings,
            app_settings=self.app_settings,
            namespace=namespace,
            network=network,
            values=values,
            secret_values=secret_values,
            runner_image=runner_image,
        )
        self.ctx = ctx
        pitr = self._pitr_db(name, secrets)
        db = Datastore(
            f"{name}-db",
            ctx=ctx,
            shape=postgres_shape(ctx),
            password=secrets["db-password"].current,
            pitr=pitr,
            opts=self._child,
        )
        cache = Datastore(
            f"{name}-redis",
            ctx=ctx,
            shape=redis_shape(ctx),
            password=secrets["redis-password"].current,
            stopped=settings.redis_stopped(spec.name),
            opts=self._child,
        )
        objects_env, objects_secret_env, objects_bucket, minio = self._declare_objects(
            name, secrets
        )
        self.migration = Migration(f"{name}-migration", ctx=ctx, after=[db], opts=self._child)
        self.workloads = self._declare_workloads(name, objects_env, objects_secret_env)
        if ctx.kubernetes:
            self._declare_ingress(name)
            backup_bucket = self._backup_bucket_name()
            self.backup = BackupPlan(
                f"{name}-backup",
                ctx=ctx,
                bucket_name=backup_bucket,
                database_url=ctx.render(
                    "postgresql://{db_user}:{db_password}@{db_host}:{db_port}/{db_name}"
                ),
                redis_url=ctx.render("redis://:{redis_password}@{redis_host}:{redis_port}/0"),
                webhook_secret=secrets[spec.webhook.secret].current if spec.webhook else None,
                objects_bucket=objects_bucket,
                objects_bucket_name=self._global_bucket(spec.objects.bucket)
                if spec.objects
                else None,
                opts=self._child,
            )
            pitr_access.declare_access(
                name, ctx=ctx, bucket=self.backup.bucket, runner_role_arn=self.backup.role_arn,
                opts=self._child,
            )  # fmt: skip
            backup_info: dict[str, Any] = {
                "bucket": self.backup.bucket,
                "prefix": settings.backup.prefix,
                "endpoint": None,
                "region": settings.aws_region,
            }
        else:
            backup_info = {
                "bucket": f"{spec.name}-backups",
                "prefix": settings.backup.prefix,
                "endpoint": minio.endpoint if minio else None,
                "region": settings.aws_region,
            }
        self.alerts = self._declare_alerts(name)
        self.cluster_job = self._declare_cluster_job(name, backup_info, cache)
        self.ops = build_ops(
            spec,
            settings,
            OpsParts(
                db=db,
                cache=cache,
                secrets=secrets,
                backup=backup_info,
                objects_bucket=objects_bucket,
                minio=minio,
                workloads=self.workloads,
                namespace=ctx.namespace,
                network=ctx.network,
                runner_image=ctx.runner_image,
                rate_limit_per_minute=self.rate_limit_per_minute(),
                deploy=self._deploy_ops(),
                pitr=pitr_access.ops_entry(ctx),
                pool_size=self._pool_connections(),
            ),
        )
        self.register_outputs({"ops": self.ops})

    # --- boundary -------------------------------------------------------------------------------

    @property
    def kubernetes(self) -> bool:
        return self.settings.target == "kubernetes"

    def _declare_boundary(self, name: str) -> tuple[str | None, pulumi.Input[str] | None]:
        """The app's namespace (prod) or Docker network (dev), declared first."""
        app = self.spec.name
        if self.kubernetes:
            ns = declare(f"{name}-namespace", m.namespace(app, app), self._child)
            self._child = pulumi.ResourceOptions(parent=self, depends_on=[ns])
            declare(f"{name}-default-deny", m.default_deny(app, app), self._child)
            declare(f"{name}-allow-dns", m.allow_dns_and_app_egress(app, app), self._child)
            callers = [s.name for s in self.spec.services if s.secret_env or s.uses_objects]
            declare(
                f"{name}-allow-egress",
                m.allow_https_egress(app, app, callers + OPS_RUNNER_COMPONENTS),
                self._child,
            )
            declare(
                f"{name}-allow-pushgateway",
                m.allow_pushgateway_egress(app, app, OPS_RUNNER_COMPONENTS),
                self._child,
            )
            return app, None
        network = docker.Network(f"{name}-network", name=app, driver="bridge", opts=self._child)
        return None, network.name

    # --- secrets --------------------------------------------------------------------------------

    def _declare_secrets(self, name: str) -> dict[str, RotatingSecret | _External]:
        out: dict[str, RotatingSecret | _External] = {}
        for secret in self.spec.secrets:
            if secret.dev_only and self.kubernetes:
                continue
            if secret.kind == "generated":
                state = self.settings.rotation_state(self.spec.name, secret.name)
                value: RotatingSecret | _External = RotatingSecret(
                    f"{name}-{secret.name}", spec=secret, state=state, opts=self._child
                )
            else:
                value = _External(self._external_value(secret))
            out[secret.name] = value
        return out

    def _template_values(
        self, secrets: dict[str, RotatingSecret | _External]
    ) -> tuple[dict[str, pulumi.Input[Any]], frozenset[str]]:
        """The values env templates use: every secret (and, while its grace lasts, its previous
        value), then the stores' connection details; and which of them are secret."""
        values: dict[str, pulumi.Input[Any]] = {}
        for secret in self.spec.secrets:
            value = secrets.get(secret.name)
            if value is None:
                continue
            values[var(secret.name)] = value.current
            if secret.keep_previous:
                values[f"{var(secret.name)}_previous"] = self._previous_in_grace(secret, value)
        secret_values = frozenset(values)
        return {**values, **self._connection_values()}, secret_values

    def _external_value(self, secret: SecretSpec) -> pulumi.Output[str]:
        given = self.settings.external_secrets.get(self.spec.name, {})
        key = secret.config_key or secret.name
        value = given.get(key) or f"{PLACEHOLDER_PREFIX}{self.spec.name}-{key}"
        return pulumi.Output.secret(value)

    def _previous_in_grace(
        self, secret: SecretSpec, value: RotatingSecret | _External
    ) -> pulumi.Input[str]:
        """The previous value while the grace period after the last rotation lasts, else ""."""
        state = self.settings.rotation_state(self.spec.name, secret.name)
        previous = getattr(value, "previous", None)
        grace = timedelta(seconds=self.app_settings.secret_grace_seconds)
        rotated_at = state.rotated_at
        if previous is None or rotated_at is None:
            return pulumi.Output.secret("")
        if rotated_at.tzinfo is None:
            rotated_at = rotated_at.replace(tzinfo=UTC)
        return previous if datetime.now(UTC) < rotated_at + grace else pulumi.Output.secret("")

    # --- stores ---------------------------------------------------------------------------------

    def _connection_values(self) -> dict[str, pulumi.Input[Any]]:
        pg = self.spec.postgres
        return dict(
            db_host="db",  # the Service (prod) or network alias (dev) inside the app boundary
            db_port=pg.port,
            db_name=pg.database,
            db_user=pg.user,
            redis_host="redis",
            redis_port=self.spec.redis.port,
        )

    def _declare_objects(
        self, name: str, secrets: dict[str, Any]
    ) -> tuple[dict[str, str], dict[str, pulumi.Input[str]], S3Bucket | None, MinioStore | None]:
        spec, ctx = self.spec.objects, self.ctx
        if ctx.kubernetes:
            if spec is None:
                return {}, {}, None, None
            bucket = S3Bucket(
                f"{name}-objects", bucket_name=self._global_bucket(spec.bucket), opts=self._child
            )
            return {"S3_BUCKET": self._global_bucket(spec.bucket)}, {}, bucket, None
        buckets = [spec.bucket] if spec else []
        minio = MinioStore(
            f"{name}-minio",
            ctx=ctx,
            buckets=[*buckets, f"{self.spec.name}-backups"],
            password=secrets["minio-password"].current,
            opts=self._child,
        )
        if spec is None:
            return {}, {}, None, minio
        env = {"S3_BUCKET": spec.bucket, "S3_ENDPOINT": "http://minio:9000"}
        secret_env = {
            "S3_ACCESS_KEY": pulumi.Output.secret(minio.access_key),
            "S3_SECRET_KEY": secrets["minio-password"].current,
        }
        return env, secret_env, None, minio

    def _pitr_db(self, name: str, secrets: dict[str, Any]) -> Any:
        """components/pitr.py: what WAL archiving adds to the database (None when it is off)."""
        ctx = self.ctx
        bucket = self._backup_bucket_name() if ctx.kubernetes else f"{self.spec.name}-backups"
        minio = secrets.get("minio-password")
        return pitr_access.pitr_db(
            name, ctx=ctx, bucket=bucket, minio_password=minio.current if minio else None,
            opts=self._child,
        )  # fmt: skip

    def _global_bucket(self, bucket: str) -> str:
        return f"opsplane-{self.settings.stack}-{bucket}"

    def _backup_bucket_name(self) -> str:
        base = self.settings.backup.bucket or f"opsplane-{self.settings.stack}-backups"
        return f"{base}-{self.spec.name}"

    # --- workloads ------------------------------------------------------------------------------

    def _declare_workloads(
        self,
        name: str,
        objects_env: dict[str, str],
        objects_secret_env: dict[str, pulumi.Input[str]],
    ) -> dict[str, Workload]:
        services = list(self.spec.services)
        if self.spec.mail_dev and not self.ctx.kubernetes:
            services.append(self.spec.mail_dev)
        out = {}
        for svc in services:
            env = {**(self._quota_env() if svc.quota_env else {})}
            if svc.cors_env:
                env[svc.cors_env] = self._cors_origins()
            secret_env: dict[str, pulumi.Input[str]] = {}
            uses: tuple[str, ...] = ()
            if svc.uses_objects:
                env.update(objects_env)
                secret_env.update(objects_secret_env)
                uses = (var("minio-password"),) if objects_secret_env else ()
            out[svc.name] = Workload(
                f"{name}-{svc.name}",
                ctx=self.ctx,
                service=svc,
                extra_env=env,
                extra_secret_env=secret_env,
                extra_secret_names=uses,
                migration=None if svc.dev_only else self.migration,
                opts=self._child,
            )
        return out

    def _quota_env(self) -> dict[str, str]:
        """The QR runbook's quota tuning as environment (config overrides runbook defaults)."""
        defaults, given = self.spec.quotas, self.ctx.app_settings.quotas
        if defaults is None:
            return {}

        def pick(attr: str) -> Any:
            value = getattr(given, attr)
            return getattr(defaults, attr) if value is None else value

        cache_ttl = {**defaults.cache_ttl, **given.cache_ttl}
        env = {
            "SQLALCHEMY_POOL_SIZE": str(pick("pool_size")),
            "SQLALCHEMY_MAX_OVERFLOW": str(pick("max_overflow")),
            "SQLALCHEMY_POOL_TIMEOUT": str(pick("pool_timeout")),
            "SQLALCHEMY_POOL_RECYCLE": str(pick("pool_recycle")),
            "REDIS_MAX_CONNECTIONS": str(pick("redis_max_connections")),
            "WEB_CONCURRENCY": str(pick("workers")),
            "RATE_LIMITS": json.dumps(self._rate_limits(), sort_keys=True),
        }
        env.update({f"CACHE_TTL_{k.upper()}": str(v) for k, v in sorted(cache_ttl.items())})
        return {k: v.replace("{", "{{").replace("}", "}}") for k, v in env.items()}

    def _pool_connections(self) -> int | None:
        """Connections the app's pools hold at most (overflow aside): `quotas.poolSize` per process
        x `workers` per replica x replicas (the HPA's maximum on Kubernetes) of each service that
        gets the quota env; None: the app declares no pool (no `quotas` in its catalog entry)."""
        defaults, given = self.spec.quotas, self.ctx.app_settings.quotas
        if defaults is None:
            return None
        per_process = given.pool_size or defaults.pool_size
        workers = given.workers or defaults.workers
        ctx, total = self.ctx, 0
        for svc in self.spec.services:
            if not svc.quota_env or (svc.dev_only and ctx.kubernetes):
                continue
            replicas = ctx.service_settings_value(svc, "replicas", svc.replicas)
            if ctx.kubernetes:
                replicas = max(
                    replicas, ctx.service_settings_value(svc, "max_replicas", svc.max_replicas)
                )
            total += per_process * workers * replicas
        return total or None

    def _rate_limits(self) -> dict[str, str]:
        """Route rate limits: the runbook's (catalog) overridden route by route from config."""
        defaults = self.spec.quotas.rate_limits if self.spec.quotas else {}
        return {**defaults, **self.ctx.app_settings.quotas.rate_limits}

    def rate_limit_per_minute(self) -> int:
        hook = self.spec.webhook
        if hook is None:
            return 0
        limit = self._rate_limits().get(hook.rate_limit_route or "")
        if not limit:
            return hook.default_rate_per_minute
        count, unit = limit.split("/")
        per_minute = {"second": 60.0, "minute": 1.0, "hour": 1 / 60}[unit] * int(count)
        return max(int(per_minute), 1)

    def _host(self, svc: ServiceSpec) -> str:
        domain = self.ctx.app_settings.domain or f"{self.spec.name}.example.com"
        return f"{svc.ingress_host}.{domain}" if svc.ingress_host else domain

    def _admin_exposed(self) -> bool:
        return bool(self.ctx.app_settings.admin.allow_cidrs)

    def _cors_origins(self) -> str:
        """Configured origins, else the app's own browser-facing hosts (its non-API pages)."""
        given = self.ctx.app_settings.cors_origins
        if given is not None:
            return ",".join(given)
        exposed = self._admin_exposed() or not self.ctx.kubernetes  # dev publishes every page
        pages = [
            s
            for s in self.spec.services
            if s.ingress_host is not None and not s.cors_env and (exposed or not s.admin)
        ]
        if not self.ctx.kubernetes:
            return ",".join(f"http://localhost:{p}" for s in pages for p in s.dev_publish)
        return ",".join(f"https://{self._host(s)}" for s in pages)

    def _declare_ingress(self, name: str) -> None:
        app = self.spec.name
        headers = f"{app}-security-headers"
        declare(f"{name}-security-headers", m.security_headers(headers, app, app), self._child)
        base = {
            "cert-manager.io/cluster-issuer": "letsencrypt",
            m.CUSTOM_HEADERS_ANNOTATION: f"{app}/{headers}",
        }
        public = [s for s in self.spec.services if s.ingress_host is not None and not s.admin]
        admin = [s for s in self.spec.services if s.ingress_host is not None and s.admin]
        if public:
            notes = dict(base)
            for svc in public:
                notes.update(svc.ingress_annotations)
            self._ingress(f"{name}-ingress", app, public, notes)
        access = self.ctx.app_settings.admin
        if admin and access.allow_cidrs:  # no allowlist: the admin surface has no Ingress
            notes = {
                **base,
                **m.admin_access(access.allow_cidrs, access.auth_url, access.auth_signin),
            }
            self._ingress(f"{name}-admin-ingress", f"{app}-admin", admin, notes)

    def _ingress(
        self, resource: str, name: str, services: list[ServiceSpec], notes: dict[str, str]
    ) -> None:
        rules = [(self._host(s), s.name, s.service_port or s.port) for s in services]
        app = self.spec.name
        declare(
            resource,
            m.ingress(name=name, ns=app, app=app, rules=rules, annotations=notes),
            self._child,
        )

    # --- alerts and jobs ------------------------------------------------------------------------

    def _declare_alerts(self, name: str) -> AlertRules:
        settings, spec = self.settings, self.spec
        backup = settings.backup
        pool = self.ctx.app_settings.quotas.pool_size or (
            spec.quotas.pool_size if spec.quotas else 20
        )
        params = AlertParams(
            namespace=spec.name,
            runbook_base_url=settings.alerts.runbook_base_url,
            pvc_regex=f"data-{spec.name}-(db|redis)-.*",
            db_pool_size=pool,
            backup_interval_seconds=cron_interval_seconds(backup.schedule),
            backup_margin_seconds=backup.margin_minutes * 60,
            backup_parts=("db", "redis", "objects") if spec.objects else ("db", "redis"),
            drill_interval_seconds=cron_interval_seconds(backup.drill_schedule),
            slo_target=settings.alerts.slo_target,
            thresholds=spec.thresholds,
            kubernetes_alerts=self.ctx.kubernetes,
            pitr=settings.pitr.enabled(spec.name),
        )
        groups = build_rule_groups(spec.name, spec.metrics, params)
        return AlertRules(
            f"{name}-alerts",
            groups=groups,
            target=settings.target,
            namespace=spec.name if self.ctx.kubernetes else None,
            scrape=self._scrape_targets(),
            receivers={str(k): v for k, v in settings.alerts.receivers.items()},
            rule_labels=dict(settings.alerts.rule_labels),
            labels=m.labels(spec.name, "alerts"),
            network=self.ctx.network,
            host_port=None if self.ctx.kubernetes else spec.dev_prometheus_port,
            opts=self._child,
        )

    def _scrape_targets(self) -> list[ScrapeTarget]:
        app = self.spec.name
        services = [
            ScrapeTarget(
                name=f"{app}-{svc.name}",
                port=svc.port,
                port_name="http",
                path=svc.metrics_path,
                host=svc.name,
                selector=m.selector(app, svc.name),
            )
            for svc in self.spec.services
            if svc.metrics_path
        ]
        exporters = [
            ScrapeTarget(
                name=shape.exporter_job(app),
                port=shape.exporter_port,
                port_name="metrics",
                path="/metrics",
                host=shape.exporter_job(app),
                selector={"opsplane.dev/metrics": shape.exporter_job(app)},
            )
            for shape in (postgres_shape(self.ctx), redis_shape(self.ctx))
        ]
        return services + exporters

    def _declare_cluster_job(
        self, name: str, backup_info: dict[str, Any], cache: Datastore
    ) -> pulumi.Output[dict[str, Any]] | None:
        request = self.settings.cluster_job
        if request is None or request.app != self.spec.name or not self.ctx.kubernetes:
            return None
        volume = None
        if self.settings.redis_stopped(self.spec.name):
            assert cache.statefulset is not None and cache.claim is not None  # noqa: S101 type narrowing: a Kubernetes Datastore has both
            volume = DataVolume(
                claim=cache.claim,
                mount_path=REDIS_DATA_MOUNT,
                owner=cache.shape.run_as_user,
                flag="--redis-data-dir",
                stopped=cache.statefulset,
            )
        job = TaskJob(
            f"{name}-task",
            ctx=self.ctx,
            request=request,
            report_bucket=backup_info["bucket"],
            report_key=f"{self.settings.backup.prefix}/{self.spec.name}/reports/{request.id}.json",
            secret_name=self.backup.secret_name,
            secret_keys=self.backup.secret_keys,
            service_account=self.backup.service_account,
            volume=volume,
            opts=self._child,
        )
        return job.result

    def _deploy_ops(self) -> dict[str, Any]:
        """What `deploy` reads: the images running, the migration step, the soak settings."""
        settings = self.ctx.app_settings.deploy
        return {
            "images": {s.name: self.ctx.service_image(s) for s in self.spec.services},
            "migration": self.migration.ops,
            "soakSeconds": settings.soak_seconds,
            "compatibleHeads": list(settings.compatible_heads),
        }


class _External:
    """An outside secret (Stripe, Auth0, Razorpay) from `pulumi config set --secret`."""

    def __init__(self, value: pulumi.Output[str]) -> None:
        self.current = value
        self.previous = None
        self.pending = None
