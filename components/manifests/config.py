"""Configuration objects: Secrets."""

from __future__ import annotations

from typing import Any

from components.manifests.base import Manifest, metadata


def secret(name: str, ns: str, lbls: dict[str, str], string_data: Any) -> Manifest:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": metadata(name, ns, lbls),
        "type": "Opaque",
        "stringData": string_data,
    }
