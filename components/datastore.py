"""Datastore: the app's PostgreSQL or Redis. Kubernetes: credentials Secret, Service, StatefulSet
with a PVC, and a NetworkPolicy admitting only the app's labelled clients. Docker: a named volume
and a container published on 127.0.0.1 only (so automation on the host can reach it)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Literal

import pulumi
import pulumi_docker as docker

from components import manifests as m
from components.catalog.spec import Resources
from components.context import AppContext, checksum
from components.docker_host import container_labels, env_list
from components.k8s import declare

if TYPE_CHECKING:
    from components.pitr import DockerBaseBackup, PitrDb

REDIS_UID = 999  # the redis user of the official image; owns its volume
SECRETS_DIR = "/run/secrets/opsplane"  # where a store that reads files finds its password


@dataclass(frozen=True)
class StoreShape:
    """What differs between PostgreSQL and Redis; the component code is shared."""

    kind: Literal["db", "redis"]
    image: str
    port: int
    dev_host_port: int
    storage: str
    run_as_user: int
    data_path: str
    writable_paths: tuple[str, ...]
    password_env: str
    env: dict[str, str]
    k8s_args: list[str]
    docker_command: list[str]
    ready_command: list[str]
    resources: Resources
    restart_on_password_change: bool
    exporter_image: str
    exporter_port: int
    exporter_env: dict[str, str]  # plain; the password comes from the store's Secret
    exporter_password_env: str
    # Kubernetes: the password as a file (`<VAR>_FILE` names it) when the image reads one; None
    # keeps it in the environment (redis-server and redis_exporter read no password file).
    password_file_env: str | None = None
    exporter_password_file_env: str | None = None

    def exporter_job(self, app: str) -> str:
        """The Prometheus job the alert rules expect (`<app>-postgres-exporter`, ...)."""
        return f"{app}-{'postgres' if self.kind == 'db' else 'redis'}-exporter"


def postgres_shape(ctx: AppContext) -> StoreShape:
    pg = ctx.spec.postgres
    return StoreShape(
        kind="db",
        image=ctx.app_settings.postgres_image or pg.default_image,
        port=pg.port,
        dev_host_port=pg.dev_host_port,
        storage=ctx.app_settings.database_storage or pg.storage,
        run_as_user=70,  # the postgres user of the official alpine image
        data_path="/var/lib/postgresql/data",
        writable_paths=("/var/run/postgresql", "/tmp"),  # noqa: S108 container paths (emptyDirs)
        password_env="POSTGRES_PASSWORD",  # noqa: S106 env var names, not values
        env={
            "POSTGRES_USER": pg.user,
            "POSTGRES_DB": pg.database,
            "PGDATA": "/var/lib/postgresql/data/pgdata",
        },
        k8s_args=ctx.app_settings.postgres.server_args(),
        docker_command=ctx.app_settings.postgres.server_args(),
        ready_command=["pg_isready", "-U", pg.user, "-d", pg.database],
        resources=Resources("250m", "512Mi", "2", "2Gi"),
        # POSTGRES_PASSWORD only seeds an empty data dir; rotation is ALTER ROLE (automation).
        restart_on_password_change=False,
        exporter_image="quay.io/prometheuscommunity/postgres-exporter:v0.15.0",
        exporter_port=9187,
        exporter_env={
            "DATA_SOURCE_URI": f"{{host}}:{pg.port}/{pg.database}?sslmode=disable",
            "DATA_SOURCE_USER": pg.user,
        },
        exporter_password_env="DATA_SOURCE_PASS",  # noqa: S106 an env var name
        password_file_env="POSTGRES_PASSWORD_FILE",  # noqa: S106 an env var name
        exporter_password_file_env="DATA_SOURCE_PASS_FILE",  # noqa: S106 an env var name
    )


def redis_shape(ctx: AppContext) -> StoreShape:
    rd = ctx.spec.redis
    return StoreShape(
        kind="redis",
        image=ctx.app_settings.redis_image or rd.default_image,
        port=rd.port,
        dev_host_port=rd.dev_host_port,
        storage=ctx.app_settings.cache_storage or rd.storage,
        run_as_user=REDIS_UID,
        data_path="/data",
        writable_paths=("/tmp",),  # noqa: S108 a container path (emptyDir)
        password_env="REDIS_PASSWORD",  # noqa: S106 an env var name
        env={},
        k8s_args=["--requirepass", "$(REDIS_PASSWORD)", "--appendonly", "yes"],
        docker_command=[
            "sh",
            "-c",
            'exec redis-server --requirepass "$REDIS_PASSWORD" --appendonly yes',
        ],
        ready_command=["sh", "-c", 'REDISCLI_AUTH="$REDIS_PASSWORD" redis-cli ping | grep PONG'],
        resources=Resources("100m", "128Mi", "500m", "512Mi"),
        # Redis reads requirepass at start: a new password must restart it (clients roll too).
        restart_on_password_change=True,
        exporter_image="oliver006/redis_exporter:v1.62.0",
        exporter_port=9121,
        exporter_env={"REDIS_ADDR": f"redis://{{host}}:{rd.port}"},
        exporter_password_env="REDIS_PASSWORD",  # noqa: S106 an env var name
    )


class Datastore(pulumi.ComponentResource):
    host: str
    port: int
    statefulset: pulumi.Resource | None  # Kubernetes: what a Job writing its volume waits for
    claim: str | None  # Kubernetes: the data PVC of its one pod (`data-qr-redis-0`)

    def __init__(
        self,
        name: str,
        *,
        ctx: AppContext,
        shape: StoreShape,
        password: pulumi.Input[str],
        stopped: bool = False,
        pitr: PitrDb | None = None,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        """stopped (Kubernetes): 0 replicas, so a Job can write the data volume (a restore).
        pitr (PostgreSQL): barman-cloud image, archive settings, sidecar (components/pitr.py)."""
        super().__init__("opsplane:index:Datastore", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.pitr = pitr
        if pitr is not None:
            shape = replace(
                shape,
                image=pitr.image,  # type: ignore[arg-type]
                k8s_args=[*shape.k8s_args, *pitr.args],
                docker_command=[*shape.docker_command, *pitr.args],
            )
        env = shape.env
        self.shape, self.statefulset, self.claim = shape, None, None
        if ctx.kubernetes:
            ns = ctx.namespace or ctx.name
            self.host, self.port = f"{shape.kind}.{ns}.svc.cluster.local", shape.port
            self._declare_kubernetes(name, ctx, shape, env, password, child, 0 if stopped else 1)
        else:
            self.host, self.port = "127.0.0.1", shape.dev_host_port
            self._declare_docker(name, ctx, shape, env, password, child)
        self.register_outputs({"host": self.host, "port": self.port})

    def _declare_kubernetes(
        self,
        name: str,
        ctx: AppContext,
        shape: StoreShape,
        env: dict[str, str],
        password: pulumi.Input[str],
        child: pulumi.ResourceOptions,
        replicas: int,
    ) -> None:
        ns, app, kind = ctx.namespace or ctx.name, ctx.name, shape.kind
        secret_name = f"{app}-{kind}-credentials"
        declare(
            f"{name}-secret",
            m.secret(secret_name, ns, m.labels(app, kind), {shape.password_env: password}),
            child,
        )
        declare(
            f"{name}-service",
            m.service(
                name=kind, ns=ns, app=app, component=kind, port=shape.port, target_port=shape.port
            ),
            child,
        )
        self.claim = m.claim_name(f"{app}-{kind}")
        self.statefulset = declare(
            f"{name}-statefulset",
            self._statefulset(
                name=f"{app}-{kind}",
                ns=ns,
                app=app,
                component=kind,
                image=shape.image,
                port=shape.port,
                run_as_user=shape.run_as_user,
                env=self._store_env(shape, env, secret_name),
                args=shape.k8s_args,
                data_path=shape.data_path,
                storage=shape.storage,
                readiness=m.exec_probe(shape.ready_command),
                writable_paths=shape.writable_paths,
                res=shape.resources,
                checksum=checksum({"password": password})
                if shape.restart_on_password_change
                else None,
                sidecars=[self._exporter_container(shape, secret_name)],
                replicas=replicas,
                secret_files=(secret_name, SECRETS_DIR) if shape.password_file_env else None,
            ),
            child,
        )
        declare(f"{name}-netpol", m.allow_store_from_clients(ns, app, kind, shape.port), child)
        job = shape.exporter_job(app)
        declare(
            f"{name}-exporter-service",
            m.metrics_service(name=job, ns=ns, app=app, component=kind, port=shape.exporter_port),
            child,
        )
        declare(
            f"{name}-exporter-netpol",
            m.allow_monitoring(ns, app, kind, shape.exporter_port),
            child,
        )

    def _statefulset(self, **kwargs: Any) -> dict[str, Any]:
        """`m.statefulset`, with what PITR adds (service account, base-backup sidecar)."""
        manifest = m.statefulset(**kwargs)
        return self.pitr.patch(manifest) if self.pitr is not None else manifest

    @staticmethod
    def _store_env(
        shape: StoreShape, env: dict[str, str], secret_name: str
    ) -> list[dict[str, Any]]:
        if shape.password_file_env:
            file_env = {shape.password_file_env: f"{SECRETS_DIR}/{shape.password_env}"}
            return m.plain_env({**env, **file_env})
        return m.plain_env(env) + m.env_from_secret(secret_name, [shape.password_env])

    @staticmethod
    def _exporter_container(shape: StoreShape, secret_name: str) -> dict[str, Any]:
        env = {k: v.format(host="localhost") for k, v in shape.exporter_env.items()}
        if shape.exporter_password_file_env:
            env[shape.exporter_password_file_env] = f"{SECRETS_DIR}/{shape.password_env}"
            password: list[dict[str, Any]] = []
        else:
            ref = {"secretKeyRef": {"name": secret_name, "key": shape.password_env}}
            password = [{"name": shape.exporter_password_env, "valueFrom": ref}]
        return m.sidecar(
            name="exporter",
            image=shape.exporter_image,
            port=shape.exporter_port,
            env=[*m.plain_env(env), *password],
        )

    def _declare_docker_base_backup(
        self,
        name: str,
        ctx: AppContext,
        shape: StoreShape,
        loop: DockerBaseBackup,
        volume: docker.Volume,
        password: pulumi.Input[str],
        server: docker.Container,
        child: pulumi.ResourceOptions,
    ) -> None:
        """dev: PITR's base-backup loop in its own container, as the server's uid, on the data
        volume read-only (prod runs it as a sidecar in the database pod)."""
        from urllib.parse import quote

        from contract import wal_layout as wl

        pg = ctx.spec.postgres
        url = pulumi.Output.secret(password).apply(
            lambda p: (
                f"postgresql://{pg.user}:{quote(p, safe='')}@{shape.kind}:{shape.port}/"
                f"{pg.database}"
            )
        )
        docker.Container(
            f"{name}-base-backup",
            name=f"{ctx.name}-{shape.kind}-base-backup",
            image=loop.image,
            command=loop.args,
            envs=loop.container_env(url),
            user=str(shape.run_as_user),  # PostgreSQL's data directory is its owner's only
            networks_advanced=[docker.ContainerNetworksAdvancedArgs(name=ctx.docker_network)],
            volumes=[
                docker.ContainerVolumeArgs(
                    volume_name=volume.name, container_path=shape.data_path, read_only=True
                )
            ],
            healthcheck=docker.ContainerHealthcheckArgs(
                tests=["CMD", *wl.heartbeat_probe()],
                interval="60s",
                timeout="5s",
                retries=3,
                start_period="60s",
            ),
            restart="unless-stopped",
            labels=container_labels(m.labels(ctx.name, "base-backup")),
            opts=pulumi.ResourceOptions.merge(child, pulumi.ResourceOptions(depends_on=[server])),
        )

    def _pitr_env(self) -> dict[str, pulumi.Input[str]]:
        return dict(self.pitr.docker_env) if self.pitr is not None else {}

    def _declare_docker(
        self,
        name: str,
        ctx: AppContext,
        shape: StoreShape,
        env: dict[str, str],
        password: pulumi.Input[str],
        child: pulumi.ResourceOptions,
    ) -> None:
        volume = docker.Volume(f"{name}-data", name=f"{ctx.name}-{shape.kind}-data", opts=child)
        image = docker.RemoteImage(f"{name}-image", name=shape.image, keep_locally=True, opts=child)
        server = docker.Container(
            f"{name}-container",
            name=f"{ctx.name}-{shape.kind}",
            image=image.image_id,
            envs=env_list(env, {shape.password_env: password, **self._pitr_env()}),
            command=shape.docker_command or None,
            networks_advanced=[
                docker.ContainerNetworksAdvancedArgs(name=ctx.docker_network, aliases=[shape.kind])
            ],
            ports=[
                docker.ContainerPortArgs(
                    internal=shape.port, external=shape.dev_host_port, ip="127.0.0.1"
                )
            ],
            volumes=[
                docker.ContainerVolumeArgs(volume_name=volume.name, container_path=shape.data_path)
            ],
            healthcheck=docker.ContainerHealthcheckArgs(
                tests=["CMD", *shape.ready_command],
                interval="10s",
                timeout="5s",
                retries=5,
                start_period="10s",
            ),
            restart="unless-stopped",
            labels=container_labels(m.labels(ctx.name, shape.kind)),
            opts=pulumi.ResourceOptions.merge(
                child,
                pulumi.ResourceOptions(
                    ignore_changes=[] if shape.restart_on_password_change else ["envs"]
                ),
            ),
        )
        if self.pitr is not None and self.pitr.docker_base_backup is not None:
            loop = self.pitr.docker_base_backup
            self._declare_docker_base_backup(
                name, ctx, shape, loop, volume, password, server, child
            )
        exporter_image = docker.RemoteImage(
            f"{name}-exporter-image", name=shape.exporter_image, keep_locally=True, opts=child
        )
        plain = {k: v.format(host=shape.kind) for k, v in shape.exporter_env.items()}
        docker.Container(
            f"{name}-exporter",
            name=shape.exporter_job(ctx.name),
            image=exporter_image.image_id,
            envs=env_list(plain, {shape.exporter_password_env: password}),
            networks_advanced=[docker.ContainerNetworksAdvancedArgs(name=ctx.docker_network)],
            healthcheck=docker.ContainerHealthcheckArgs(
                tests=["CMD", "wget", "-qO-", f"http://127.0.0.1:{shape.exporter_port}/metrics"],
                interval="30s",
                timeout="5s",
                retries=3,
            ),
            restart="unless-stopped",
            opts=child,
        )
