"""Declared operations: backup CronJobs, maintenance mode, the cluster task Job."""

from __future__ import annotations

import pytest

from automation.stack.render import Rendered, unwrap

CONTAINER = "docker:index/container:Container"


def pod(cronjob: dict) -> dict:
    return cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]


@pytest.mark.parametrize(
    ("name", "schedule", "first_args"),
    [
        ("qr-backup-db", "0 2 * * *", ["backup", "--bucket", "opsplane-prod-backups-qr"]),
        ("qr-backup-redis", "15 */6 * * *", ["backup", "--bucket", "opsplane-prod-backups-qr"]),
        ("qr-backup-objects", "45 */12 * * *", ["backup", "--bucket", "opsplane-prod-backups-qr"]),
        (
            "qr-restore-drill",
            "0 4 * * 0",
            ["verify-backup", "--bucket", "opsplane-prod-backups-qr"],
        ),
        ("quickbite-backup-db", "0 2 * * *", ["backup"]),
        ("quickbite-restore-drill", "0 4 * * 0", ["verify-backup"]),
    ],
)
def test_backup_cronjobs(prod: Rendered, name: str, schedule: str, first_args: list[str]) -> None:
    (job,) = prod.k8s("CronJob", name)
    spec = job["spec"]
    assert spec["schedule"] == schedule
    assert spec["concurrencyPolicy"] == "Forbid"
    assert spec["startingDeadlineSeconds"] > 0
    assert spec["successfulJobsHistoryLimit"] >= 1 and spec["failedJobsHistoryLimit"] >= 1
    p = pod(job)
    (c,) = p["containers"]
    assert c["args"][: len(first_args)] == first_args
    assert c["resources"]["limits"]["memory"]
    assert p["serviceAccountName"].endswith("-ops-runner")
    for env in c["env"]:
        assert "value" not in env or "URL" not in env["name"], env  # credentials only via Secret
    assert c["image"].startswith("123456789012.dkr.ecr.")


def test_quickbite_has_no_object_backup(prod: Rendered) -> None:
    assert not prod.k8s("CronJob", "quickbite-backup-objects")


def test_nightly_run_is_one_restore_point_across_the_stores(prod: Rendered) -> None:
    """`restore --component all` needs database, Redis and objects under one manifest."""
    (nightly,) = prod.k8s("CronJob", "qr-backup-db")
    (c,) = pod(nightly)["containers"]
    assert c["args"][c["args"].index("--objects-bucket") + 1] == "opsplane-prod-qr-exports"
    refs = {e["name"] for e in c["env"] if "valueFrom" in e}
    assert refs == {"OPSPLANE_DATABASE_URL", "OPSPLANE_REDIS_URL"}
    (redis_only,) = prod.k8s("CronJob", "qr-backup-redis")
    (r,) = pod(redis_only)["containers"]
    assert {e["name"] for e in r["env"] if "valueFrom" in e} == {"OPSPLANE_REDIS_URL"}
    assert "--objects-bucket" not in r["args"]


def test_service_account_uses_irsa(prod: Rendered) -> None:
    (account,) = prod.k8s("ServiceAccount", "qr-ops-runner")
    arn = account["metadata"]["annotations"]["eks.amazonaws.com/role-arn"]
    assert arn == "arn:aws:iam::123456789012:role/opsplane-prod-qr-ops-runner"


def test_maintenance_scales_writers_to_zero_on_kubernetes(render_stack) -> None:
    rendered = render_stack("prod", {"opsplane:maintenance": ["qr"]})
    replicas = {d["metadata"]["name"]: d["spec"]["replicas"] for d in rendered.k8s("Deployment")}
    assert replicas == {
        "qr-api": 0, "qr-web": 0, "qr-admin": 0, "quickbite-backend": 3, "quickbite-frontend": 2,
    }  # fmt: skip
    hpas = {h["metadata"]["name"] for h in rendered.k8s("HorizontalPodAutoscaler")}
    assert hpas == {"quickbite-backend", "quickbite-frontend"}  # an HPA would scale them back up
    ops = rendered.outputs["ops"]["qr"]
    assert ops["maintenance"] is True and ops["replicas"] == {"api": 3, "web": 2, "admin": 1}


def test_maintenance_stops_writer_containers_on_docker(render_stack) -> None:
    rendered = render_stack("dev", {"opsplane:maintenance": ["quickbite"]})
    running = {
        r.inputs["name"]: unwrap(r.inputs)["start"]
        for r in rendered.of_type(CONTAINER)
        if "start" in r.inputs
    }
    assert running["quickbite-backend"] is False
    assert running["quickbite-frontend"] is True and running["qr-api"] is True


def test_cluster_job_is_declared_while_config_asks_for_it(render_stack, prod: Rendered) -> None:
    request = {
        "app": "quickbite",
        "task": "restore",
        "args": ["--latest", "--yes"],
        "id": "restore-1",
    }
    rendered = render_stack("prod", {"opsplane:clusterJob": request})
    (job,) = rendered.k8s("Job", "quickbite-restore-1", "quickbite")
    (c,) = job["spec"]["template"]["spec"]["containers"]
    assert c["command"] == ["python", "-m", "automation.jobrun"]
    assert c["args"] == [
        "--report-to",
        "s3://opsplane-prod-backups-quickbite/backups/quickbite/reports/restore-1.json",
        "--", "restore", "--latest", "--yes",
    ]  # fmt: skip
    assert job["spec"]["backoffLimit"] == 0
    secret_env = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in c["env"] if "valueFrom" in e}
    assert set(secret_env) == {
        "OPSPLANE_DATABASE_URL", "OPSPLANE_REDIS_URL", "OPSPLANE_WEBHOOK_SECRET",
    }  # fmt: skip
    assert {ref["name"] for ref in secret_env.values()} == {"quickbite-ops-env"}
    result = rendered.outputs["clusterJob"]
    assert result["id"] == "restore-1" and result["status"] == "succeeded"
    assert result["report"] == {
        "bucket": "opsplane-prod-backups-quickbite",
        "key": "backups/quickbite/reports/restore-1.json",
    }
    assert "clusterJob" not in prod.outputs
    assert not [j for j in prod.k8s("Job") if "-migrate-" not in j["metadata"]["name"]]


def test_job_environment_names_match_what_the_tasks_read() -> None:
    """The program names the Secret keys; the replay/backup tasks read the same variables."""
    from automation.tasks.replay.run import JOB_DATABASE_URL_ENV, JOB_SECRET_ENV
    from components.backup_plan import WEBHOOK_SECRET_KEY

    assert JOB_SECRET_ENV == WEBHOOK_SECRET_KEY
    assert JOB_DATABASE_URL_ENV == "OPSPLANE_DATABASE_URL"
