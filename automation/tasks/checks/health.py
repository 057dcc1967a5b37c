"""`health:<name>`: one service endpoint (`/health`, `/actuator/health`, `/`) and its latency."""

from __future__ import annotations

import time

from automation.operations.status import RUNBOOK, Check, Group

SLOW_SECONDS = 1.0
NEXT = f"{RUNBOOK}#alert-backenddown"


def group(name: str, url: str, timeout: float) -> Group:
    check = f"health:{name}"
    return Group(check, lambda: [probe(check, url, timeout)], NEXT)


def probe(check: str, url: str, timeout: float) -> Check:
    """GET `url`: 2xx/3xx within SLOW_SECONDS passes; slower warns; anything else fails."""
    import urllib.error
    import urllib.request

    started = time.monotonic()
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            code = response.status
    except urllib.error.HTTPError as exc:
        code = exc.code
    except (OSError, ValueError) as exc:
        reason = getattr(exc, "reason", None) or exc
        if isinstance(reason, TimeoutError):
            reason = f"timed out after {timeout:g} s"
        return Check(check, "fail", f"{url}: {_one_line(reason)}", NEXT)
    elapsed = time.monotonic() - started
    measured = f"{url}: HTTP {code} in {elapsed * 1000:.0f} ms"
    if code >= 400:
        return Check(check, "fail", measured, NEXT)
    if elapsed > SLOW_SECONDS:
        return Check(check, "warn", f"{measured} (slower than {SLOW_SECONDS:g} s)", NEXT)
    return Check(check, "pass", measured)


def _one_line(value: object) -> str:
    return " ".join(str(value).split())[:200]
