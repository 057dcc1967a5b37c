"""Hardened by default (issue 16): what checkov checks, plus the per-workload rules its global
skips in .checkov.yaml cannot express; the admin surface, security headers and CORS."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import kubernetes_validate
import pytest

from automation.stack.render import Rendered
from components.config import ConfigError, parse_settings
from components.manifests import (
    CUSTOM_HEADERS_ANNOTATION,
    IMAGE_PINNING_ANNOTATION,
    SECURITY_HEADERS,
)
from components.pitr import SIDECAR
from tests.program.conftest import K8S_VERSION, render, stack_config

WORKLOAD_KINDS = ("Deployment", "StatefulSet", "CronJob", "Job")
# The data stores run as their images' own users, who own the data on their volumes
# (.checkov.yaml, CKV_K8S_40). Nothing else may run below 10000.
STORE_UIDS = {"qr-db": 70, "quickbite-db": 70, "qr-redis": 999, "quickbite-redis": 999}
# Containers that take secrets as env because their program reads env and no file
# (.checkov.yaml, CKV_K8S_35); PostgreSQL and its exporter read files.
ENV_SECRET_READERS = {
    ("qr-api", "api"),  # FastAPI settings from env
    ("quickbite-backend", "backend"),  # Spring Boot env binding
    ("qr-redis", "redis"), ("quickbite-redis", "redis"),  # --requirepass $(REDIS_PASSWORD)
    ("qr-redis", "exporter"), ("quickbite-redis", "exporter"),  # redis_exporter: REDIS_PASSWORD
    *((f"{app}-{job}", job) for app in ("qr", "quickbite")
      for job in ("backup-db", "backup-redis", "restore-drill")),  # automation reads env
    ("qr-migrate-1-0-0", "migrate"),  # alembic reads DATABASE_URL from env
    ("qr-db", "base-backup"), ("quickbite-db", "base-backup"),  # automation reads env (PITR)
}  # fmt: skip
ADMIN = {
    "allowCidrs": ["203.0.113.0/24", "2001:db8::/32"],
    "authUrl": "https://sso.example.com/auth",
}
ADMIN_OPEN = {"opsplane:apps": {"qr": {"admin": ADMIN}}}


def prod_raw() -> dict[str, Any]:
    """prod's `opsplane:*` config as parse_settings takes it."""
    config = stack_config("prod")
    return {k.split(":", 1)[1]: v for k, v in config.items() if k.startswith("opsplane:")}


def pod_spec(obj: dict[str, Any]) -> dict[str, Any]:
    spec = obj["spec"]
    if obj["kind"] == "CronJob":
        spec = spec["jobTemplate"]["spec"]
    return spec["template"]["spec"]


def workloads(rendered: Rendered) -> list[dict[str, Any]]:
    return [o for kind in WORKLOAD_KINDS for o in rendered.k8s(kind)]


def ingress_notes(rendered: Rendered, name: str) -> dict[str, str]:
    (ingress,) = rendered.k8s("Ingress", name)
    return ingress["metadata"]["annotations"]


def hosts(rendered: Rendered, name: str) -> list[str]:
    (ingress,) = rendered.k8s("Ingress", name)
    return [r["host"] for r in ingress["spec"]["rules"]]


def env_of(rendered: Rendered, deployment: str) -> dict[str, Any]:
    (deploy,) = rendered.k8s("Deployment", deployment)
    return {e["name"]: e.get("value") for e in pod_spec(deploy)["containers"][0]["env"]}


@pytest.fixture(scope="module")
def admin_open() -> Rendered:
    return render("prod", ADMIN_OPEN)


