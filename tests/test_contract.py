"""contract/: each config key automation writes is parsed by one model, the program's and
automation's alike (components/config.py and automation/operations/ import these)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from automation.operations import cluster_job, maintenance, rotation
from components import config
from contract.cluster_job import CLUSTER_TASKS, ClusterJobRequest
from contract.maintenance import parse_maintenance, to_config
from contract.rotation import RotationState, parse_rotation


def test_both_sides_use_the_same_models() -> None:
    assert rotation.RotationState is config.RotationState is RotationState
    assert config.ClusterJobRequest is ClusterJobRequest
    assert (
        cluster_job.TASKS
        == CLUSTER_TASKS
        == ("restore", "replay", "verify-backup", "backup", "status")
    )
    assert maintenance.MAINTENANCE_KEY == "opsplane:maintenance"


def test_rotation_epoch_shorthand_and_the_full_form() -> None:
    full = {"epoch": 3, "rotatedAt": "2026-01-02T03:04:05Z", "pending": True}
    parsed = parse_rotation({"qr": {"db-password": 2, "redis-password": full}})
    assert parsed["qr"]["db-password"] == RotationState(epoch=2)
    state = parsed["qr"]["redis-password"]
    assert state.pending and state.rotated_at == datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert state.to_config() == {"epoch": 3, "rotatedAt": "2026-01-02T03:04:05Z", "pending": True}


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({"qr": {"db-password": -1}}, "qr.db-password.epoch: Input should be greater than"),
        ({"qr": {"db-password": {"epoch": 1, "when": "x"}}}, "qr.db-password.when: Extra inputs"),
        ({"qr": {"db-password": True}}, "qr.db-password: Input should be a valid dictionary"),
        ({"qr": ["db-password"]}, "qr: Input should be a valid dictionary"),
    ],
)
def test_rotation_errors_name_the_path(value: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_rotation(value)


def test_program_and_automation_read_a_config_value_alike() -> None:
    raw = '{"quickbite": {"jwt-secret": 4}}'
    images = ("backend", "frontend")
    settings = config.parse_settings(
        "dev",
        {
            "target": "docker",
            "apps": {"quickbite": {"services": {s: {"image": f"ghcr.io/o/{s}:1"} for s in images}}},
            "rotation": raw,
        },
    )
    assert (
        settings.rotation_state("quickbite", "jwt-secret")
        == parse_rotation({"quickbite": {"jwt-secret": 4}})["quickbite"]["jwt-secret"]
    )


def test_maintenance_list() -> None:
    assert parse_maintenance('["qr"]') == ["qr"] and parse_maintenance("") == []
    assert to_config(["quickbite", "qr", "qr"]) == '["qr", "quickbite"]'
    for bad in ('"qr"', "[1]", "{", '{"qr": true}'):
        with pytest.raises(ValueError):
            parse_maintenance(bad)


def test_cluster_job_request() -> None:
    given = {"app": "qr", "task": "restore", "args": ["--latest"], "id": "restore-1"}
    request = ClusterJobRequest.model_validate({**given, "mountRedis": True})
    assert request.to_config() == {
        "app": "qr", "task": "restore", "args": ["--latest"], "id": "restore-1", "mountRedis": True,
    }  # fmt: skip
    plain = ClusterJobRequest(app="qr", task="backup", id="backup-1")
    assert plain.to_config() == {"app": "qr", "task": "backup", "args": [], "id": "backup-1"}
    with pytest.raises(ValueError, match="mountRedis: only a restore"):
        ClusterJobRequest(app="qr", task="backup", id="b", mount_redis=True)
    with pytest.raises(ValueError, match="task"):
        ClusterJobRequest.model_validate({"app": "qr", "task": "deploy", "id": "d"})


def test_the_program_rejects_a_bad_maintenance_value_as_automation_does() -> None:
    images = {"backend": {"image": "ghcr.io/o/backend:1"}, "frontend": {"image": "ghcr.io/o/f:1"}}
    raw = {"target": "docker", "apps": {"quickbite": {"services": images}}}
    assert config.parse_settings("dev", {**raw, "maintenance": '["quickbite"]'}).in_maintenance(
        "quickbite"
    )
    with pytest.raises(config.ConfigError, match=r"maintenance: .*not a JSON list of app names"):
        config.parse_settings("dev", {**raw, "maintenance": "[1]"})
