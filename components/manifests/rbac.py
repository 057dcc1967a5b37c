"""Identity: the ops-runner ServiceAccount (IRSA role annotation)."""

from __future__ import annotations

from typing import Any

from components.manifests.base import Manifest, labels, metadata


def service_account(name: str, ns: str, app: str, role_arn: Any) -> Manifest:
    return {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": metadata(
            name,
            ns,
            labels(app, "ops-runner"),
            annotations={"eks.amazonaws.com/role-arn": role_arn},
        ),
    }
