"""`FakeStack`: a `StackOps` for tests that records every call and can script `up`.

- `calls` lists every `set_config` / `remove_config` / `up` in order (reads are not recorded);
  tests may `note(...)` their own events into the same list to assert interleavings.
- `config` maps full keys (`opsplane:maintenance`) to their string values, as `Pulumi.<stack>.yaml`
  does. With `path=True` the key is a property path into a JSON object value, like
  `pulumi config set --path 'opsplane:rotation.qr.db-password' ...` (`a.b`, `a["b-c"]`, `a[0]`).
- `up` raises on the up numbers in `fail_on_up` (1-based), and otherwise calls `on_up(config,
  outputs)`, which returns the new outputs: a cheap model of the program.
"""

from __future__ import annotations

import copy
import itertools
import json
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from automation.errors import OpsError, TaskFailed
from automation.stack.protocol import UpResult

OnUp = Callable[[dict[str, str], dict[str, Any]], dict[str, Any] | None]
_SEGMENT = re.compile(r'\.([^.\[]+)|\["((?:[^"\\]|\\.)*)"\]|\[(\d+)\]')


@dataclass(frozen=True)
class Call:
    """One recorded operation: `op` is set_config | remove_config | up | a test's own note."""

    op: str
    key: str | None = None
    value: str | None = None
    secret: bool = False
    path: bool = False


def split_path(key: str) -> tuple[str, list[str | int]]:
    """`opsplane:rotation.qr["db-password"]` -> (`opsplane:rotation`, ["qr", "db-password"])."""
    match = re.match(r"[^.\[]+", key)
    if not match:
        raise ValueError(f"bad config path {key!r}")
    top, rest = match.group(0), key[match.end() :]
    segments: list[str | int] = []
    while rest:
        seg = _SEGMENT.match(rest)
        if not seg:
            raise ValueError(f"bad config path {key!r} at {rest!r}")
        name, quoted, index = seg.groups()
        segments.append(int(index) if index is not None else (name or quoted))
        rest = rest[seg.end() :]
    return top, segments


class FakeStack:
    """Records calls; keeps config as strings; `up` is scripted (see module doc)."""

    def __init__(
        self,
        name: str = "dev",
        outputs: Mapping[str, Any] | None = None,
        config: Mapping[str, str] | None = None,
        *,
        fail_on_up: int | Iterable[int] | None = None,
        on_up: OnUp | None = None,
        up_error: Callable[[int], OpsError] | None = None,
        up_lines: Iterable[str] = (),
    ) -> None:
        self.name = name
        self._outputs: dict[str, Any] = copy.deepcopy(dict(outputs or {}))
        self.config: dict[str, str] = dict(config or {})
        self.secret_keys: set[str] = set()
        self.calls: list[Call] = []
        self.up_count = 0
        self.fail_on_up = _as_set(fail_on_up)
        self.on_up = on_up
        self.up_error = up_error or _default_up_error
        self.up_lines = list(up_lines)
        self.update_in_progress: str | None = None  # what `current_update()` reports

    # --- StackOps -------------------------------------------------------------------------------
    def outputs(self) -> dict[str, Any]:
        return copy.deepcopy(self._outputs)

    def get_config(self, key: str, *, path: bool = False) -> str | None:
        if not path:
            return self.config.get(key)
        top, segments = split_path(key)
        node: Any = self._load_object(top)
        for segment in segments:
            try:
                node = node[segment]
            except (KeyError, IndexError, TypeError):
                return None
        return node if isinstance(node, str) else json.dumps(node)

    def set_config(self, key: str, value: str, *, secret: bool = False, path: bool = False) -> None:
        self.calls.append(Call("set_config", key, value, secret, path))
        top, segments = split_path(key) if path else (key, [])
        if secret:
            self.secret_keys.add(top)
        if not segments:
            self.config[top] = value
            return
        root = self._load_object(top) or {}
        _set_in(root, segments, value)
        self.config[top] = json.dumps(root)

    def remove_config(self, key: str, *, path: bool = False) -> None:
        self.calls.append(Call("remove_config", key, path=path))
        top, segments = split_path(key) if path else (key, [])
        if not segments:
            self.config.pop(top, None)
            self.secret_keys.discard(top)
            return
        root = self._load_object(top)
        if root is not None and _remove_in(root, segments):
            self.config[top] = json.dumps(root)

    def up(self, on_output: Callable[[str], None]) -> UpResult:
        self.calls.append(Call("up"))
        self.up_count += 1
        on_output(f"fake up #{self.up_count} of stack {self.name}")
        for line in self.up_lines:
            on_output(line)
        if self.up_count in self.fail_on_up:
            raise self.up_error(self.up_count)
        if self.on_up is not None:
            new_outputs = self.on_up(dict(self.config), self.outputs())
            if new_outputs is not None:
                self._outputs = copy.deepcopy(new_outputs)
        return UpResult(result="succeeded", outputs=self.outputs())

    def current_update(self) -> str | None:
        """Like `PulumiStack.current_update`: the update holding the stack lock, if any."""
        return self.update_in_progress

    # --- test helpers ---------------------------------------------------------------------------
    def note(self, event: str) -> None:
        """Record a test's own event (e.g. "alter-role") among the stack calls."""
        self.calls.append(Call(event))

    def ops_sequence(self) -> list[str]:
        """The recorded operations by name, e.g. ["set_config", "up", "remove_config", "up"]."""
        return [call.op for call in self.calls]

    def set_outputs(self, outputs: Mapping[str, Any]) -> None:
        self._outputs = copy.deepcopy(dict(outputs))

    def _load_object(self, top: str) -> Any:
        raw = self.config.get(top)
        if raw is None:
            return None
        try:
            return json.loads(raw)
        except json.JSONDecodeError:
            return raw


