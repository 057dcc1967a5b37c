"""Config `opsplane:maintenance`: a JSON list of the app names whose writers are stopped.

Automation writes it (`maintenance on|off`, every stack operation); the program reads it
(`Settings.maintenance`) and exports `ops[app].maintenance` for what it deployed.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import TypeAdapter, ValidationError

MAINTENANCE_KEY = "opsplane:maintenance"
Maintenance = list[str]
_MAINTENANCE: TypeAdapter[Maintenance] = TypeAdapter(Maintenance)


def parse_maintenance(value: Any) -> Maintenance:
    """The app list from the config value (JSON text or a list); raises `ValueError`."""
    if isinstance(value, str):
        try:
            value = json.loads(value) if value.strip() else []
        except json.JSONDecodeError:
            raise ValueError("not JSON") from None
    try:
        return _MAINTENANCE.validate_python(value, strict=True)
    except ValidationError:
        raise ValueError("not a JSON list of app names") from None


def to_config(apps: list[str]) -> str:
    """The config value for `apps` (sorted, no repeats)."""
    return json.dumps(sorted(set(apps)))
