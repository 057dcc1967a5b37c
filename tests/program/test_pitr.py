"""Point-in-time recovery in the program (mock runtime): the PostgreSQL image with barman-cloud,
the archive settings from the shared archive_command, the base-backup sidecar and its schedule,
retention, the IRSA scope, the alerts, dev archiving to MinIO, and `ops.pitr`."""

from __future__ import annotations

import json
from collections.abc import Callable

import kubernetes_validate
import pytest

from automation.stack.render import SECRET_SIG, Rendered
from components.pitr import PGDATA, SIDECAR
from contract import wal_layout as wl
from tests.program.conftest import K8S_VERSION, render

ON = {"opsplane:pitr": {"apps": ["qr"], "archiveTimeout": 45, "baseBackupSchedule": "15 3 * * *"}}


@pytest.fixture(scope="module")
def prod_pitr() -> Rendered:
    return render("prod", ON)


@pytest.fixture(scope="module")
def dev_pitr() -> Rendered:
    return render("dev", ON)


def db_pod(r: Rendered, app: str) -> dict:
    return r.k8s("StatefulSet", f"{app}-db", app)[0]["spec"]["template"]["spec"]


def settings_of(args: list[str]) -> dict[str, str]:
    pairs = [args[i + 1] for i in range(0, len(args), 2) if args[i] == "-c"]
    return dict(p.split("=", 1) for p in pairs)


def test_off_by_default_changes_nothing(render_stack: Callable[..., Rendered]) -> None:
    prod = render_stack("prod", {"opsplane:pitr": {"apps": []}})  # Pulumi.prod.yaml archives
    pod = db_pod(prod, "qr")
    assert [c["name"] for c in pod["containers"]] == ["db", "exporter"]
    assert "serviceAccountName" not in pod
    assert prod.outputs["ops"]["qr"]["pitr"]["enabled"] is False
    assert not [r for r in prod.resources if r.type == "opsplane:index:PitrImage"]


def test_the_committed_prod_stack_archives_both_apps(prod: Rendered) -> None:
    for app in ("qr", "quickbite"):
        assert prod.outputs["ops"][app]["pitr"]["enabled"] is True
        assert [c["name"] for c in db_pod(prod, app)["containers"]] == ["db", "exporter", SIDECAR]


def test_prod_server_archives_with_the_shared_command(prod_pitr: Rendered) -> None:
    pod = db_pod(prod_pitr, "qr")
    db = pod["containers"][0]
    bucket = prod_pitr.outputs["ops"]["qr"]["backup"]["bucket"]
    archiving = {
        "wal_level": "replica",
        "archive_mode": "on",
        "archive_timeout": "45s",
        "archive_command": wl.archive_command(bucket, "qr", "backups"),
    }
    settings = settings_of(db["args"])  # besides the opsplane:apps.<app>.postgres settings
    assert {name: settings.get(name) for name in archiving} == archiving
    image = prod_pitr.named("qr-postgres-pitr-image")
    assert image.inputs["build"]["dockerfile"] == "components/pitr_image/Dockerfile"
    assert image.inputs["build"]["args"] == {"POSTGRES_IMAGE": "postgres:16.4-alpine"}
    assert db["image"] == image.outputs.get("repoDigest", db["image"])
    assert prod_pitr.named("qr-postgres-pitr-repo").inputs["name"] == "opsplane/qr-postgres-pitr"
    # quickbite is not in opsplane:pitr.apps: untouched
    quickbite = settings_of(db_pod(prod_pitr, "quickbite")["containers"][0]["args"])
    assert not {"wal_level", "archive_mode", "archive_command"} & set(quickbite)


def test_prod_base_backup_sidecar_schedule_and_retention(prod_pitr: Rendered) -> None:
    pod = db_pod(prod_pitr, "qr")
    sidecar = next(c for c in pod["containers"] if c["name"] == "base-backup")
    args = sidecar["args"]
    assert args[0] == "base-backup"
    opt = {args[i]: args[i + 1] for i in range(1, len(args) - 1, 2)}
    assert opt["--schedule"] == "15 3 * * *"
    assert opt["--retention-days"] == "30"  # opsplane:backup.retentionDays
    assert opt["--pgdata"] == "/var/lib/postgresql/data/pgdata"
    assert opt["--app"] == "qr" and opt["--prefix"] == "backups"
    mounts = {m["mountPath"]: m for m in sidecar["volumeMounts"]}
    assert mounts["/var/lib/postgresql/data"]["name"] == "data"
    assert mounts["/var/lib/postgresql/data"]["readOnly"] is True
    assert sidecar["image"] == prod_pitr.outputs["ops"]["qr"]["runnerImage"]
    env = {e["name"]: e for e in sidecar["env"]}
    assert "password=$(PGPASS)" in env["OPSPLANE_DATABASE_URL"]["value"]
    assert env["PGPASS"]["valueFrom"]["secretKeyRef"]["name"] == "qr-db-credentials"


def test_prod_objects_validate_and_egress_is_allowed(prod_pitr: Rendered) -> None:
    for obj in prod_pitr.kubernetes_objects():
        if obj["apiVersion"].startswith("monitoring.coreos.com"):
            continue
        kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
    names = {o["metadata"]["name"] for o in prod_pitr.k8s("NetworkPolicy", namespace="qr")}
    assert {"qr-db-allow-archive-egress", "qr-db-allow-pushgateway"} <= names


