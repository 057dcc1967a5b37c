"""prod: what the Kubernetes side declares, checked object by object."""

from __future__ import annotations

import kubernetes_validate
import pytest

from automation.stack.render import Rendered
from components.catalog import CATALOG
from components.manifests import SECURITY_HEADERS
from tests.program.conftest import K8S_VERSION

LABEL_KEYS = {f"app.kubernetes.io/{k}" for k in ("name", "component", "part-of", "managed-by")}


def container(obj: dict) -> dict:
    return obj["spec"]["template"]["spec"]["containers"][0]


CRDS = {"monitoring.coreos.com/v1", "monitoring.coreos.com/v1alpha1"}


def test_every_object_validates_strictly(prod: Rendered) -> None:
    """Built-in kinds against the pinned version's strict schemas. Prometheus Operator CRDs have
    no schema in kubernetes-validate; tests/alerts checks their structure."""
    objects = prod.kubernetes_objects()
    builtin = [o for o in objects if o["apiVersion"] not in CRDS]
    assert len(builtin) > 50
    for obj in builtin:
        kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
    crds = sorted({o["kind"] for o in objects if o["apiVersion"] in CRDS})
    assert crds == ["AlertmanagerConfig", "PrometheusRule", "ServiceMonitor"]


def test_prometheus_scrapes_services_exporters_and_the_pushgateway(prod: Rendered) -> None:
    monitors = {o["metadata"]["name"]: o["spec"] for o in prod.k8s("ServiceMonitor")}
    assert set(monitors) == {
        "qr-api", "qr-postgres-exporter", "qr-redis-exporter",
        "quickbite-backend", "quickbite-postgres-exporter", "quickbite-redis-exporter",
        "prometheus-pushgateway",
    }  # fmt: skip
    push = monitors["prometheus-pushgateway"]
    assert push["endpoints"][0]["honorLabels"] is True
    assert push["namespaceSelector"] == {"matchNames": ["monitoring"]}
    (exporter_service,) = prod.k8s("Service", "qr-postgres-exporter", "qr")
    assert monitors["qr-postgres-exporter"]["selector"]["matchLabels"].items() <= (
        exporter_service["metadata"]["labels"].items()
    )
    (db,) = prod.k8s("StatefulSet", "qr-db")
    sidecar = db["spec"]["template"]["spec"]["containers"][1]
    assert sidecar["ports"][0]["containerPort"] == 9187
    (password,) = [e for e in sidecar["env"] if e["name"] == "DATA_SOURCE_PASS_FILE"]
    assert password["value"] == "/run/secrets/opsplane/POSTGRES_PASSWORD"
    (volume,) = [v for v in db["spec"]["template"]["spec"]["volumes"] if "secret" in v]
    assert volume["secret"]["secretName"] == "qr-db-credentials"


def test_alerts_route_to_the_configured_receivers(prod: Rendered) -> None:
    (routing,) = prod.k8s("AlertmanagerConfig", namespace="quickbite")
    receivers = {r["name"]: r for r in routing["spec"]["receivers"]}
    webhooks = [c["url"] for r in receivers.values() for c in r.get("webhookConfigs", [])]
    assert "https://alerts.example.com/opsplane/page" in webhooks


def test_every_object_carries_the_standard_labels(prod: Rendered) -> None:
    for obj in prod.kubernetes_objects():
        assert set(obj["metadata"]["labels"]) >= LABEL_KEYS, obj["metadata"]["name"]


