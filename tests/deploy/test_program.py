"""What the program declares for deploys: a migration Job per app on prod that the app's
Deployments depend on, and a one-shot migration container on dev that the app containers wait
for (mock runtime, every Kubernetes object validated strictly)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import kubernetes_validate
import pytest
from pulumi.runtime import mocks as pulumi_mocks

from automation.stack.render import Rendered, unwrap
from components.config import ConfigError, parse_settings
from components.migration import EXIT_LABEL, image_slug, migration_name
from tests.fakes.fake_stack import sample_deploy
from tests.program.conftest import K8S_VERSION, render, stack_config

FLYWAY_JOB = {"opsplane:apps": {"quickbite": {"deploy": {"migrationJob": True}}}}
CONTAINER = "docker:index/container:Container"


@pytest.fixture
def dependencies(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    """Resource name -> (its URN, the URNs it depends on), as the engine is told them."""
    seen: dict[str, Any] = {}
    original = pulumi_mocks.MockMonitor.RegisterResource

    def recording(self: Any, request: Any) -> Any:
        response = original(self, request)
        seen[request.name] = (response.urn, set(request.dependencies))
        return response

    monkeypatch.setattr(pulumi_mocks.MockMonitor, "RegisterResource", recording)
    yield seen


def job(rendered: Rendered, name: str) -> dict[str, Any]:
    (found,) = rendered.k8s("Job", name)
    return found


def test_qr_migration_job_runs_alembic_in_the_api_image() -> None:
    prod = render("prod")
    migrate = job(prod, "qr-migrate-1-0-0")
    spec = migrate["spec"]
    assert spec["backoffLimit"] == 0 and spec["activeDeadlineSeconds"] == 900
    assert "ttlSecondsAfterFinished" not in spec  # a failed Job stays for its logs
    assert migrate["metadata"]["annotations"] == {"pulumi.com/replaceUnready": "true"}
    pod = spec["template"]["spec"]
    (c,) = pod["containers"]
    assert c["image"] == "ghcr.io/beetechone/qr-api:1.0.0"
    assert c["imagePullPolicy"] == "Always"  # a tag can move; a digest would be IfNotPresent
    assert spec["template"]["metadata"]["annotations"] == {
        "opsplane.dev/image-pinning": "migrate=tag"
    }
    assert c["command"] == ["alembic", "upgrade", "head"]
    assert c["env"] == [
        {"name": "DATABASE_URL", "valueFrom": {"secretKeyRef": {"name": "qr-migrate-env",
                                                                "key": "DATABASE_URL"}}}
    ]  # fmt: skip
    assert pod["automountServiceAccountToken"] is False
    assert spec["template"]["metadata"]["labels"]["opsplane.dev/db-client"] == "true"
    (secret,) = prod.k8s("Secret", "qr-migrate-env", "qr")
    assert secret["stringData"] == {"DATABASE_URL": "[secret]"}
    assert prod.outputs["ops"]["qr"]["deploy"]["migration"]["job"] == "qr-migrate-1-0-0"


def test_quickbite_migrates_at_start_by_default_and_with_a_flyway_job_when_asked() -> None:
    default = render("prod")
    assert default.k8s("Job", namespace="quickbite") == []
    assert default.outputs["ops"]["quickbite"]["deploy"]["migration"]["atStart"] is True
    asked = render(
        "prod",
        {"opsplane:apps": {"quickbite": {"deploy": {
            "migrationJob": True, "backoffLimit": 2, "activeDeadlineSeconds": 300}}}},
    )  # fmt: skip
    migrate = job(asked, "quickbite-migrate-1-0-0")
    assert (migrate["spec"]["backoffLimit"], migrate["spec"]["activeDeadlineSeconds"]) == (2, 300)
    (c,) = migrate["spec"]["template"]["spec"]["containers"]
    assert c["command"] == ["flyway", "migrate"]
    env = {e["name"]: e.get("value", e.get("valueFrom")) for e in c["env"]}
    assert env["FLYWAY_URL"] == "jdbc:postgresql://db:5432/quickbite"
    assert env["FLYWAY_PASSWORD"] == {
        "secretKeyRef": {"name": "quickbite-migrate-env", "key": "FLYWAY_PASSWORD"}
    }
    assert asked.outputs["ops"]["quickbite"]["deploy"]["migration"]["atStart"] is False


def test_a_new_image_tag_is_a_new_job() -> None:
    newer = render(
        "prod", {"opsplane:apps": {"qr": {"services": {"api": {"image": "ghcr.io/o/api:2.1"}}}}}
    )
    assert [j["metadata"]["name"] for j in newer.k8s("Job", namespace="qr")] == ["qr-migrate-2-1"]
    assert newer.outputs["ops"]["qr"]["deploy"]["images"]["api"] == "ghcr.io/o/api:2.1"


def test_a_rollback_onto_a_compatible_head_declares_no_migration_for_the_older_image(
    dependencies: dict,
) -> None:
    """`deploy.skipMigrationFor`: the older image's `alembic upgrade head` would not know the
    newer (compatible) revision, so no Job/container is declared for it; any other image still
    migrates, and the Deployments/containers still come up."""
    old = "ghcr.io/beetechone/qr-api:1.0.0"
    skip = {"opsplane:apps": {"qr": {"deploy": {"skipMigrationFor": old}}}}
    prod = render("prod", skip)
    assert prod.k8s("Job", namespace="qr") == []
    migration = prod.outputs["ops"]["qr"]["deploy"]["migration"]
    assert (migration["job"], migration["atStart"]) == (None, False)
    assert prod.k8s("Deployment", "qr-api", "qr")
    assert "qr-migration-job" not in dependencies
    dev = render("dev", skip)
    names = {r.inputs["name"] for r in dev.of_type(CONTAINER)}
    assert "qr-api" in names and not any(n.startswith("qr-migrate-") for n in names)
    newer = {
        "opsplane:apps": {
            "qr": {
                "services": {"api": {"image": "ghcr.io/o/api:2.1"}},
                "deploy": {"skipMigrationFor": old},
            }
        }
    }
    jobs = render("prod", newer).k8s("Job", namespace="qr")
    assert [j["metadata"]["name"] for j in jobs] == ["qr-migrate-2-1"]
    with pytest.raises(ConfigError, match=r"^opsplane:apps.qr.deploy.skipMigrationFor: "):
        raw = {k.split(":", 1)[1]: v for k, v in stack_config("dev").items()}
        parse_settings("dev", {**raw, "apps": {"qr": {"deploy": {"skipMigrationFor": "Not A"}}}})


def test_every_deployment_depends_on_its_apps_migration_job(dependencies: dict) -> None:
    prod = render("prod", FLYWAY_JOB)
    for app, services in {
        "qr": ("api", "web", "admin"),
        "quickbite": ("backend", "frontend"),
    }.items():
        job_urn, job_deps = dependencies[f"{app}-migration-job"]
        db_urn, _ = dependencies[f"{app}-db-statefulset"]
        assert db_urn in job_deps, f"{app}'s migration does not wait for its database"
        for service in services:
            _, deps = dependencies[f"{app}-{service}-deployment"]
            assert job_urn in deps, f"{app}-{service} does not wait for the migration"
        (deploy,) = prod.k8s("Deployment", f"{app}-{services[0]}", app)
        assert deploy["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0


def test_migration_objects_validate_strictly() -> None:
    prod = render("prod", FLYWAY_JOB)
    objects = [o for o in prod.kubernetes_objects() if "migrate" in o["metadata"]["name"]]
    assert sorted(o["kind"] for o in objects) == ["Job", "Job", "Secret", "Secret"]
    for obj in objects:
        kubernetes_validate.validate(obj, K8S_VERSION, strict=True)


def test_dev_runs_a_one_shot_migration_container_the_app_waits_for(dependencies: dict) -> None:
    dev = render("dev")
    by_name = {r.inputs["name"]: unwrap(r.inputs) for r in dev.of_type(CONTAINER)}
    migrate = by_name["qr-migrate-1-0-0"]
    assert migrate["command"] == ["alembic", "upgrade", "head"]
    assert migrate["attach"] is True and migrate["mustRun"] is False
    assert migrate["restart"] == "no"
    assert any(e.startswith("DATABASE_URL=postgresql://qr_user:") for e in migrate["envs"])
    urn, migrate_deps = dependencies["qr-migration-container"]
    assert dependencies["qr-db-container"][0] in migrate_deps  # the database first
    for service in ("api", "web", "admin"):
        _, deps = dependencies[f"qr-{service}-container"]
        assert urn in deps
        labels = {x["label"]: x["value"] for x in by_name[f"qr-{service}"]["labels"]}
        assert labels[EXIT_LABEL] == "0"
    assert "quickbite-migrate-1-0-0" not in by_name  # Flyway at the backend's start


@pytest.mark.parametrize(
    ("image", "slug"),
    [
        ("ghcr.io/o/qr-api:1.4.2", "1-4-2"),
        ("registry:5000/o/qr-api:v2_RC1", "v2-rc1"),
        ("ghcr.io/o/qr-api", "latest"),
        ("ghcr.io/o/qr-api@sha256:" + "ab" * 32, "sha-ababababab"),
        ("ghcr.io/o/qr-api:1.0@sha256:" + "cd" * 32, "1-0-sha-cdcdcdcdcd"),
    ],
)
def test_image_slug(image: str, slug: str) -> None:
    assert image_slug(image) == slug
    assert len(migration_name("quickbite", image + "x" * 80)) <= 63


def test_deploy_history_is_parsed_by_the_contract_model() -> None:
    raw = {k.split(":", 1)[1]: v for k, v in stack_config("dev").items()}
    record = {"n": 1, "at": "2026-12-01T00:00:00Z", "result": "succeeded", "images": {"api": "a:1"}}
    settings = parse_settings("dev", {**raw, "deployHistory": f'{{"qr": [{_json(record)}]}}'})
    assert settings.deploy_history["qr"][0].images == {"api": "a:1"}
    with pytest.raises(ConfigError) as caught:
        parse_settings("dev", {**raw, "deployHistory": {"qr": [{**record, "result": "maybe"}]}})
    assert str(caught.value).startswith("opsplane:deployHistory: qr[0].result: Input should be ")
    with pytest.raises(ConfigError, match=r"^opsplane:apps.qr.deploy.soakSeconds: "):
        parse_settings("dev", {**raw, "apps": {"qr": {"deploy": {"soakSeconds": -1}}}})


def _json(value: Any) -> str:
    import json

    return json.dumps(value)


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_the_fake_stacks_deploy_block_is_what_the_program_exports(stack: str) -> None:
    """tests/fakes/fake_stack.py's `sample_deploy` stays equal to the real `ops[app].deploy`."""
    rendered = render(stack)
    for app in ("qr", "quickbite"):
        assert rendered.outputs["ops"][app]["deploy"] == sample_deploy(app), (stack, app)
