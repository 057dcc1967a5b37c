"""Migration: the app's schema migration, run before any of its pods or containers change.

prod: a Job named after the migrating image's tag (`qr-migrate-1-1-0`), with its own Secret.
pulumi-kubernetes awaits the Job; the app's Deployments depend on it, so a failed migration fails
`up` before any pod changes. No TTL: a failed Job stays for `kubectl logs job/<name>` (and is
replaced on the next `up`, `pulumi.com/replaceUnready`). A new tag is a new Job.
dev: a one-shot container (attached: `up` waits for it to exit) that the app containers depend
on; a non-zero exit fails `up` before they change.
Neither is declared for the image `deploy.skipMigrationFor` names: `deploy`/`rollback` set it
when they go back onto a schema head the app declared compatible, which that older image's
`alembic upgrade head` would not know ("Can't locate revision"); the database is already past
its head, so there is nothing for it to migrate.
"""

from __future__ import annotations

import re
from typing import Any

import pulumi
import pulumi_docker as docker

from components import manifests as m
from components.catalog.spec import MigrationSpec, Resources
from components.context import AppContext
from components.docker_host import container_labels, env_list
from components.k8s import declare

COMPONENT = "migrate"
EXIT_LABEL = "opsplane.dev/migration-exit-code"
PINNING_ANNOTATION = "opsplane.dev/image-pinning"  # as every pod says how its image is pinned


def image_slug(image: str) -> str:
    """A DNS-label piece naming an image: its tag (`1.1.0` -> `1-1-0`), plus a short digest."""
    tail = image.rsplit("/", 1)[-1]
    name_tag, _, digest = tail.partition("@sha256:")
    tag = name_tag.partition(":")[2]
    parts = [tag] if tag else []
    if digest:
        parts.append(f"sha-{digest[:10]}")
    slug = re.sub(r"[^a-z0-9]+", "-", "-".join(parts or ["latest"]).lower()).strip("-")
    return slug or "latest"


def migration_name(app: str, image: str) -> str:
    """`<app>-migrate-<tag>`: the Job (prod) or container (dev) of one image, at most 63 chars."""
    return f"{app}-{COMPONENT}-{image_slug(image)}"[:63].rstrip("-")


def runs_job(ctx: AppContext) -> bool:
    """Config `deploy.migrationJob`, else the catalog's default for the app."""
    spec = ctx.spec.migration
    if spec is None:
        return False
    chosen = ctx.app_settings.deploy.migration_job
    return spec.job_by_default if chosen is None else chosen


def migration_image(ctx: AppContext, spec: MigrationSpec) -> str:
    return ctx.app_settings.deploy.migration_image or ctx.service_image(
        ctx.spec.service(spec.service)
    )


def job_manifest(
    *,
    name: str,
    ns: str,
    app: str,
    image: str,
    command: list[str],
    env: dict[str, Any],
    secret_name: str,
    secret_keys: list[str],
    run_as_user: int,
    writable_paths: tuple[str, ...],
    backoff_limit: int,
    deadline_seconds: int,
) -> m.Manifest:
    """The migration Job: no service account, read-only root (scratch where the service has
    it), the database-client label; a tag is pulled Always, a digest IfNotPresent."""
    lbls = m.labels(app, COMPONENT)
    volumes, mounts = m.scratch_volumes(writable_paths)
    pinned = "@sha256:" in image
    container = {
        "name": COMPONENT,
        "image": image,
        "imagePullPolicy": "IfNotPresent" if pinned else "Always",
        "command": command,
        "env": m.plain_env(env) + m.env_from_secret(secret_name, secret_keys),
        "resources": m.resources(Resources("100m", "128Mi", "1", "512Mi")),
        "securityContext": m.container_security(read_only_root=True),
        "volumeMounts": mounts,
    }
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": m.metadata(name, ns, lbls, annotations={"pulumi.com/replaceUnready": "true"}),
        "spec": {
            "backoffLimit": backoff_limit,
            "activeDeadlineSeconds": deadline_seconds,
            "template": {
                "metadata": {
                    "labels": {**lbls, m.DB_CLIENT_LABEL: "true"},
                    "annotations": {
                        PINNING_ANNOTATION: f"{COMPONENT}={'digest' if pinned else 'tag'}"
                    },
                },
                "spec": {
                    "restartPolicy": "Never",
                    "automountServiceAccountToken": False,
                    "securityContext": m.pod_security(run_as_user),
                    "containers": [container],
                    "volumes": volumes,
                },
            },
        },
    }


