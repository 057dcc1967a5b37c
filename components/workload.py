"""Workload: one stateless service. Kubernetes: Secret + Deployment + Service (+ HPA and PDB when
it may scale past one). Docker: one container on the app network."""

from __future__ import annotations

import pulumi
import pulumi_docker as docker

from components import manifests as m
from components.catalog.spec import ServiceSpec
from components.context import AppContext, checksum, template_fields
from components.docker_host import container_labels, env_list
from components.k8s import declare
from components.migration import Migration


class Workload(pulumi.ComponentResource):
    replicas: int
    secret_names: list[str]  # the app secrets this workload's pods use (they roll when one changes)
    checksum: pulumi.Output[str]

    def __init__(
        self,
        name: str,
        *,
        ctx: AppContext,
        service: ServiceSpec,
        extra_env: dict[str, str] | None = None,
        extra_secret_env: dict[str, pulumi.Input[str]] | None = None,
        extra_secret_names: tuple[str, ...] = (),
        migration: Migration | None = None,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("opsplane:index:Workload", name, None, opts)
        self._ctx, self._service = ctx, service
        child = pulumi.ResourceOptions(parent=self)
        # the Deployment/container waits for the app's migration (components/migration.py)
        gate = migration.gate if migration is not None else None
        self._after = pulumi.ResourceOptions(parent=self, depends_on=[gate] if gate else None)
        self._gate_labels = migration.gate_labels if migration is not None else {}
        in_maintenance = service.writer and ctx.settings.in_maintenance(ctx.name)
        configured = ctx.service_settings_value(service, "replicas", service.replicas)
        self.replicas = 0 if in_maintenance else configured
        self.configured_replicas = configured
        env = {k: ctx.render(v) for k, v in sorted({**service.env, **(extra_env or {})}.items())}
        secret_env: dict[str, pulumi.Input[str]] = {
            **ctx.render_all(service.secret_env),
            **(extra_secret_env or {}),
        }
        self.secret_names = sorted(
            {f for t in service.secret_env.values() for f in template_fields(t)} & ctx.secret_values
        )
        self.checksum = checksum(secret_env)
        if ctx.kubernetes:
            self._declare_kubernetes(name, env, secret_env, child, in_maintenance)
        else:
            self._declare_docker(name, env, secret_env, child, in_maintenance)
        self.register_outputs({"replicas": self.replicas, "checksum": self.checksum})

    def _declare_kubernetes(
        self,
        name: str,
        env: dict[str, pulumi.Output[str]],
        secret_env: dict[str, pulumi.Input[str]],
        child: pulumi.ResourceOptions,
        in_maintenance: bool,
    ) -> None:
        ctx, svc = self._ctx, self._service
        ns, app = ctx.namespace or ctx.name, ctx.name
        resource_name = f"{app}-{svc.name}"
        secret_name = f"{resource_name}-env" if secret_env else None
        if secret_name:
            declare(
                f"{name}-secret",
                m.secret(secret_name, ns, m.labels(app, svc.name), secret_env),
                child,
            )
        uses_db = any(k in secret_env for k in ("DATABASE_URL", "DB_PASSWORD"))
        declare(
            f"{name}-deployment",
            m.deployment(
                name=resource_name,
                ns=ns,
                app=app,
                component=svc.name,
                image=ctx.service_image(svc),
                port=svc.port,
                health_path=svc.health_path,
                replicas=self.replicas,
                res=ctx.service_resources(svc),
                run_as_user=svc.run_as_user,
                read_only_root=svc.read_only_root,
                writable_paths=svc.writable_paths,
                env=env,
                secret_name=secret_name,
                secret_keys=sorted(secret_env),
                checksum=self.checksum,
                extra_pod_labels={m.DB_CLIENT_LABEL: "true"} if uses_db else None,
            ),
            self._after,
        )
        declare(
            f"{name}-service",
            m.service(
                name=svc.name,
                ns=ns,
                app=app,
                component=svc.name,
                port=svc.service_port or svc.port,
                target_port=svc.port,
            ),
            child,
        )
        high = ctx.service_settings_value(svc, "max_replicas", svc.max_replicas)
        if high > 1 and not in_maintenance:
            low = ctx.service_settings_value(svc, "min_replicas", svc.min_replicas)
            target = ctx.service_settings(svc).cpu_target_percent
            declare(
                f"{name}-hpa",
                m.hpa(
                    name=resource_name,
                    ns=ns,
                    app=app,
                    component=svc.name,
                    low=low,
                    high=high,
                    cpu=target,
                ),
                child,
            )
            declare(
                f"{name}-pdb", m.pdb(name=resource_name, ns=ns, app=app, component=svc.name), child
            )
        # an admin surface without an allowlist has no Ingress: the controller may not reach it
        exposed = svc.ingress_host is not None and (
            not svc.admin or bool(ctx.app_settings.admin.allow_cidrs)
        )
        declare(
            f"{name}-netpol", m.allow_service_ingress(ns, app, svc.name, svc.port, exposed), child
        )

    def _declare_docker(
        self,
        name: str,
        env: dict[str, pulumi.Output[str]],
        secret_env: dict[str, pulumi.Input[str]],
        child: pulumi.ResourceOptions,
        in_maintenance: bool,
    ) -> None:
        ctx, svc = self._ctx, self._service
        image = docker.RemoteImage(
            f"{name}-image", name=ctx.service_image(svc), keep_locally=True, opts=child
        )
        docker.Container(
            f"{name}-container",
            name=f"{ctx.name}-{svc.name}",
            image=image.image_id,
            envs=env_list(env, secret_env),
            networks_advanced=[
                docker.ContainerNetworksAdvancedArgs(name=ctx.docker_network, aliases=[svc.name])
            ],
            ports=[
                docker.ContainerPortArgs(internal=svc.port, external=host)
                for host in svc.dev_publish
            ],
            healthcheck=docker.ContainerHealthcheckArgs(
                tests=[
                    "CMD-SHELL",
                    f"wget -qO- http://127.0.0.1:{svc.port}{svc.health_path} || exit 1",
                ],
                interval="10s",
                timeout="3s",
                retries=3,
                start_period="20s",
            ),
            restart="unless-stopped",
            start=not in_maintenance,
            must_run=not in_maintenance,
            read_only=svc.read_only_root,
            tmpfs={path: "rw,noexec,nosuid" for path in svc.writable_paths},
            user=str(svc.run_as_user),
            labels=container_labels({**m.labels(ctx.name, svc.name), **self._gate_labels}),
            opts=self._after,
        )