def test_prod_irsa_is_scoped_to_the_wal_prefix(prod_pitr: Rendered) -> None:
    pod = db_pod(prod_pitr, "qr")
    assert pod["serviceAccountName"] == "qr-db-archiver"
    account = prod_pitr.k8s("ServiceAccount", "qr-db-archiver", "qr")[0]
    assert "eks.amazonaws.com/role-arn" in account["metadata"]["annotations"]
    role = prod_pitr.named("qr-pitr-role")
    trust = json.loads(role.inputs["assumeRolePolicy"])
    condition = trust["Statement"][0]["Condition"]["StringEquals"]
    assert "system:serviceaccount:qr:qr-db-archiver" in condition.values()
    policy = json.loads(prod_pitr.named("qr-pitr-policy").inputs["policy"])
    objects = next(s for s in policy["Statement"] if s["Sid"] == "WalPrefix")
    assert objects["Resource"].endswith(":::" + prod_pitr.outputs["ops"]["qr"]["backup"]["bucket"]
                                        + "/backups/pitr/qr/*")  # fmt: skip
    assert "s3:DeleteObject" in objects["Action"]  # retention
    runner = json.loads(prod_pitr.named("qr-pitr-runner-policy").inputs["policy"])
    listing = next(s for s in runner["Statement"] if s["Sid"] == "ListWalPrefix")
    assert listing["Condition"]["StringLike"]["s3:prefix"] == ["backups/pitr/qr/*"]


def test_prod_alerts_for_the_archiving_app_only(prod_pitr: Rendered) -> None:
    rules = {o["metadata"]["name"]: o for o in prod_pitr.k8s("PrometheusRule")}

    def names(app: str) -> set[str]:
        spec = next(o for n, o in rules.items() if n.startswith(app))["spec"]
        return {r["alert"] for g in spec["groups"] for r in g["rules"]}

    pitr = {"WalArchivingFailing", "WalArchiveLag", "BaseBackupMissing"}
    assert pitr <= names("qr")
    assert not pitr & names("quickbite")


def test_ops_output_carries_pitr(prod_pitr: Rendered) -> None:
    assert prod_pitr.outputs["ops"]["qr"]["pitr"] == {
        "enabled": True,
        "archiveTimeout": 45,
        "baseBackupSchedule": "15 3 * * *",
        "root": "backups/pitr/qr/",
    }
    assert prod_pitr.outputs["ops"]["quickbite"]["pitr"]["enabled"] is False


def test_dev_container_archives_to_minio(dev_pitr: Rendered) -> None:
    container = dev_pitr.named("qr-db-container")
    command = container.inputs["command"]
    settings = settings_of(command)  # the image's entrypoint prepends `postgres` to `-c` flags
    assert settings["max_connections"] == "100"  # the postgres settings stay beside archiving
    assert settings["archive_command"] == wl.archive_command(
        "qr-backups", "qr", "backups", endpoint="http://qr-minio:9000"
    )
    assert settings["archive_timeout"] == "45s"
    raw = container.inputs["envs"]  # a secret: the envs hold passwords
    envs = dict(e.split("=", 1) for e in (raw["value"] if isinstance(raw, dict) else raw))
    assert envs["AWS_ACCESS_KEY_ID"] == "qr-minio" and envs["AWS_SECRET_ACCESS_KEY"]
    image = dev_pitr.named("qr-postgres-pitr-image")
    assert image.inputs["skipPush"] is True


def test_dev_takes_base_backups_on_the_schedule_beside_the_container(dev_pitr: Rendered) -> None:
    """The same loop as prod's sidecar: the ops-runner image, the data volume read-only, as the
    server's uid, into the app's MinIO; its health check is the sidecar's liveness."""
    loop = dev_pitr.named("qr-db-base-backup")
    server = dev_pitr.named("qr-db-container")
    args = loop.inputs["command"]
    assert args[:2] == ["base-backup", "--pgdata"] and args[2] == PGDATA
    flags = dict(zip(args[3::2], args[4::2], strict=True))
    assert flags == {
        "--bucket": "qr-backups", "--prefix": "backups", "--app": "qr",
        "--retention-days": "30", "--schedule": "15 3 * * *",
    }  # fmt: skip
    assert loop.inputs["image"] == dev_pitr.outputs["ops"]["qr"]["runnerImage"]
    assert loop.inputs["user"] == "70"
    [volume] = loop.inputs["volumes"]
    [data] = server.inputs["volumes"]
    assert volume["readOnly"] is True and volume["volumeName"] == data["volumeName"]
    assert volume["containerPath"] == data["containerPath"]
    raw = loop.inputs["envs"]
    assert SECRET_SIG in raw  # a secret: the database URL and MinIO's key are in it
    envs = dict(e.split("=", 1) for e in raw["value"])
    assert envs["AWS_ENDPOINT_URL"] == "http://qr-minio:9000"
    assert envs["OPSPLANE_DATABASE_URL"].startswith("postgresql://qr_user:")
    assert envs["OPSPLANE_DATABASE_URL"].endswith("@db:5432/qr_db")
    assert loop.inputs["healthcheck"]["tests"] == ["CMD", *wl.heartbeat_probe()]


def test_unknown_app_in_pitr_is_one_line() -> None:
    from components.config import ConfigError, parse_settings
    from tests.program.conftest import stack_config

    config = stack_config("dev", {"opsplane:pitr": {"apps": ["nope"]}})
    raw = {k.split(":", 1)[1]: v for k, v in config.items() if k.startswith("opsplane:")}
    with pytest.raises(ConfigError) as exc:
        parse_settings("dev", raw)
    assert "pitr" in str(exc.value) and "'nope' is not on this stack" in str(exc.value)