class TestPods:
    def test_no_pod_mounts_a_service_account_token(self, prod: Rendered) -> None:
        """None talks to the Kubernetes API; IRSA (the ops-runner) uses its own projected token."""
        found = workloads(prod)
        assert len(found) >= 14
        for obj in found:
            assert pod_spec(obj)["automountServiceAccountToken"] is False, obj["metadata"]["name"]

    def test_only_the_data_stores_run_below_uid_10000(self, prod: Rendered) -> None:
        for obj in workloads(prod):
            name, spec = obj["metadata"]["name"], pod_spec(obj)
            uid = spec["securityContext"]["runAsUser"]
            assert spec["securityContext"]["runAsGroup"] == uid
            assert uid == STORE_UIDS.get(name, uid) and (name in STORE_UIDS or uid >= 10000), name
            for c in spec["containers"]:
                assert c["securityContext"].get("runAsUser", uid) in (uid, 65534), name
                assert name in STORE_UIDS or c["securityContext"].get("runAsUser", uid) >= 10000

    def test_every_long_running_container_has_liveness_and_readiness(self, prod: Rendered) -> None:
        """All but PITR's base-backup sidecar, which has liveness only: a pod is Ready when every
        container is, so its readiness would gate PostgreSQL's (components/pitr.py)."""
        sidecars = 0
        for kind in ("Deployment", "StatefulSet"):
            for obj in prod.k8s(kind):
                for c in pod_spec(obj)["containers"]:
                    assert c["livenessProbe"], (obj["metadata"], c["name"])
                    if c["name"] == SIDECAR:
                        sidecars += 1
                        assert "readinessProbe" not in c
                        skip = obj["metadata"]["annotations"]["checkov.io/skip1"]
                        assert skip.startswith("CKV_K8S_9=")
                    else:
                        assert c["readinessProbe"], (obj["metadata"], c["name"])
        assert sidecars == 2  # Pulumi.prod.yaml archives both apps

    def test_secrets_are_env_only_where_the_program_reads_env(self, prod: Rendered) -> None:
        readers = {
            (obj["metadata"]["name"], c["name"])
            for obj in workloads(prod)
            for c in pod_spec(obj)["containers"]
            if any("secretKeyRef" in e.get("valueFrom", {}) for e in c.get("env", []))
        }
        assert readers == ENV_SECRET_READERS

    def test_postgres_and_its_exporter_read_the_password_from_files(self, prod: Rendered) -> None:
        (db,) = prod.k8s("StatefulSet", "quickbite-db")
        spec = pod_spec(db)
        (volume,) = [v for v in spec["volumes"] if "secret" in v]
        assert volume["secret"]["secretName"] == "quickbite-db-credentials"
        containers = {c["name"]: c for c in spec["containers"]}
        for name, var in (("db", "POSTGRES_PASSWORD_FILE"), ("exporter", "DATA_SOURCE_PASS_FILE")):
            c = containers[name]
            env = {e["name"]: e.get("value") for e in c["env"]}
            assert env[var] == "/run/secrets/opsplane/POSTGRES_PASSWORD"
            (mount,) = [m for m in c["volumeMounts"] if m["name"] == volume["name"]]
            assert mount["readOnly"] is True and mount["mountPath"] == "/run/secrets/opsplane"


class TestImages:
    def test_tags_are_pulled_always_and_the_pod_says_tag(self, prod: Rendered) -> None:
        (deploy,) = prod.k8s("Deployment", "qr-api")
        c = pod_spec(deploy)["containers"][0]
        assert "@" not in c["image"] and c["imagePullPolicy"] == "Always"
        notes = deploy["spec"]["template"]["metadata"]["annotations"]
        assert notes[IMAGE_PINNING_ANNOTATION] == "api=tag"
        (db,) = prod.k8s("StatefulSet", "qr-db")  # PITR's PostgreSQL: built, pushed, by digest
        notes = db["spec"]["template"]["metadata"]["annotations"]
        assert notes[IMAGE_PINNING_ANNOTATION] == "db=digest, exporter=tag, base-backup=digest"

    def test_a_configured_digest_is_used_as_given(
        self, render_stack: Callable[..., Rendered]
    ) -> None:
        ref = "ghcr.io/beetechone/qr-api:1.0.0@sha256:" + "ab" * 32
        pg = "postgres:16.4-alpine@sha256:" + "cd" * 32
        rendered = render_stack(
            "prod",
            {
                "opsplane:apps": {"qr": {"services": {"api": {"image": ref}}, "postgresImage": pg}},
                "opsplane:pitr": {"apps": []},  # else the server image is PITR's, built
            },
        )
        (deploy,) = rendered.k8s("Deployment", "qr-api")
        c = pod_spec(deploy)["containers"][0]
        assert (c["image"], c["imagePullPolicy"]) == (ref, "IfNotPresent")
        assert deploy["spec"]["template"]["metadata"]["annotations"][IMAGE_PINNING_ANNOTATION] == (
            "api=digest"
        )
        (db,) = rendered.k8s("StatefulSet", "qr-db")
        notes = db["spec"]["template"]["metadata"]["annotations"]
        assert notes[IMAGE_PINNING_ANNOTATION] == "db=digest, exporter=tag"

    def test_the_ops_runner_image_is_by_digest(self, prod: Rendered) -> None:
        for job in prod.k8s("CronJob"):
            c = pod_spec(job)["containers"][0]
            assert "@sha256:" in c["image"] and c["imagePullPolicy"] == "IfNotPresent"


