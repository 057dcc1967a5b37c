"""A cluster restore that includes Redis (`clusterJob.mountRedis`): Redis is scaled to 0, the Job
mounts its data volume as the Redis user and gets `--redis-data-dir`, and is created only after
the StatefulSet; without the request Redis runs its configured replica and no Job mounts it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import kubernetes_validate
import pytest
from pulumi.runtime import mocks as pulumi_mocks

from automation.errors import UserInputError
from automation.stack.render import Rendered
from components.task_job import REDIS_DATA_MOUNT
from tests.program.conftest import K8S_VERSION, render

CRDS = {"monitoring.coreos.com/v1", "monitoring.coreos.com/v1alpha1"}


def request(app: str = "qr", *, mount_redis: bool = True, task: str = "restore") -> dict:
    args = ["--bucket", "b", "--component", "all", "--latest", "--yes", "--json"]
    body: dict[str, Any] = {"app": app, "task": task, "args": args, "id": "restore-20261122-0800"}
    if mount_redis:
        body["mountRedis"] = True
    return body


@pytest.fixture
def dependencies(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, list[str]]]:
    """Resource name -> the names of the resources it was registered as depending on (the mock
    monitor does not hand dependencies to the mocks, so read them off the register request)."""
    seen: dict[str, list[str]] = {}
    original = pulumi_mocks.MockMonitor.RegisterResource

    def recording(self: Any, req: Any) -> Any:
        seen[req.name] = [urn.rsplit("::", 1)[-1] for urn in req.dependencies]
        return original(self, req)

    monkeypatch.setattr(pulumi_mocks.MockMonitor, "RegisterResource", recording)
    yield seen


def replicas(rendered: Rendered) -> dict[str, int]:
    return {s["metadata"]["name"]: s["spec"]["replicas"] for s in rendered.k8s("StatefulSet")}


def pod_spec(obj: dict) -> dict:
    return obj["spec"]["template"]["spec"]


def test_redis_restore_request_stops_redis_and_mounts_its_volume(dependencies) -> None:
    rendered = render("prod", {"opsplane:clusterJob": request("qr")})

    assert replicas(rendered) == {
        "qr-db": 1,
        "qr-redis": 0,
        "quickbite-db": 1,
        "quickbite-redis": 1,
    }
    (redis,) = rendered.k8s("StatefulSet", "qr-redis", "qr")
    (template,) = redis["spec"]["volumeClaimTemplates"]
    claim = f"{template['metadata']['name']}-qr-redis-0"  # what the StatefulSet's pod 0 gets
    assert claim == "data-qr-redis-0"
    redis_user = pod_spec(redis)["securityContext"]["runAsUser"]
    assert redis_user == 999

    (job,) = rendered.k8s("Job", "qr-restore-20261122-0800", "qr")
    pod = pod_spec(job)
    volumes = {v["name"]: v for v in pod["volumes"]}
    (c,) = pod["containers"]
    mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
    assert volumes[mounts[REDIS_DATA_MOUNT]]["persistentVolumeClaim"] == {"claimName": claim}
    security = pod["securityContext"]
    assert security["runAsUser"] == security["fsGroup"] == security["runAsGroup"] == redis_user
    assert security["runAsNonRoot"] is True
    assert c["args"][-2:] == ["--redis-data-dir", REDIS_DATA_MOUNT]
    assert c["args"][3:-2] == ["restore", *request()["args"]]  # automation's args, unchanged
    assert "/tmp" in mounts  # the read-only root still has its scratch space

    assert "qr-redis-statefulset" in dependencies["qr-task-job"]


def test_every_object_of_a_redis_restore_validates_and_policies_admit_the_job() -> None:
    rendered = render("prod", {"opsplane:clusterJob": request("quickbite")})
    builtin = [o for o in rendered.kubernetes_objects() if o["apiVersion"] not in CRDS]
    for obj in builtin:
        kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
    assert replicas(rendered)["quickbite-redis"] == 0 and replicas(rendered)["qr-redis"] == 1
    (job,) = rendered.k8s("Job", namespace="quickbite")
    labels = job["spec"]["template"]["metadata"]["labels"]
    # Namespace stays `restricted`: the pod runs as non-root with every capability dropped.
    (ns,) = rendered.k8s("Namespace", "quickbite")
    assert ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    (c,) = pod_spec(job)["containers"]
    assert c["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert c["securityContext"]["allowPrivilegeEscalation"] is False
    # S3 over HTTPS and the database: the policies that admit the ops-runner select this pod.
    (https,) = rendered.k8s("NetworkPolicy", "quickbite-allow-https-egress")
    (expression,) = https["spec"]["podSelector"]["matchExpressions"]
    assert labels["app.kubernetes.io/component"] in expression["values"]
    (db_clients,) = rendered.k8s("NetworkPolicy", "quickbite-db-from-clients")
    allowed = db_clients["spec"]["ingress"][0]["from"][0]["podSelector"]["matchLabels"]
    assert allowed.items() <= labels.items()
    (claim_volume,) = [v for v in pod_spec(job)["volumes"] if "persistentVolumeClaim" in v]
    assert claim_volume["persistentVolumeClaim"]["claimName"] == "data-quickbite-redis-0"


def test_without_the_request_redis_runs_and_no_job_mounts_it(prod: Rendered) -> None:
    assert set(replicas(prod).values()) == {1}
    assert not [j for j in prod.k8s("Job") if "-migrate-" not in j["metadata"]["name"]]


def test_a_database_only_cluster_job_leaves_redis_running(dependencies) -> None:
    rendered = render("prod", {"opsplane:clusterJob": request("qr", mount_redis=False)})
    assert set(replicas(rendered).values()) == {1}
    (job,) = [j for j in rendered.k8s("Job") if "-migrate-" not in j["metadata"]["name"]]
    pod = pod_spec(job)
    assert [v for v in pod["volumes"] if "persistentVolumeClaim" in v] == []
    assert pod["securityContext"]["runAsUser"] == 10001  # the ops-runner image's user
    assert "--redis-data-dir" not in pod["containers"][0]["args"]
    assert "qr-redis-statefulset" not in dependencies["qr-task-job"]


def test_mount_redis_is_only_for_a_restore() -> None:
    with pytest.raises(UserInputError, match=r"opsplane:clusterJob: mountRedis: only a restore"):
        render("prod", {"opsplane:clusterJob": request("qr", task="backup")})


def test_dev_ignores_the_request_its_redis_container_keeps_running(dev: Rendered) -> None:
    """The Job is a prod (Kubernetes) mechanism; on dev the restore runs with --redis-data-dir."""
    rendered = render("dev", {"opsplane:clusterJob": request("qr")})
    assert "clusterJob" not in rendered.outputs
    redis = [
        r
        for r in rendered.of_type("docker:index/container:Container")
        if r.name.endswith("-redis-container")
    ]
    assert redis and all(r.inputs.get("start", True) is not False for r in redis)
    assert len(rendered.resources) == len(dev.resources)
