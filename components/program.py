"""The Pulumi program as one function: `pulumi up` (__main__.py), the automation module and the
offline render all run exactly this (the inline_local_hybrid pattern)."""

from __future__ import annotations

from typing import Any

import pulumi

from components.app import App
from components.catalog import CATALOG
from components.config import ConfigError, Settings, load_from_pulumi
from components.manifests import labels as k8s_labels
from components.runner_image import RunnerImage
from components.shared_monitoring import SharedMonitoring


def declare(settings: Settings) -> dict[str, Any]:
    """Declare every app of the stack; return the stack outputs (the `ops` contract)."""
    runner = RunnerImage(
        "ops-runner",
        push=settings.target == "kubernetes",
        pinned=settings.runner_image,
    )
    apps = {
        name: App(name, spec=CATALOG[name], settings=settings, runner_image=runner.ref)
        for name in sorted(settings.apps)
    }
    if settings.target == "kubernetes":
        labels = {**k8s_labels("opsplane", "monitoring"), **settings.alerts.rule_labels}
        SharedMonitoring("monitoring", labels=labels)
    outputs: dict[str, Any] = {"ops": {name: app.ops for name, app in apps.items()}}
    jobs = [app.cluster_job for app in apps.values() if app.cluster_job is not None]
    if jobs:
        outputs["clusterJob"] = jobs[0]
    return outputs


def main() -> None:
    """Entry point for `pulumi up/preview`: bad config is one clear line, never a traceback."""
    try:
        settings = load_from_pulumi()
    except ConfigError as exc:
        raise pulumi.RunError(str(exc)) from None
    for key, value in declare(settings).items():
        pulumi.export(key, value)