class TestAdminSurface:
    def test_without_an_allowlist_the_admin_has_no_ingress(self, prod: Rendered) -> None:
        assert [i["metadata"]["name"] for i in prod.k8s("Ingress", namespace="qr")] == ["qr"]
        assert "admin.qr.example.com" not in hosts(prod, "qr")
        (policy,) = prod.k8s("NetworkPolicy", "qr-admin-ingress")
        sources = policy["spec"]["ingress"][0]["from"]
        assert not any(
            s.get("namespaceSelector", {}).get("matchLabels", {}).get("kubernetes.io/metadata.name")
            == "ingress-nginx"
            for s in sources
        )
        assert prod.k8s("Deployment", "qr-admin")  # the app still runs, only unpublished

    def test_an_allowlist_publishes_it_behind_source_ranges_and_auth(
        self, admin_open: Rendered
    ) -> None:
        assert hosts(admin_open, "qr-admin") == ["admin.qr.example.com"]
        notes = ingress_notes(admin_open, "qr-admin")
        assert notes["nginx.ingress.kubernetes.io/whitelist-source-range"] == (
            "203.0.113.0/24,2001:db8::/32"
        )
        assert notes["nginx.ingress.kubernetes.io/auth-url"] == "https://sso.example.com/auth"
        assert "nginx.ingress.kubernetes.io/auth-signin" not in notes
        # the public ingress stays open to all and never carries the allowlist
        assert "nginx.ingress.kubernetes.io/whitelist-source-range" not in ingress_notes(
            admin_open, "qr"
        )
        (policy,) = admin_open.k8s("NetworkPolicy", "qr-admin-ingress")
        controller = {"matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}}
        assert {"namespaceSelector": controller} in policy["spec"]["ingress"][0]["from"]
        for obj in admin_open.kubernetes_objects():
            if obj["apiVersion"].startswith("monitoring.coreos.com"):
                continue
            kubernetes_validate.validate(obj, K8S_VERSION, strict=True)

    @pytest.mark.parametrize(
        ("admin", "expected"),
        [
            ({"allowCidrs": ["10.0.0.1/8"]}, "apps.qr.admin.allowCidrs.0: must be a CIDR"),
            ({"allowCidrs": ["everyone"]}, "apps.qr.admin.allowCidrs.0: must be a CIDR"),
            ({"authUrl": "sso.example.com"}, "apps.qr.admin.authUrl: String should match"),
            ({"allowList": ["10.0.0.0/8"]}, "apps.qr.admin.allowList: unknown key"),
        ],
    )
    def test_bad_admin_config_names_the_key(self, admin: dict, expected: str) -> None:
        raw = prod_raw()
        raw["apps"]["qr"]["admin"] = admin
        with pytest.raises(ConfigError, match=expected.replace(".", r"\.")):
            parse_settings("prod", raw)

    def test_an_app_without_an_admin_surface_rejects_the_key(self) -> None:
        raw = prod_raw()
        raw["apps"]["quickbite"]["admin"] = {"allowCidrs": ["10.0.0.0/8"]}
        with pytest.raises(ConfigError, match=r"apps\.quickbite\.admin: quickbite has no admin"):
            parse_settings("prod", raw)


class TestHeadersAndCors:
    @pytest.mark.parametrize("ingress", ["qr", "quickbite"])
    def test_both_apps_send_the_security_headers(self, prod: Rendered, ingress: str) -> None:
        ref = ingress_notes(prod, ingress)[CUSTOM_HEADERS_ANNOTATION]
        namespace, name = ref.split("/")
        (headers,) = prod.k8s("ConfigMap", name, namespace)
        data = headers["data"]
        assert data["Strict-Transport-Security"].startswith("max-age=31536000")
        assert data["X-Content-Type-Options"] == "nosniff"
        assert data["Referrer-Policy"] == "strict-origin-when-cross-origin"
        assert data["X-Frame-Options"] == "DENY"
        assert data["Content-Security-Policy"] == "frame-ancestors 'none'"
        assert data == SECURITY_HEADERS

    def test_the_admin_ingress_sends_them_too(self, admin_open: Rendered) -> None:
        notes = ingress_notes(admin_open, "qr-admin")
        assert notes[CUSTOM_HEADERS_ANNOTATION] == "qr/qr-security-headers"

    def test_qr_api_cors_defaults_to_the_apps_own_pages(
        self, prod: Rendered, dev: Rendered, admin_open: Rendered
    ) -> None:
        assert env_of(prod, "qr-api")["CORS_ALLOWED_ORIGINS"] == "https://qr.example.com"
        assert env_of(admin_open, "qr-api")["CORS_ALLOWED_ORIGINS"] == (
            "https://qr.example.com,https://admin.qr.example.com"
        )
        (api,) = [r for r in dev.resources if r.name == "qr-api-container"]
        envs = [e for e in api.inputs["envs"]["value"] if e.startswith("CORS_ALLOWED_ORIGINS=")]
        assert envs == ["CORS_ALLOWED_ORIGINS=http://localhost:3000,http://localhost:3001"]
        assert "CORS_ALLOWED_ORIGINS" not in env_of(prod, "quickbite-backend")

    def test_configured_origins_replace_the_default(
        self, render_stack: Callable[..., Rendered]
    ) -> None:
        origins = ["https://qr.example.com", "https://partner.example.org:8443"]
        rendered = render_stack("prod", {"opsplane:apps": {"qr": {"corsOrigins": origins}}})
        assert env_of(rendered, "qr-api")["CORS_ALLOWED_ORIGINS"] == ",".join(origins)

    def test_an_origin_with_a_path_is_refused(self) -> None:
        raw = prod_raw()
        raw["apps"]["qr"]["corsOrigins"] = ["https://qr.example.com/app"]
        with pytest.raises(ConfigError, match=r"apps\.qr\.corsOrigins\.0: must be an origin"):
            parse_settings("prod", raw)
