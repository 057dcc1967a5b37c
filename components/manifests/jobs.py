"""Jobs and CronJobs (backups, drills, migrations, operations) and their pod spec."""

from __future__ import annotations

from typing import Any

from components.catalog.spec import Resources
from components.manifests.base import (
    DB_CLIENT_LABEL,
    RUNNER_UID,
    Manifest,
    container_security,
    env_from_secret,
    image_fields,
    labels,
    metadata,
    plain_env,
    pod_security,
    resources,
)

# --- jobs ---------------------------------------------------------------------------------------


def job_pod_spec(
    *,
    app: str,
    component: str,
    image: Any,
    args: Any,  # list[str], or an Output of one
    secret_name: str,
    secret_keys: list[str],
    env: dict[str, Any],
    service_account: str,
    run_as_user: int = RUNNER_UID,
    claims: dict[str, str] | None = None,
) -> Manifest:
    """claims: mount path -> PersistentVolumeClaim (a stopped store's data the task writes; the
    pod then runs as the store's user, so what it writes stays the store's)."""
    mounts = [{"name": "tmp", "mountPath": "/tmp"}]  # noqa: S108 container path, emptyDir
    volumes: list[Manifest] = [{"name": "tmp", "emptyDir": {}}]
    for i, (path, claim) in enumerate(sorted((claims or {}).items())):
        mounts.append({"name": f"claim-{i}", "mountPath": path})
        volumes.append({"name": f"claim-{i}", "persistentVolumeClaim": {"claimName": claim}})
    return {
        "metadata": {"labels": {**labels(app, component), DB_CLIENT_LABEL: "true"}},
        "spec": {
            "restartPolicy": "Never",
            "serviceAccountName": service_account,
            # IRSA needs no API token: EKS' pod identity webhook projects its own `aws-iam-token`.
            "automountServiceAccountToken": False,
            "securityContext": pod_security(run_as_user),
            "containers": [
                {
                    "name": component,
                    **image_fields(image),
                    "args": args,
                    "env": plain_env(env) + env_from_secret(secret_name, secret_keys),
                    "resources": resources(Resources("100m", "128Mi", "1", "256Mi")),
                    "securityContext": container_security(read_only_root=True),
                    "volumeMounts": mounts,
                }
            ],
            "volumes": volumes,
        },
    }


def cronjob(
    *, name: str, ns: str, app: str, component: str, schedule: str, pod: Manifest
) -> Manifest:
    return {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": metadata(name, ns, labels(app, component)),
        "spec": {
            "schedule": schedule,
            "timeZone": "Etc/UTC",
            "concurrencyPolicy": "Forbid",
            "startingDeadlineSeconds": 600,
            "successfulJobsHistoryLimit": 3,
            "failedJobsHistoryLimit": 5,
            "jobTemplate": {
                "metadata": {"labels": labels(app, component)},
                "spec": {"backoffLimit": 1, "activeDeadlineSeconds": 6 * 3600, "template": pod},
            },
        },
    }


def job(*, name: str, ns: str, app: str, component: str, pod: Manifest) -> Manifest:
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": metadata(name, ns, labels(app, component)),
        "spec": {
            "backoffLimit": 0,
            "activeDeadlineSeconds": 6 * 3600,
            "ttlSecondsAfterFinished": 86400,
            "template": pod,
        },
    }
