"""opsplane's Pulumi components and the data they are built from (config, catalog).

Imports `contract` and itself, never `automation`. Imported by `__main__.py` and, to run the
program, by `automation.stack` only (tests/test_layers.py).
"""
