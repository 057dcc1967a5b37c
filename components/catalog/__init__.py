"""The catalog: every system opsplane knows, as data. A new system is one new module here
that defines `APP: AppSpec`; it is discovered by name."""

from __future__ import annotations

import importlib
import pkgutil

from components.catalog.spec import AppSpec


def _discover() -> dict[str, AppSpec]:
    apps: dict[str, AppSpec] = {}
    for module in pkgutil.iter_modules(__path__):
        if module.name == "spec":
            continue
        app = importlib.import_module(f"{__name__}.{module.name}").APP
        apps[app.name] = app
    return apps


CATALOG: dict[str, AppSpec] = _discover()
