"""The test double's `sample_ops` (tests/fakes/fake_stack.py) is what the program really exports.

Every key on both stacks for both apps; every value too, except generated and configured secrets
(the fake uses `model_password`) and the prod runner image's digest (a hash of the image context).
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

from automation.stack.render import Rendered
from tests.fakes.fake_stack import sample_ops

SECRET = "<secret>"


def comparable(ops: dict[str, Any]) -> dict[str, Any]:
    """`ops` with secret values and the image digest replaced by markers."""
    out = copy.deepcopy(ops)
    out["database"]["password"] = SECRET
    out["cache"]["password"] = SECRET
    if out["webhook"] is not None:
        out["webhook"]["secret"] = SECRET
    if out["target"] == "kubernetes":
        repository, _, digest = out["runnerImage"].partition("@sha256:")
        assert len(digest) == 64, out["runnerImage"]
        out["runnerImage"] = f"{repository}@sha256:<digest>"
    return out


def keys(value: Any) -> Any:
    """The shape of a JSON value: dict keys all the way down."""
    if isinstance(value, dict):
        return {k: keys(v) for k, v in value.items()}
    return type(value).__name__


@pytest.mark.parametrize("app", ["qr", "quickbite"])
@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_sample_ops_equal_the_render(stack: str, app: str, dev: Rendered, prod: Rendered) -> None:
    real = {"dev": dev, "prod": prod}[stack].outputs["ops"][app]
    fake = sample_ops(app, stack)
    assert keys(fake) == keys(real)
    assert comparable(fake) == comparable(real)
