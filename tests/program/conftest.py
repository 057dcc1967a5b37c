"""Mock-runtime harness: the program rendered exactly as `python -m automation render` does."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest

from automation.stack.render import Rendered, load_stack_config, run_program

K8S_VERSION = "1.31"  # the one Kubernetes version every object is validated against

PROD_SECRETS = {
    "qr": {
        "stripeSecretKey": "sk_test_opsplane_qr_0123456789",
        "stripeWebhookSecret": "whsec_opsplane_qr_0123456789",
        "auth0ClientSecret": "auth0_opsplane_qr_0123456789",
    },
    "quickbite": {"paymentWebhookSecret": "rzp_opsplane_quickbite_0123456789"},
}


def merge(base: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def stack_config(stack: str, changes: dict[str, Any] | None = None) -> dict[str, Any]:
    config = load_stack_config(stack)
    if stack == "prod":
        config["opsplane:externalSecrets"] = PROD_SECRETS
    return merge(config, changes or {})


def render(stack: str, changes: dict[str, Any] | None = None) -> Rendered:
    return run_program(stack, stack_config(stack, changes))


@pytest.fixture(scope="session")
def dev() -> Rendered:
    return render("dev")


@pytest.fixture(scope="session")
def prod() -> Rendered:
    return render("prod")


@pytest.fixture
def render_stack() -> Callable[..., Rendered]:
    return render
