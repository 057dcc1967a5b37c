"""Bad stack config fails with one line naming the key path and what is allowed."""

from __future__ import annotations

from typing import Any

import pulumi
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from automation.errors import UserInputError
from automation.stack.render import run_program
from components.config import ConfigError, parse_settings
from tests.program.conftest import PROD_SECRETS, stack_config

DEV_APPS = stack_config("dev")["opsplane:apps"]


def dev_raw(**changes: Any) -> dict[str, Any]:
    return {"target": "docker", "apps": DEV_APPS, **changes}


def error_for(raw: dict[str, Any], stack: str = "dev") -> str:
    with pytest.raises(ConfigError) as caught:
        parse_settings(stack, raw)
    message = str(caught.value)
    assert "\n" not in message and message.startswith("opsplane:")
    return message


def with_service(app: str, service: str, **values: Any) -> dict[str, Any]:
    apps = {**DEV_APPS, app: {**DEV_APPS[app]}}
    services = {**apps[app]["services"]}
    services[service] = {**services.get(service, {}), **values}
    apps[app]["services"] = services
    return apps


def test_the_committed_stack_files_are_valid() -> None:
    assert parse_settings("dev", dev_raw()).target == "docker"
    prod = {
        k.split(":", 1)[1]: v for k, v in stack_config("prod").items() if k.startswith("opsplane:")
    }
    assert parse_settings("prod", prod).target == "kubernetes"


def test_unknown_app() -> None:
    message = error_for(dev_raw(apps={"billing": {}}))
    assert message == "opsplane:apps: unknown app 'billing'; known apps: qr, quickbite"


def test_negative_replicas() -> None:
    message = error_for(dev_raw(apps=with_service("qr", "api", replicas=-1)))
    assert message.startswith("opsplane:apps.qr.services.api.replicas: ")
    assert "greater than or equal to 0" in message and "(got -1)" in message


def test_min_replicas_above_max() -> None:
    message = error_for(dev_raw(apps=with_service("quickbite", "backend", minReplicas=6)))
    assert message == (
        "opsplane:apps.quickbite.services.backend.minReplicas: must be <= maxReplicas (5), got 6"
    )


@pytest.mark.parametrize(
    ("schedule", "expected"),
    [
        ("0 2 * *", "must be a 5-field cron schedule"),
        ("61 2 * * *", "minute must be within 0-59"),
        ("0 25 * * *", "hour must be within 0-23"),
        ("0 2 * * mon", "invalid day of week field"),
    ],
)
def test_invalid_cron(schedule: str, expected: str) -> None:
    message = error_for(dev_raw(backup={"schedule": schedule}))
    assert message.startswith("opsplane:backup.schedule: ") and expected in message


def test_retention_below_one_day() -> None:
    message = error_for(dev_raw(backup={"retentionDays": 0}))
    assert message.startswith("opsplane:backup.retentionDays: ")
    assert "greater than or equal to 1" in message


@pytest.mark.parametrize("image", ["Not An Image", "ghcr.io/Org/api:1", "api:", "a//b"])
def test_malformed_image_reference(image: str) -> None:
    message = error_for(dev_raw(apps=with_service("qr", "api", image=image)))
    assert message.startswith("opsplane:apps.qr.services.api.image: must be an image reference")


def test_missing_image_names_the_key() -> None:
    apps = {**DEV_APPS, "qr": {"services": {"web": {"image": "x/web:1"}}}}
    message = error_for(dev_raw(apps=apps))
    assert message.startswith("opsplane:apps.qr.services.api.image: required")


def test_unknown_key_and_unknown_service() -> None:
    assert error_for(dev_raw(backup={"retention": 3})) == (
        "opsplane:backup.retention: unknown key (see docs/config.md for the allowed keys)"
    )
    message = error_for(dev_raw(apps=with_service("qr", "worker", replicas=1)))
    assert message.startswith("opsplane:apps.qr.services: unknown service 'worker'")


