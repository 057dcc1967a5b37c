"""Config `opsplane:maintenance`: a JSON list of the app names whose writers are stopped.

Automation writes it (`maintenance on|off`, every stack operation); the program reads it
(`Settings.maintenance`) and exports `ops[app].maintenance` for what it deployed.
"""

from __future__ import annotations

import json
from typing import Any

MAINTENANCE_KEY = "opsplane:maintenance"
Maintenance = list[str]  # the program's `Settings.maintenance` field type


def parse_maintenance(value: Any) -> Maintenance:
    """The app list from the config value (JSON text or a list); raises `ValueError`."""
    if isinstance(value, str):
        try:
            value = json.loads(value) if value.strip() else []
        except json.JSONDecodeError:
            raise ValueError("not JSON") from None
    if not isinstance(value, list) or not all(isinstance(app, str) for app in value):
        raise ValueError("not a JSON list of app names")
    return value


def to_config(apps: list[str]) -> str:
    """The config value for `apps` (sorted, no repeats)."""
    return json.dumps(sorted(set(apps)))