def _default_up_error(number: int) -> OpsError:
    return TaskFailed(f"`pulumi up` failed: injected failure on up #{number} (FakeStack)")


def _as_set(value: int | Iterable[int] | None) -> set[int]:
    if value is None:
        return set()
    if isinstance(value, int):
        return {value}
    return set(value)


def _set_in(root: Any, segments: list[str | int], value: str) -> None:
    node = root
    for segment, following in itertools.pairwise(segments):
        if isinstance(node, list):
            node = node[int(segment)]
            continue
        if segment not in node or not isinstance(node[segment], dict | list):
            node[segment] = [] if isinstance(following, int) else {}
        node = node[segment]
    last = segments[-1]
    if isinstance(node, list):
        index = int(last)
        node.extend([None] * (index + 1 - len(node)))
        node[index] = value
    else:
        node[last] = value


def _remove_in(root: Any, segments: list[str | int]) -> bool:
    node = root
    for segment in segments[:-1]:
        try:
            node = node[segment]
        except (KeyError, IndexError, TypeError):
            return False
    try:
        del node[segments[-1]]
    except (KeyError, IndexError, TypeError):
        return False
    return True


# --- a cheap model of the program, for `FakeStack(on_up=ProgramModel(...))` ----------------------
JobRunner = Callable[[dict[str, Any]], dict[str, Any]]
# runs an app's migration for a new image (app, image); raising fails that `up` before any
# output (any pod) changes, as a failed migration Job does
Migrator = Callable[[str, str], None]


def model_password(app: str, secret: str, epoch: int) -> str:
    """The value the model "generates" for a secret at an epoch (deterministic, test-only)."""
    return f"{app}-{secret}-epoch{epoch}-model"


# What the program exports per app and stack, by hand (tests/program/test_fake_ops.py keeps it
# equal to the offline render: same keys everywhere, same values but secrets and the image digest).
_APPS: dict[str, dict[str, Any]] = {
    "qr": {
        "db": ("qr_db", "qr_user", "alembic"),
        "dev_ports": (5432, 6379, 9000),
        "writers": {"api": (1, 3), "web": (1, 2), "admin": (1, 1)},
        "generated": {"db-password": ["api"], "redis-password": ["api", "redis"]},
        "external": {
            "stripe-secret-key": ("stripeSecretKey", ["api"]),
            "stripe-webhook-secret": ("stripeWebhookSecret", ["api"]),
            "auth0-client-secret": ("auth0ClientSecret", ["api"]),
        },
        "objects": "exports",
        "pool": (80, 800),  # poolSize 20 x 4 workers x api replicas (dev 1; prod maxReplicas 10)
        "webhook": ("api", 8000, "/billing/webhook", "stripe", "Stripe-Signature",
                    "stripe-webhook-secret", 30),
    },
    "quickbite": {
        "db": ("quickbite", "quickbite", "flyway"),
        "dev_ports": (5433, 6380, 9010),
        "writers": {"backend": (1, 3)},
        "generated": {
            "db-password": ["backend"], "redis-password": ["backend", "redis"],
            "jwt-secret": ["backend"],
        },
        "external": {"payment-webhook-secret": ("paymentWebhookSecret", ["backend"])},
        "objects": None,
        "pool": (None, None),  # no `quotas`: the pool is not declared
        "webhook": ("backend", 8080, "/api/payments/webhook", "hmac-sha256",
                    "X-Razorpay-Signature", "payment-webhook-secret", 60),
    },
}  # fmt: skip
PROD_RUNNER_IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/opsplane/ops-runner@sha256:" + (
    "0" * 64
)


