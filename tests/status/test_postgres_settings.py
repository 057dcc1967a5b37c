"""The runbooks' troubleshooting steps as declared PostgreSQL settings
(`opsplane:apps.<app>.postgres`): passed as `postgres -c name=value` on both stacks, validated in
config, and each one a real parameter of PostgreSQL 16 (checked against pgserver's pg_settings)."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from automation.stack.render import unwrap
from components.config import ConfigError, PostgresSettings, parse_settings
from tests.program.conftest import render, stack_config
from tests.services import Postgres

DEFAULTS = {
    "max_connections": "100",
    "log_min_duration_statement": "1000",
    "idle_in_transaction_session_timeout": "600000",
    "idle_session_timeout": "1800000",
    "shared_preload_libraries": "pg_stat_statements",
}


def as_settings(args: list[str]) -> dict[str, str]:
    assert args[::2] == ["-c"] * (len(args) // 2), args
    return dict(pair.split("=", 1) for pair in args[1::2])


def test_defaults_are_the_runbooks_values() -> None:
    assert as_settings(PostgresSettings().server_args()) == DEFAULTS


def without(settings: dict[str, str], keys: set[str]) -> dict[str, str]:
    return {k: v for k, v in settings.items() if k not in keys}


def test_prod_statefulset_and_dev_container_run_postgres_with_them() -> None:
    changes = {"opsplane:apps": {"qr": {"postgres": {"maxConnections": 200}}}}
    prod = render("prod", changes)
    (db,) = prod.k8s("StatefulSet", "qr-db")
    postgres = as_settings(db["spec"]["template"]["spec"]["containers"][0]["args"])
    # Pulumi.prod.yaml archives WAL (PITR, tests/program/test_pitr.py): those settings come on top
    archiving = {"wal_level", "archive_mode", "archive_timeout", "archive_command"}
    assert postgres["archive_mode"] == "on" and archiving <= set(postgres)
    assert without(postgres, archiving) == {**DEFAULTS, "max_connections": "200"}
    (quickbite,) = prod.k8s("StatefulSet", "quickbite-db")
    settings = as_settings(quickbite["spec"]["template"]["spec"]["containers"][0]["args"])
    assert without(settings, archiving) == DEFAULTS

    dev = render("dev", changes)
    containers = {
        r.inputs["name"]: unwrap(r.inputs) for r in dev.of_type("docker:index/container:Container")
    }
    assert as_settings(containers["qr-db"]["command"]) == {**DEFAULTS, "max_connections": "200"}
    assert as_settings(containers["quickbite-db"]["command"]) == DEFAULTS


@pytest.mark.parametrize(
    ("postgres", "key"),
    [
        ({"maxConnections": 5}, "postgres.maxConnections"),
        ({"idleSessionTimeout": -1}, "postgres.idleSessionTimeout"),
        ({"logMinDurationStatement": -2}, "postgres.logMinDurationStatement"),
        ({"slowQueries": 1}, "postgres.slowQueries"),
    ],
)
def test_bad_values_name_the_key(postgres: dict[str, Any], key: str) -> None:
    apps = stack_config("dev")["opsplane:apps"]
    apps["qr"] = {**apps["qr"], "postgres": postgres}
    with pytest.raises(ConfigError) as caught:
        parse_settings("dev", {"target": "docker", "apps": apps})
    assert f"opsplane:apps.qr.{key}" in str(caught.value)


def test_every_setting_is_a_real_parameter_within_its_range(postgres: Postgres) -> None:
    settings = as_settings(PostgresSettings().server_args())
    with psycopg.connect(postgres.url()) as conn:
        rows = conn.execute(
            "SELECT name, vartype, unit, min_val, max_val, context FROM pg_settings "
            "WHERE name = ANY(%s)",
            (list(settings),),
        ).fetchall()
    found = {r[0]: r[1:] for r in rows}
    assert set(found) == set(settings)
    for name, (vartype, _unit, low, high, _) in found.items():
        if vartype == "integer":
            assert float(low) <= float(settings[name]) <= float(high), name
    assert {found[n][1] for n in ("log_min_duration_statement", "idle_session_timeout",
                                  "idle_in_transaction_session_timeout")} == {"ms"}  # fmt: skip
    assert found["max_connections"][4] == "postmaster"  # hence a server argument, not SET