class Migration(pulumi.ComponentResource):
    """The app's migration; `gate` is what the app's workloads depend on (None: no migration
    step, the service migrates at start). `ops` describes it for the output contract."""

    gate: pulumi.Resource | None
    gate_labels: dict[str, pulumi.Input[str]]
    ops: dict[str, Any]

    def __init__(
        self,
        name: str,
        *,
        ctx: AppContext,
        after: list[pulumi.Resource] | None = None,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        """`after`: what must be up before the migration runs (the app's database)."""
        super().__init__("opsplane:index:Migration", name, None, opts)
        self._ctx = ctx
        self.gate, self.gate_labels = None, {}
        spec = ctx.spec.migration
        image = migration_image(ctx, spec) if spec else None
        skipped = image is not None and image == ctx.app_settings.deploy.skip_migration_for
        job = runs_job(ctx) and not skipped
        self.ops = {
            "table": spec.table if spec else None,
            "service": spec.service if spec else None,
            "command": list(spec.command) if spec else [],
            "image": image,
            "job": migration_name(ctx.name, image) if job and image else None,
            "atStart": bool(spec) and not runs_job(ctx),
        }
        if spec is not None and job and image is not None:
            child = pulumi.ResourceOptions(parent=self, depends_on=after or None)
            if ctx.kubernetes:
                self._declare_job(name, spec, image, child)
            else:
                self._declare_container(name, spec, image, child)
        self.register_outputs({"job": self.ops["job"]})

    def _declare_job(
        self, name: str, spec: MigrationSpec, image: str, child: pulumi.ResourceOptions
    ) -> None:
        ctx, deploy = self._ctx, self._ctx.app_settings.deploy
        ns, job_name = ctx.namespace or ctx.name, migration_name(ctx.name, image)
        secret_name = f"{ctx.name}-{COMPONENT}-env"
        declare(
            f"{name}-secret",
            m.secret(
                secret_name, ns, m.labels(ctx.name, COMPONENT), ctx.render_all(spec.secret_env)
            ),
            child,
        )
        wait = f"{deploy.active_deadline_seconds + 120}s"
        self.gate = declare(
            f"{name}-job",
            job_manifest(
                name=job_name,
                ns=ns,
                app=ctx.name,
                image=image,
                command=list(spec.command),
                env={k: ctx.render(v) for k, v in sorted(spec.env.items())},
                secret_name=secret_name,
                secret_keys=sorted(spec.secret_env),
                run_as_user=ctx.spec.service(spec.service).run_as_user,
                writable_paths=ctx.spec.service(spec.service).writable_paths,
                backoff_limit=deploy.backoff_limit,
                deadline_seconds=deploy.active_deadline_seconds,
            ),
            pulumi.ResourceOptions.merge(
                child, pulumi.ResourceOptions(custom_timeouts=pulumi.CustomTimeouts(create=wait))
            ),
        )

    def _declare_container(
        self, name: str, spec: MigrationSpec, image: str, child: pulumi.ResourceOptions
    ) -> None:
        ctx = self._ctx
        pulled = docker.RemoteImage(f"{name}-image", name=image, keep_locally=True, opts=child)
        container = docker.Container(
            f"{name}-container",
            name=migration_name(ctx.name, image),
            image=pulled.image_id,
            command=list(spec.command),
            envs=env_list(
                {k: ctx.render(v) for k, v in sorted(spec.env.items())},
                ctx.render_all(spec.secret_env),
            ),
            networks_advanced=[docker.ContainerNetworksAdvancedArgs(name=ctx.docker_network)],
            attach=True,  # `up` waits for it to exit
            must_run=False,
            restart="no",
            read_only=True,
            tmpfs={p: "rw,noexec,nosuid" for p in ctx.spec.service(spec.service).writable_paths},
            user=str(ctx.spec.service(spec.service).run_as_user),
            labels=container_labels(m.labels(ctx.name, COMPONENT)),
            opts=child,
        )
        self.gate = container
        # the app containers carry the exit code: anything but 0 fails `up` before they change
        self.gate_labels = {EXIT_LABEL: container.exit_code.apply(_require_success(image))}


def _require_success(image: str) -> Any:
    def check(code: int | None) -> str:
        if code not in (None, 0):  # None: not known yet (preview)
            raise pulumi.RunError(
                f"migration container of {image} exited {code}: see `docker logs "
                f"<app>-migrate-<tag>`; the app's containers were not changed"
            )
        return "0"

    return check
