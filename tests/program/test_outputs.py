"""The `ops` output contract (docs/ops-contract.md) on both stacks; secrets never in plain text."""

from __future__ import annotations

from pathlib import Path

import pytest

from automation.stack.render import Rendered, write_render
from contract import ops as ops_types

FIELDS = {
    "app", "stack", "target", "namespace", "network", "database", "cache", "objects", "backup",
    "webhook", "writers", "replicas", "secrets", "maintenance", "runnerImage", "deploy", "health",
    "pitr",
}  # fmt: skip


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_both_stacks_export_the_contract_for_both_apps(stack: str, dev, prod) -> None:
    rendered: Rendered = {"dev": dev, "prod": prod}[stack]
    ops = rendered.outputs["ops"]
    assert set(ops) == {"qr", "quickbite"}
    for app, contract in ops.items():
        assert set(contract) == FIELDS, app
        db = contract["database"]
        assert {"host", "port", "name", "user", "password", "serverMajor", "migrations"} <= set(db)
        assert db["serverMajor"] == 16
        assert set(contract["backup"]) == {"bucket", "prefix", "endpoint", "region", "schedules"}
        assert contract["webhook"]["signing"] in ("stripe", "hmac-sha256")
        assert contract["stack"] == stack


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_the_ops_output_has_the_contract_types_keys(stack: str, dev, prod) -> None:
    """contract/ops.py's TypedDicts name exactly the keys the program exports."""
    assert ops_types.fields(ops_types.AppOps) == FIELDS
    parts = {
        "database": ops_types.DatabaseOps, "cache": ops_types.CacheOps,
        "objects": ops_types.ObjectsOps, "backup": ops_types.BackupOps,
        "webhook": ops_types.WebhookOps,
    }  # fmt: skip
    rendered: Rendered = {"dev": dev, "prod": prod}[stack]
    for app, ops in rendered.outputs["ops"].items():
        for key, model in parts.items():
            if ops[key] is not None:
                assert set(ops[key]) - {"pendingPassword"} == ops_types.fields(model) - {
                    "pendingPassword"
                }, (app, key)
        for name, secret in ops["secrets"].items():
            assert set(secret) == ops_types.fields(ops_types.SecretOps), (app, name)


def test_contract_values(dev, prod) -> None:
    qr_dev, qb_prod = dev.outputs["ops"]["qr"], prod.outputs["ops"]["quickbite"]
    assert qr_dev["database"] | {"password": None} == {
        "host": "127.0.0.1", "port": 5432, "name": "qr_db", "user": "qr_user", "password": None,
        "serverMajor": 16, "migrations": "alembic", "poolSize": 80,  # 20 x 4 workers x 1 api
    }  # fmt: skip
    assert prod.outputs["ops"]["qr"]["database"]["poolSize"] == 20 * 4 * 10  # HPA max 10
    assert qb_prod["database"]["poolSize"] is None  # QuickBite declares no pool
    assert qr_dev["writers"] == ["api", "web", "admin"]
    assert qr_dev["webhook"]["url"] == "http://127.0.0.1:8000/billing/webhook"
    assert qr_dev["webhook"]["rateLimitPerMinute"] == 30  # QR runbook: /billing/* 30/minute
    assert qr_dev["backup"]["endpoint"] == "http://127.0.0.1:9000"
    assert qr_dev["network"] == "qr" and qr_dev["namespace"] is None
    assert qb_prod["database"]["host"] == "db.quickbite.svc.cluster.local"
    assert qb_prod["database"]["migrations"] == "flyway"
    assert qb_prod["webhook"]["url"] == (
        "http://backend.quickbite.svc.cluster.local:8080/api/payments/webhook"
    )
    assert qb_prod["webhook"]["header"] == "X-Razorpay-Signature"
    assert qb_prod["writers"] == ["backend"] and qb_prod["replicas"] == {"backend": 3}
    assert qb_prod["backup"] == {
        "bucket": "opsplane-prod-backups-quickbite", "prefix": "backups", "endpoint": None,
        "region": "us-east-1",
        "schedules": {
            "intervals": {"db": 86_400, "redis": 21_600, "objects": 43_200},
            "drillSeconds": 604_800, "rtoSeconds": 3_600,
        },
    }  # fmt: skip
    assert qb_prod["health"] == {
        "backend": "http://backend.quickbite.svc:8080/actuator/health",
        "frontend": "http://frontend.quickbite.svc:80/",
    }
    assert qb_prod["secrets"]["jwt-secret"]["workloads"] == ["backend"]
    assert qb_prod["secrets"]["payment-webhook-secret"]["configKey"] == (
        "opsplane:externalSecrets.quickbite.paymentWebhookSecret"
    )


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_no_secret_value_appears_anywhere_in_the_render(
    stack: str, dev, prod, tmp_path: Path
) -> None:
    rendered: Rendered = {"dev": dev, "prod": prod}[stack]
    generated = {s for s in rendered.secret_values if len(s) >= 8}
    assert len(generated) >= 10  # every RandomPassword result and every configured secret
    write_render(rendered, tmp_path)
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert len(files) > 20
    for path in files:
        text = path.read_text()
        leaked = [s for s in generated if s in text]
        assert not leaked, f"{path.name} shows a secret"
    outputs = (tmp_path / "outputs.json").read_text()
    assert outputs.count("[secret]") >= 6


def test_secret_outputs_are_marked_secret_for_pulumi(prod: Rendered) -> None:
    """Kubernetes Secrets' data reached the engine wrapped as Pulumi secrets."""
    secrets = [r for r in prod.resources if r.type == "kubernetes:core/v1:Secret"]
    assert len(secrets) >= 6
    for r in secrets:
        data = r.inputs["stringData"]
        assert "4dabf18193072939515e22adb298388d" in data or all(
            "4dabf18193072939515e22adb298388d" in v for v in data.values()
        ), r.name