def sample_ops(app: str = "qr", stack: str = "dev", **overrides: Any) -> dict[str, Any]:
    """The `ops` object the program exports for `app` on `stack` (dev or prod); secrets are the
    model's passwords (epoch 0) and the prod runner image has a placeholder digest."""
    data, dev = _APPS[app], stack == "dev"
    db_name, db_user, migrations = data["db"]
    db_port, redis_port, minio_port = data["dev_ports"] if dev else (5432, 6379, None)
    ops: dict[str, Any] = {
        "app": app,
        "stack": stack,
        "target": "docker" if dev else "kubernetes",
        "namespace": None if dev else app,
        "network": app if dev else None,
        "database": {
            "host": "127.0.0.1" if dev else f"db.{app}.svc.cluster.local",
            "port": db_port,
            "name": db_name,
            "user": db_user,
            "password": model_password(app, "db-password", 0),
            "serverMajor": 16,
            "migrations": migrations,
            "poolSize": data["pool"][0 if dev else 1],
        },
        "cache": {
            "host": "127.0.0.1" if dev else f"redis.{app}.svc.cluster.local",
            "port": redis_port,
            "password": model_password(app, "redis", 0),
        },
        "objects": _sample_objects(app, stack, data["objects"], minio_port),
        "backup": {
            "bucket": f"{app}-backups" if dev else f"opsplane-{stack}-backups-{app}",
            "prefix": "backups",
            "endpoint": f"http://127.0.0.1:{minio_port}" if dev else None,
            "region": "us-east-1",
            "schedules": copy.deepcopy(SAMPLE_SCHEDULES),
        },
        "health": _sample_health(app, dev),
        "webhook": _sample_webhook(app, dev, data["webhook"]),
        "writers": list(data["writers"]),
        "replicas": {w: counts[0 if dev else 1] for w, counts in data["writers"].items()},
        "secrets": _sample_secrets(app, dev, data),
        "maintenance": False,
        "runnerImage": "opsplane/ops-runner:dev" if dev else PROD_RUNNER_IMAGE,
        "deploy": sample_deploy(app),
        "pitr": {  # opsplane:pitr.apps: both apps in Pulumi.prod.yaml, none in Pulumi.dev.yaml
            "enabled": not dev,
            "archiveTimeout": 55,
            "baseBackupSchedule": "30 1 * * *",
            "root": f"backups/pitr/{app}/",
        },
    }
    ops.update(overrides)
    return ops


# The backup defaults both committed stack files use (components.config.BackupSettings).
SAMPLE_SCHEDULES = {
    "intervals": {"db": 86_400, "redis": 21_600, "objects": 43_200},
    "drillSeconds": 7 * 86_400,
    "rtoSeconds": 3_600,
}
# service -> (port the Service listens on, health path); dev publishes the same port on the host
_HEALTH = {
    "qr": {"api": (8000, "/health"), "web": (3000, "/"), "admin": (3001, "/")},
    "quickbite": {"backend": (8080, "/actuator/health"), "frontend": (80, "/")},
}


def _sample_health(app: str, dev: bool) -> dict[str, str]:
    return {
        svc: f"http://127.0.0.1:{port}{path}" if dev else f"http://{svc}.{app}.svc:{port}{path}"
        for svc, (port, path) in _HEALTH[app].items()
    }


def _sample_objects(
    app: str, stack: str, bucket: str | None, minio_port: int | None
) -> dict[str, Any] | None:
    if bucket is None:
        return None
    if minio_port is not None:
        return {"bucket": f"{app}-{bucket}", "endpoint": f"http://127.0.0.1:{minio_port}"}
    return {"bucket": f"opsplane-{stack}-{app}-{bucket}", "endpoint": None}


def _sample_webhook(app: str, dev: bool, hook: tuple[Any, ...]) -> dict[str, Any]:
    service, port, path, signing, header, secret, rate = hook
    host = "127.0.0.1" if dev else f"{service}.{app}.svc.cluster.local"
    return {
        "url": f"http://{host}:{port}{path}",
        "path": path,
        "signing": signing,
        "header": header,
        "secret": model_password(app, secret, 0),
        "secretName": secret,
        "rateLimitPerMinute": rate,
        "table": "webhook_logs",
    }


def _sample_secrets(app: str, dev: bool, data: dict[str, Any]) -> dict[str, dict[str, Any]]:
    generated = dict(data["generated"])
    if dev:
        generated["minio-password"] = []
    secrets: dict[str, dict[str, Any]] = {
        name: {"kind": "generated", "epoch": 0, "workloads": users,
               "configKey": f"opsplane:rotation.{app}.{name}"}
        for name, users in generated.items()
    }  # fmt: skip
    for name, (key, users) in data["external"].items():
        secrets[name] = {
            "kind": "external",
            "epoch": None,
            "workloads": users,
            "configKey": f"opsplane:externalSecrets.{app}.{key}",
        }
    for spec in secrets.values():
        spec.update(pending=False, rotatedAt=None)
    return secrets


