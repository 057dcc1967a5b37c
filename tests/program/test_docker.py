"""dev: the Docker host mirrors the runbooks' docker compose."""

from __future__ import annotations

from automation.stack.render import Rendered, unwrap

CONTAINER = "docker:index/container:Container"


def containers(dev: Rendered) -> dict[str, dict]:
    return {r.inputs["name"]: unwrap(r.inputs) for r in dev.of_type(CONTAINER)}


def published(container: dict) -> list[tuple[int, int, str | None]]:
    return [
        (int(p["internal"]), int(p["external"]), p.get("ip")) for p in container.get("ports", [])
    ]


def test_one_network_per_system(dev: Rendered) -> None:
    names = sorted(r.inputs["name"] for r in dev.of_type("docker:index/network:Network"))
    assert names == ["qr", "quickbite"]


def test_named_volume_for_every_store(dev: Rendered) -> None:
    volumes = sorted(r.inputs["name"] for r in dev.of_type("docker:index/volume:Volume"))
    assert volumes == [
        "qr-db-data", "qr-minio-data", "qr-redis-data",
        "quickbite-db-data", "quickbite-minio-data", "quickbite-redis-data",
    ]  # fmt: skip
    by_name = containers(dev)
    assert by_name["qr-db"]["volumes"][0] == {
        "volumeName": "qr-db-data",
        "containerPath": "/var/lib/postgresql/data",
    }


def test_ports_are_published_only_where_the_runbooks_publish(dev: Rendered) -> None:
    by_name = containers(dev)
    assert published(by_name["qr-api"]) == [(8000, 8000, None)]
    assert published(by_name["qr-web"]) == [(3000, 3000, None)]
    assert published(by_name["qr-admin"]) == [(3001, 3001, None)]
    assert published(by_name["qr-mailhog"]) == [(8025, 8025, None)]
    assert published(by_name["quickbite-backend"]) == [(8080, 8080, None)]
    assert published(by_name["quickbite-frontend"]) == [(8080, 80, None)]
    # stores: loopback only, distinct host ports so both systems fit one laptop
    assert published(by_name["qr-db"]) == [(5432, 5432, "127.0.0.1")]
    assert published(by_name["quickbite-db"]) == [(5432, 5433, "127.0.0.1")]
    assert published(by_name["qr-redis"]) == [(6379, 6379, "127.0.0.1")]
    assert published(by_name["quickbite-redis"]) == [(6379, 6380, "127.0.0.1")]


def test_every_long_running_container_has_a_health_check_and_restarts(dev: Rendered) -> None:
    for name, c in containers(dev).items():
        if name.endswith("-minio-init") or "-migrate-" in name:
            assert c["mustRun"] is False  # a one-shot bucket creator / migration
            continue
        assert c["healthcheck"]["tests"], name
        assert c["restart"] == "unless-stopped", name


def test_mailhog_exists_on_dev_only(dev: Rendered, prod: Rendered) -> None:
    assert "qr-mailhog" in containers(dev)
    assert not prod.k8s("Deployment", "qr-mailhog")


def test_services_join_the_app_network_under_their_runbook_names(dev: Rendered) -> None:
    api = containers(dev)["qr-api"]
    assert api["networksAdvanced"][0]["aliases"] == ["api"]


def test_environment_with_secrets_is_a_secret_output(dev: Rendered) -> None:
    raw = {r.inputs["name"]: r.inputs for r in dev.of_type(CONTAINER)}
    for name in ("qr-api", "qr-db", "qr-redis", "quickbite-backend", "qr-minio"):
        assert "4dabf18193072939515e22adb298388d" in raw[name]["envs"], name
    # plain-only services keep plain env
    assert "4dabf18193072939515e22adb298388d" not in raw["qr-web"]["envs"]


def test_redis_requires_a_password_and_clients_carry_it(dev: Rendered) -> None:
    by_name = containers(dev)
    assert "--requirepass" in " ".join(by_name["qr-redis"]["command"])
    url = next(e for e in by_name["qr-api"]["envs"] if e.startswith("REDIS_URL="))
    assert url.startswith("REDIS_URL=redis://:") and "@redis:6379/0" in url


def test_quickbite_gets_the_jwt_secret(dev: Rendered) -> None:
    env = containers(dev)["quickbite-backend"]["envs"]
    jwt = next(e for e in env if e.startswith("JWT_SECRET="))
    assert len(jwt.removeprefix("JWT_SECRET=")) == 64
