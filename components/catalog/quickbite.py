"""QuickBite (runbook 001): Spring Boot backend, nginx SPA with WebSockets, PostgreSQL, Redis."""

from components.alerting.model import Metrics, Thresholds
from components.catalog.spec import (
    AppSpec,
    MigrationSpec,
    PostgresSpec,
    RedisSpec,
    Resources,
    SecretSpec,
    ServiceSpec,
    WebhookSpec,
)

APP = AppSpec(
    name="quickbite",
    title="QuickBite",
    services=(
        ServiceSpec(
            name="backend",
            default_image=None,
            port=8080,
            health_path="/actuator/health",
            writer=True,
            dev_publish=(8080,),
            env={
                "SPRING_DATASOURCE_URL": "jdbc:postgresql://{db_host}:{db_port}/{db_name}",
                "SPRING_DATASOURCE_USERNAME": "{db_user}",
                "SPRING_DATA_REDIS_HOST": "{redis_host}",
                "SPRING_DATA_REDIS_PORT": "{redis_port}",
                "MANAGEMENT_ENDPOINTS_WEB_EXPOSURE_INCLUDE": "health,prometheus",
            },
            secret_env={
                "DB_PASSWORD": "{db_password}",
                "SPRING_DATASOURCE_PASSWORD": "{db_password}",
                "SPRING_DATA_REDIS_PASSWORD": "{redis_password}",
                "REDIS_URL": "redis://:{redis_password}@{redis_host}:{redis_port}/0",
                "JWT_SECRET": "{jwt_secret}",
                "JWT_SECRET_PREVIOUS": "{jwt_secret_previous}",
                "PAYMENT_WEBHOOK_SECRET": "{payment_webhook_secret}",
            },
            replicas=2,
            min_replicas=2,
            max_replicas=5,
            resources=Resources("500m", "1Gi", "2", "2Gi"),
            metrics_path="/actuator/prometheus",
        ),
        ServiceSpec(
            name="frontend",
            default_image=None,
            port=8080,
            service_port=80,
            health_path="/",
            dev_publish=(80,),
            ingress_host="",
            ingress_annotations={
                "nginx.ingress.kubernetes.io/proxy-read-timeout": "3600",
                "nginx.ingress.kubernetes.io/proxy-send-timeout": "3600",
            },
            # nginx-unprivileged runs as any uid: it writes only the emptyDirs below (fsGroup).
            run_as_user=10101,
            writable_paths=("/tmp", "/var/cache/nginx", "/var/run"),  # noqa: S108 container paths, emptyDirs
            env={"BACKEND_URL": "http://backend:8080"},
            resources=Resources("50m", "64Mi", "250m", "128Mi"),
        ),
    ),
    postgres=PostgresSpec(
        database="quickbite", user="quickbite", migrations="flyway", dev_host_port=5433
    ),
    # Spring Boot runs Flyway when the backend starts, so by default no Job: a failed migration
    # keeps the new pod unready and the rollout stops there (maxUnavailable 0). With config
    # `apps.quickbite.deploy.migrationJob: true` a `flyway migrate` Job runs first instead
    # (its image, `deploy.migrationImage` or the backend's, must carry the Flyway CLI and SQL).
    migration=MigrationSpec(
        service="backend",
        command=("flyway", "migrate"),
        table="flyway_schema_history",
        env={
            "FLYWAY_URL": "jdbc:postgresql://{db_host}:{db_port}/{db_name}",
            "FLYWAY_USER": "{db_user}",
        },
        secret_env={"FLYWAY_PASSWORD": "{db_password}"},
        job_by_default=False,
    ),
    redis=RedisSpec(dev_host_port=6380),
    secrets=(
        SecretSpec("db-password", "generated"),
        SecretSpec("redis-password", "generated"),
        SecretSpec("jwt-secret", "generated", length=64, keep_previous=True),
        SecretSpec("minio-password", "generated", dev_only=True),  # dev backups bucket
        SecretSpec("payment-webhook-secret", "external", config_key="paymentWebhookSecret"),
    ),
    webhook=WebhookSpec(
        service="backend",
        path="/api/payments/webhook",
        signing="hmac-sha256",
        header="X-Razorpay-Signature",
        secret="payment-webhook-secret",  # noqa: S106 a SecretSpec name
        default_rate_per_minute=60,
    ),
    dev_minio_port=9010,
    dev_prometheus_port=9091,
    metrics=Metrics(
        backend_job="quickbite-backend",
        http_requests_total="http_server_requests_seconds_count",
        http_status_label="status",
        http_duration_bucket="http_server_requests_seconds_bucket",
        database_job="quickbite-postgres-exporter",
        cache_job="quickbite-redis-exporter",
        payments_total="quickbite_payments_total",
        payment_outcome_label="outcome",
        payment_failure_regex="failure|failed",
        webhook_errors_total="quickbite_webhook_errors_total",
        websocket_sessions="quickbite_websocket_sessions_active",
    ),
    thresholds=Thresholds(),  # QuickBite runbook: p99 > 2s
)
