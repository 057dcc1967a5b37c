"""`alerts`: alerts firing in Alertmanager for this app, grouped by priority (P1/P2/P3).

Any firing P1 is a FAIL, P2/P3 a WARN. Alertmanager unreachable is a WARN: the other checks
still say what is wrong, and a monitoring outage is not the app's outage.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from automation.tasks.checks.model import RUNBOOK, Check, Group, Level

if TYPE_CHECKING:
    from automation.tasks.checks.model import StatusTargets

NEXT = f"{RUNBOOK}#alerts"


def group(targets: StatusTargets, timeout: float) -> Group:
    """Alertmanager's active, unsilenced alerts; or, without it, Prometheus' firing alerts."""
    if targets.alertmanager_url:
        url = targets.alertmanager_url.rstrip("/") + "/api/v2/alerts?active=true&silenced=false"
    else:
        assert targets.prometheus_url
        url = targets.prometheus_url.rstrip("/") + "/api/v1/alerts"
    return Group("alerts", lambda: [run(url, targets.app, timeout)], NEXT)


def fetch(url: str, timeout: float) -> list[dict[str, Any]]:
    """Alertmanager v2 answers a list; Prometheus `{"data": {"alerts": [...]}}` (firing only)."""
    import urllib.request

    if not url.startswith(("http://", "https://")):
        raise ValueError(f"{url}: not an http(s) URL")
    with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 (http(s) only, above)
        document = json.load(response)
    if isinstance(document, dict):
        alerts = (document.get("data") or {}).get("alerts") or []
        return [a for a in alerts if a.get("state") == "firing"]
    return list(document)


def ours(alert: dict[str, Any], app: str) -> bool:
    """An alert of this app (label `app` or `system`), or one without an app label at all; never
    one with `severity: none`: kube-prometheus-stack's `Watchdog` (always firing, to prove the
    pipeline works) and `InfoInhibitor` are not problems of any app."""
    labels = alert.get("labels") or {}
    if str(labels.get("severity") or "").lower() == "none":
        return False
    owner = labels.get("app") or labels.get("system")
    return owner is None or owner == app


def run(url: str, app: str, timeout: float) -> Check:
    try:
        alerts = [a for a in fetch(url, timeout) if ours(a, app)]
    except (OSError, ValueError) as exc:
        cause = getattr(exc, "reason", None) or exc
        reason = " ".join(str(cause).split())[:200]
        if isinstance(cause, TimeoutError):  # a hung Alertmanager: as the runner's deadline says
            reason = f"timed out after {timeout:g} s"
        return Check("alerts", "warn", f"alerts not readable from {url}: {reason}", NEXT)
    by_priority: dict[str, list[str]] = {}
    for alert in alerts:
        labels = alert.get("labels") or {}
        priority = labels.get("priority") or labels.get("severity") or "unknown"
        by_priority.setdefault(priority, []).append(labels.get("alertname", "?"))
    if not by_priority:
        return Check("alerts", "pass", "no alert firing")
    detail = "; ".join(
        f"{p}: {', '.join(sorted(set(names)))}" for p, names in sorted(by_priority.items())
    )
    first = sorted(by_priority.get("P1") or min(by_priority.values()))[0]
    worst = f"{RUNBOOK}#alert-{first.lower()}"
    level: Level = "fail" if "P1" in by_priority else "warn"
    return Check("alerts", level, f"{len(alerts)} firing: {detail}", worst)
