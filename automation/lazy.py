"""Imports that wait until first use, so `--help` never pays for Pulumi, boto3 or psycopg.

A command module names what it runs at the top, as usual, but through these helpers:
`task = lazy_module("automation.tasks.restore")` executes the module on first attribute access;
`make_conninfo = lazy_function("psycopg.conninfo", "make_conninfo")` imports on first call.
Use them only in `automation/commands/`; everywhere else plain imports are fine.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from collections.abc import Callable
from types import ModuleType
from typing import Any


def lazy_module(name: str) -> ModuleType:
    """Module `name` (one of ours: finding it imports its parent packages), run on first use."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.find_spec(name)
    if spec is None or spec.loader is None:
        raise ModuleNotFoundError(name)
    loader = importlib.util.LazyLoader(spec.loader)
    spec.loader = loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    loader.exec_module(module)
    parent, _, child = name.rpartition(".")
    if parent:
        setattr(sys.modules[parent], child, module)
    return module


def lazy_function(module: str, name: str) -> Callable[..., Any]:
    """A stand-in for `from module import name` that imports `module` when first called."""

    def call(*args: Any, **kwargs: Any) -> Any:
        return getattr(importlib.import_module(module), name)(*args, **kwargs)

    call.__name__ = call.__qualname__ = name
    call.__doc__ = f"`{module}.{name}`, imported on first call."
    return call
