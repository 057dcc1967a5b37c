"""Rotating one secret replaces exactly that secret and rolls exactly the workloads using it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from automation.stack.render import Rendered, unwrap

PASSWORD = "random:index/randomPassword:RandomPassword"
CHECKSUM = "opsplane.dev/secrets-checksum"


def keepers(rendered: Rendered) -> dict[str, dict]:
    return {r.name: r.inputs.get("keepers") for r in rendered.of_type(PASSWORD)}


def passwords(rendered: Rendered) -> dict[str, str]:
    return {r.name: r.outputs["result"] for r in rendered.of_type(PASSWORD)}


def checksums(rendered: Rendered) -> dict[str, str]:
    out = {}
    for kind in ("Deployment", "StatefulSet"):
        for obj in rendered.k8s(kind):
            notes = obj["spec"]["template"]["metadata"].get("annotations") or {}
            if CHECKSUM in notes:
                out[obj["metadata"]["name"]] = notes[CHECKSUM]
    return out


def test_every_owned_secret_is_a_random_password_keyed_by_epoch(prod: Rendered) -> None:
    names = sorted({r.name.rsplit("-slot", 1)[0] for r in prod.of_type(PASSWORD)})
    assert names == [
        "qr-db-password", "qr-redis-password",
        "quickbite-db-password", "quickbite-jwt-secret", "quickbite-redis-password",
    ]  # fmt: skip
    assert keepers(prod)["qr-db-password-slot0"] == {"epoch": "0"}


def test_bumping_one_epoch_changes_one_secret_and_its_users_only(
    prod: Rendered, render_stack
) -> None:
    rotated = render_stack("prod", {"opsplane:rotation": {"qr": {"db-password": 1}}})
    before, after = keepers(prod), keepers(rotated)
    changed = {name for name in before if before[name] != after[name]}
    assert changed == {"qr-db-password-slot1"}
    assert passwords(prod)["qr-db-password-slot1"] != passwords(rotated)["qr-db-password-slot1"]
    old_sums, new_sums = checksums(prod), checksums(rotated)
    rolled = {name for name in old_sums if old_sums[name] != new_sums[name]}
    assert rolled == {
        "qr-api"
    }  # web and admin don't use the database password; QuickBite untouched


def test_redis_rotation_restarts_redis_and_its_clients(prod: Rendered, render_stack) -> None:
    rotated = render_stack("prod", {"opsplane:rotation": {"quickbite": {"redis-password": 1}}})
    old_sums, new_sums = checksums(prod), checksums(rotated)
    assert {n for n in old_sums if old_sums[n] != new_sums[n]} == {
        "quickbite-backend",
        "quickbite-redis",
    }


def test_pending_database_password_keeps_pods_on_the_old_one(prod: Rendered, render_stack) -> None:
    pending = render_stack(
        "prod", {"opsplane:rotation": {"qr": {"db-password": {"epoch": 1, "pending": True}}}}
    )
    assert checksums(pending)["qr-api"] == checksums(prod)["qr-api"]
    ops = pending.outputs["ops"]["qr"]["database"]
    assert ops["password"] == passwords(prod)["qr-db-password-slot0"]
    assert ops["pendingPassword"] == passwords(pending)["qr-db-password-slot1"]
    assert ops["pendingPassword"] != ops["password"]


def test_jwt_previous_secret_stays_for_the_grace_period(render_stack) -> None:
    now = datetime.now(UTC)
    fresh = render_stack(
        "dev",
        {
            "opsplane:rotation": {
                "quickbite": {"jwt-secret": {"epoch": 1, "rotatedAt": now.isoformat()}}
            }
        },
    )
    old = (now - timedelta(hours=2)).isoformat()
    expired = render_stack(
        "dev", {"opsplane:rotation": {"quickbite": {"jwt-secret": {"epoch": 1, "rotatedAt": old}}}}
    )

    def env(rendered: Rendered) -> dict[str, str]:
        (c,) = [
            unwrap(r.inputs)
            for r in rendered.of_type("docker:index/container:Container")
            if r.inputs["name"] == "quickbite-backend"
        ]
        return dict(e.split("=", 1) for e in c["envs"])

    values = passwords(fresh)
    assert env(fresh)["JWT_SECRET"] == values["quickbite-jwt-secret-slot1"]
    assert env(fresh)["JWT_SECRET_PREVIOUS"] == values["quickbite-jwt-secret-slot0"]
    assert env(expired)["JWT_SECRET_PREVIOUS"] == ""  # grace (3600 s) is over