def sample_deploy(app: str) -> dict[str, Any]:
    """`ops[app].deploy` as the program exports it for the committed stack files' images."""
    qr = app == "qr"
    owner = "beetechone/qr" if qr else "quickbite/"
    services = ["api", "web", "admin"] if qr else ["backend", "frontend"]
    images = {s: f"ghcr.io/{owner}{'-' if qr else ''}{s}:1.0.0" for s in services}
    service = services[0]
    return {
        "images": images,
        "migration": {
            "table": "alembic_version" if qr else "flyway_schema_history",
            "service": service,
            "command": ["alembic", "upgrade", "head"] if qr else ["flyway", "migrate"],
            "image": images[service],
            "job": f"{app}-migrate-1-0-0" if qr else None,
            "atStart": not qr,
        },
        "soakSeconds": 60,
        "compatibleHeads": [],
    }


class ProgramModel:
    """`on_up` modelling what the real program does with the config keys automation writes.

    - `opsplane:maintenance` -> `ops[app].maintenance`;
    - `opsplane:rotation` -> `ops[app].secrets[name].epoch`; for `db-password` the database password
      is the model password of the active epoch, and while `pending` the previous one stays in
      `database.password` and the new one is `database.pendingPassword`;
    - `opsplane:clusterJob` -> output `clusterJob` from `job_runner(request)`; removed with the key.
    - `opsplane:apps.<app>.services.<svc>.image` -> `ops[app].deploy.images`; when the migrating
      service's image changes, `migrator(app, image)` runs first (raise to fail the `up`), unless
      `opsplane:apps.<app>.deploy.skipMigrationFor` names that image (no migration declared).
    """

    def __init__(
        self, job_runner: JobRunner | None = None, migrator: Migrator | None = None
    ) -> None:
        self.job_runner = job_runner
        self.migrator = migrator
        self.migrations: list[tuple[str, str]] = []

    def __call__(self, config: dict[str, str], outputs: dict[str, Any]) -> dict[str, Any]:
        maintenance = json.loads(config.get("opsplane:maintenance") or "[]")
        rotation = json.loads(config.get("opsplane:rotation") or "{}")
        apps = json.loads(config.get("opsplane:apps") or "{}")
        for app, ops in (outputs.get("ops") or {}).items():
            self._apply_images(app, ops, apps.get(app) or {})
        for app, ops in (outputs.get("ops") or {}).items():
            ops["maintenance"] = app in maintenance
            self._apply_rotation(app, ops, rotation.get(app) or {})
        self._apply_cluster_job(config.get("opsplane:clusterJob"), outputs)
        return outputs

    def _apply_images(self, app: str, ops: dict[str, Any], settings: dict[str, Any]) -> None:
        from components.migration import migration_name

        block = ops.get("deploy")
        if not block:
            return
        services = settings.get("services") or {}
        images = {s: (services.get(s) or {}).get("image") or i for s, i in block["images"].items()}
        migration = block["migration"]
        service = migration.get("service")
        skipped = (settings.get("deploy") or {}).get("skipMigrationFor")
        changed = service and images[service] != block["images"][service]
        if changed and images[service] != skipped:  # skipped: no migration step declared
            self.migrations.append((app, images[service]))
            if self.migrator is not None:
                self.migrator(app, images[service])
            if migration.get("job"):
                migration["job"] = migration_name(app, images[service])
        if changed:
            migration["image"] = images[service]
        block["images"] = images

    @staticmethod
    def _apply_rotation(app: str, ops: dict[str, Any], states: dict[str, Any]) -> None:
        ops["database"].pop("pendingPassword", None)
        for name, state in states.items():
            state = {"epoch": state} if isinstance(state, int) else state
            epoch, pending = int(state.get("epoch", 0)), bool(state.get("pending", False))
            if name in ops["secrets"]:
                ops["secrets"][name]["epoch"] = epoch
                ops["secrets"][name]["rotatedAt"] = state.get("rotatedAt")
                ops["secrets"][name]["pending"] = pending
            if name != "db-password":
                continue
            if pending:
                ops["database"]["password"] = model_password(app, name, epoch - 1)
                ops["database"]["pendingPassword"] = model_password(app, name, epoch)
            else:
                ops["database"]["password"] = model_password(app, name, epoch)

    def _apply_cluster_job(self, raw: str | None, outputs: dict[str, Any]) -> None:
        if raw is None:
            outputs.pop("clusterJob", None)
            return
        request = json.loads(raw)
        if self.job_runner is None:
            raise TaskFailed("ProgramModel has no job_runner for opsplane:clusterJob")
        outputs["clusterJob"] = {"id": request["id"], **self.job_runner(request)}