@pytest.mark.parametrize(
    ("app", "service", "port", "path"),
    [
        ("qr", "api", 8000, "/health"),
        ("qr", "web", 3000, "/"),
        ("qr", "admin", 3001, "/"),
        ("quickbite", "backend", 8080, "/actuator/health"),
        ("quickbite", "frontend", 8080, "/"),
    ],
)
def test_deployments_have_probes_ports_and_safe_rollouts(
    prod: Rendered, app: str, service: str, port: int, path: str
) -> None:
    (deploy,) = prod.k8s("Deployment", f"{app}-{service}", app)
    c = container(deploy)
    assert c["ports"][0]["containerPort"] == port
    assert c["readinessProbe"]["httpGet"] == {"path": path, "port": port}
    assert c["livenessProbe"]["httpGet"] == {"path": path, "port": port}
    assert deploy["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    assert set(c["resources"]) == {"requests", "limits"}
    security = c["securityContext"]
    assert security["runAsNonRoot"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["readOnlyRootFilesystem"] is True
    assert security["capabilities"] == {"drop": ["ALL"]}


def test_quickbite_backend_resources_are_the_runbooks(prod: Rendered) -> None:
    (deploy,) = prod.k8s("Deployment", "quickbite-backend")
    assert container(deploy)["resources"] == {
        "requests": {"cpu": "500m", "memory": "1Gi"},
        "limits": {"cpu": "2", "memory": "2Gi"},
    }


def test_vertical_scaling_is_config(render_stack) -> None:
    """QuickBite runbook "Scaling → Vertical": requests/limits from config, not a manifest edit."""
    rendered = render_stack(
        "prod",
        {"opsplane:apps": {"quickbite": {"services": {"backend": {
            "resources": {"memoryRequest": "2Gi", "memoryLimit": "4Gi"}}}}}},
    )  # fmt: skip
    (deploy,) = rendered.k8s("Deployment", "quickbite-backend")
    assert container(deploy)["resources"] == {
        "requests": {"cpu": "500m", "memory": "2Gi"},
        "limits": {"cpu": "2", "memory": "4Gi"},
    }


def test_services_expose_the_runbook_ports(prod: Rendered) -> None:
    (frontend,) = prod.k8s("Service", "frontend", "quickbite")
    assert frontend["spec"]["ports"][0]["port"] == 80
    (api,) = prod.k8s("Service", "api", "qr")
    assert api["spec"]["ports"][0]["port"] == 8000


def test_hpa_and_pdb_exactly_for_services_that_scale(prod: Rendered) -> None:
    scaling = {
        f"{a}-{s.name}" for a, spec in CATALOG.items() for s in spec.services if s.max_replicas > 1
    }
    hpas = {o["metadata"]["name"]: o for o in prod.k8s("HorizontalPodAutoscaler")}
    pdbs = {o["metadata"]["name"] for o in prod.k8s("PodDisruptionBudget")}
    assert set(hpas) == scaling == pdbs
    assert "qr-admin" not in hpas  # maxReplicas 1: nothing to scale or protect
    api = hpas["qr-api"]["spec"]
    assert (api["minReplicas"], api["maxReplicas"]) == (3, 10)  # Pulumi.prod.yaml
    assert hpas["quickbite-backend"]["spec"]["maxReplicas"] == 5  # runbook: scale to 5


def test_quickbite_ingress_keeps_websockets_open_for_an_hour(prod: Rendered) -> None:
    (ingress,) = prod.k8s("Ingress", "quickbite", "quickbite")
    notes = ingress["metadata"]["annotations"]
    assert notes["nginx.ingress.kubernetes.io/proxy-read-timeout"] == "3600"
    assert notes["nginx.ingress.kubernetes.io/proxy-send-timeout"] == "3600"
    backend = ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    assert backend == {"name": "frontend", "port": {"number": 80}}


@pytest.mark.parametrize("app", ["qr", "quickbite"])
def test_stores_are_statefulsets_with_volumes(prod: Rendered, app: str) -> None:
    for kind, mount, port in (("db", "/var/lib/postgresql/data", 5432), ("redis", "/data", 6379)):
        (sts,) = prod.k8s("StatefulSet", f"{app}-{kind}", app)
        claim = sts["spec"]["volumeClaimTemplates"][0]
        assert claim["spec"]["resources"]["requests"]["storage"].endswith("Gi")
        c = container(sts)
        assert {"name": "data", "mountPath": mount} in c["volumeMounts"]
        assert c["ports"][0]["containerPort"] == port
        assert c["securityContext"]["runAsNonRoot"] is True


def test_redis_requires_its_password(prod: Rendered) -> None:
    (sts,) = prod.k8s("StatefulSet", "quickbite-redis")
    c = container(sts)
    assert c["args"][:2] == ["--requirepass", "$(REDIS_PASSWORD)"]
    (env,) = [e for e in c["env"] if e["name"] == "REDIS_PASSWORD"]
    assert env["valueFrom"]["secretKeyRef"]["name"] == "quickbite-redis-credentials"


@pytest.mark.parametrize("app", ["qr", "quickbite"])
def test_network_policies_deny_by_default_and_fence_the_stores(prod: Rendered, app: str) -> None:
    policies = {p["metadata"]["name"]: p["spec"] for p in prod.k8s("NetworkPolicy", namespace=app)}
    deny = policies[f"{app}-default-deny"]
    assert deny == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}
    for kind, port in (("db", 5432), ("redis", 6379)):
        spec = policies[f"{app}-{kind}-from-clients"]
        assert spec["podSelector"]["matchLabels"] == {"app.kubernetes.io/name": f"{app}-{kind}"}
        (rule,) = spec["ingress"]
        assert rule["ports"] == [{"protocol": "TCP", "port": port}]
        (source,) = rule["from"]
        assert source["podSelector"]["matchLabels"] == {
            "app.kubernetes.io/part-of": app,
            "opsplane.dev/db-client": "true",
        }
        assert "namespaceSelector" not in source  # nothing outside the namespace


def test_ops_jobs_may_reach_the_pushgateway_and_https_only(prod: Rendered) -> None:
    policies = {p["metadata"]["name"]: p["spec"] for p in prod.k8s("NetworkPolicy", namespace="qr")}
    push = policies["qr-allow-pushgateway"]
    (selector,) = push["podSelector"]["matchExpressions"]
    assert {"backup-db", "backup-redis", "backup-objects", "restore-drill", "task"} <= set(
        selector["values"]
    )
    (rule,) = push["egress"]
    assert rule["ports"] == [{"protocol": "TCP", "port": 9091}]
    assert rule["to"] == [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}
    ]
    # the pushed address is in that namespace on that port
    (drill,) = prod.k8s("CronJob", "qr-restore-drill")
    args = drill["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[args.index("--pushgateway") + 1].endswith(".monitoring.svc:9091")


def test_only_database_clients_carry_the_client_label(prod: Rendered) -> None:
    labelled = {
        d["metadata"]["name"]
        for d in prod.k8s("Deployment")
        if d["spec"]["template"]["metadata"]["labels"].get("opsplane.dev/db-client") == "true"
    }
    assert labelled == {"qr-api", "quickbite-backend"}


def test_secrets_reach_containers_only_through_secret_refs(prod: Rendered) -> None:
    for deploy in prod.k8s("Deployment"):
        for env in container(deploy)["env"]:
            if "value" in env:
                assert not any(
                    word in env["name"] for word in ("PASSWORD", "SECRET", "KEY", "URL")
                ) or env["name"] in ("SPRING_DATASOURCE_URL", "API_URL", "BACKEND_URL"), env
    # the only ConfigMaps are the ingress security headers: no secret ever lands in one
    maps = {c["metadata"]["name"]: c["data"] for c in prod.k8s("ConfigMap")}
    assert set(maps) == {"qr-security-headers", "quickbite-security-headers"}
    assert all(set(data) == set(SECURITY_HEADERS) for data in maps.values())


def test_qr_api_gets_the_runbook_quota_tuning(prod: Rendered) -> None:
    (deploy,) = prod.k8s("Deployment", "qr-api")
    env = {e["name"]: e.get("value") for e in container(deploy)["env"]}
    assert env["SQLALCHEMY_POOL_SIZE"] == "20"
    assert env["SQLALCHEMY_MAX_OVERFLOW"] == "40"
    assert env["SQLALCHEMY_POOL_TIMEOUT"] == "30"
    assert env["SQLALCHEMY_POOL_RECYCLE"] == "3600"
    assert env["REDIS_MAX_CONNECTIONS"] == "50"
    assert env["WEB_CONCURRENCY"] == "4"
    assert '"/billing/*": "30/minute"' in env["RATE_LIMITS"]
    assert env["CACHE_TTL_PLANS"] == "3600"