def test_missing_prod_secrets_are_named() -> None:
    prod = {
        k.split(":", 1)[1]: v for k, v in stack_config("prod").items() if k.startswith("opsplane:")
    }
    prod["externalSecrets"] = {"qr": dict(PROD_SECRETS["qr"])}
    del prod["externalSecrets"]["qr"]["auth0ClientSecret"]
    message = error_for(prod, "prod")
    assert message.startswith(
        "opsplane:externalSecrets: missing qr.auth0ClientSecret, quickbite.paymentWebhookSecret;"
    )
    assert "pulumi config set --secret --path" in message
    assert PROD_SECRETS["qr"]["stripeSecretKey"] not in message


def test_dev_gets_marked_placeholders_instead(dev) -> None:
    (container,) = [
        r for r in dev.of_type("docker:index/container:Container") if r.name == "qr-api-container"
    ]
    envs = container.inputs["envs"]["value"]  # secret-wrapped
    assert "STRIPE_SECRET_KEY=PLACEHOLDER-qr-stripeSecretKey" in envs


def test_render_of_bad_config_is_a_user_error_not_a_traceback() -> None:
    config = stack_config("dev", {"opsplane:backup": {"retentionDays": -3}})
    with pytest.raises(UserInputError, match=r"^opsplane:backup\.retentionDays: "):
        run_program("dev", config)


def test_unknown_top_level_key_from_the_pulumi_engine(monkeypatch: pytest.MonkeyPatch) -> None:
    """Under `pulumi up` config arrives in PULUMI_CONFIG; a misspelt key is still caught."""
    import json

    from pulumi.runtime import config as runtime_config

    from components.config import load_from_pulumi

    runtime_config.set_all_config({}, [])
    monkeypatch.setattr(pulumi, "get_stack", lambda: "dev")
    engine_config = {
        "opsplane:target": "docker",
        "opsplane:apps": json.dumps(DEV_APPS),
        "opsplane:maintanance": "[]",
    }
    monkeypatch.setenv("PULUMI_CONFIG", json.dumps(engine_config))
    with pytest.raises(ConfigError, match=r"^opsplane:maintanance: unknown key; allowed: "):
        load_from_pulumi()
    del engine_config["opsplane:maintanance"]
    monkeypatch.setenv("PULUMI_CONFIG", json.dumps(engine_config))
    assert set(load_from_pulumi().apps) == {"qr", "quickbite"}


def test_pulumi_preview_fails_with_run_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """`__main__` turns bad config into pulumi.RunError: Pulumi prints the line, no traceback."""
    import components.program as program
    from components import config as config_module

    def bad() -> None:
        raise ConfigError("opsplane:backup.retentionDays: must be >= 1")

    monkeypatch.setattr(program, "load_from_pulumi", bad)
    with pytest.raises(pulumi.RunError, match="retentionDays"):
        program.main()
    assert config_module.ConfigError is ConfigError


values = st.one_of(
    st.none(), st.booleans(), st.integers(-5, 50), st.text(max_size=12), st.floats(allow_nan=False)
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    replicas=values,
    min_replicas=values,
    retention=values,
    schedule=values,
    image=values,
    slo=values,
)
def test_random_config_values_parse_or_fail_cleanly(
    replicas: Any, min_replicas: Any, retention: Any, schedule: Any, image: Any, slo: Any
) -> None:
    """Whatever the values, the outcome is settings or one ConfigError line: nothing else."""
    apps = with_service("qr", "api", replicas=replicas, minReplicas=min_replicas)
    if image is not None:
        apps = with_service("qr", "web", image=image) | {"quickbite": apps["quickbite"]}
        apps["qr"]["services"]["api"] = {**DEV_APPS["qr"]["services"]["api"], "replicas": replicas,
                                         "minReplicas": min_replicas}  # fmt: skip
    raw = dev_raw(
        apps=apps,
        backup={"retentionDays": retention, "schedule": schedule},
        alerts={"sloTarget": slo},
    )
    try:
        settings_ = parse_settings("dev", raw)
    except ConfigError as exc:
        text = str(exc)
        assert text.startswith("opsplane:") and "\n" not in text
        assert any(
            key in text
            for key in ("replicas", "minReplicas", "retentionDays", "schedule", "image", "slo")
        ), text
    else:
        api = settings_.apps["qr"].services["api"]
        assert api.replicas is None or api.replicas >= 0
        assert settings_.backup.retention_days >= 1
        assert 0.5 < settings_.alerts.slo_target < 1
